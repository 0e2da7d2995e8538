"""The identity half of the composition root (shared/bootstrap.py's Container inherits it):
signing keys, password hashing, sessions, users, usage and its throttles, the authenticated
hot path and API keys. Each is built on first use from the container's settings and pool."""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import TYPE_CHECKING

from shared.api_keys import ApiKeyService
from shared.auth.keys import Claims, TokenKeys, generate_dev_key
from shared.auth.passwords import PasswordHasher
from shared.auth.principal import Principal
from shared.auth.sessions import SessionService
from shared.config import Settings
from shared.db import Database
from shared.usage import LoginThrottle, SignupLimiter, UsageService
from shared.users import UserService

if TYPE_CHECKING:
    from shared.hotpath import Gate


class IdentityWiring:
    settings: Settings
    db: Database

    @cached_property
    def keys(self) -> TokenKeys:
        jwt = self.settings.jwt
        private = jwt.private_key.get_secret_value().encode() if jwt.private_key else None
        if private is None and not jwt.public_key and self.settings.env != "production":
            private = generate_dev_key(self.settings.data_dir)
        publics = [jwt.public_key.encode()] if jwt.public_key else []
        return TokenKeys(
            private_pem=private,
            public_pems=publics,
            issuer=jwt.issuer,
            audience=jwt.audience,
            access_ttl=jwt.access_ttl_seconds,
        )

    @cached_property
    def hasher(self) -> PasswordHasher:
        return PasswordHasher(self.settings.bcrypt_rounds)

    @cached_property
    def sessions(self) -> SessionService:
        return SessionService(
            self.db,
            self.keys,
            self.hasher,
            self.settings.jwt.refresh_ttl_seconds,
            throttle=self.throttle,
            users=self.users,
        )

    @cached_property
    def users(self) -> UserService:
        return UserService(self.db, self.hasher)

    @cached_property
    def usage(self) -> UsageService:
        return UsageService(self.db)

    @cached_property
    def throttle(self) -> LoginThrottle:
        s = self.settings
        return LoginThrottle(
            self.db,
            per_account=s.login_max_failures_per_account,
            per_address=s.login_max_failures_per_address,
            window=s.login_failure_window_seconds,
        )

    @cached_property
    def signups(self) -> SignupLimiter:
        return SignupLimiter(self.db, per_hour=self.settings.signups_per_address_per_hour)

    @cached_property
    def gate(self) -> Gate:
        """The authenticated hot path: identity cache and API-call meter (shared/hotpath/)."""
        from shared.hotpath import Gate

        gate = Gate(self.db, lambda: self.keys)
        gate.start()
        return gate

    @cached_property
    def api_keys(self) -> ApiKeyService:
        return ApiKeyService(self.db)

    def principal_from_claims(self, claims: Claims) -> Principal:
        return Principal(
            tenant_id=uuid.UUID(claims.tid) if claims.tid else None,
            role=claims.role,
            user_id=uuid.UUID(claims.sub),
        )
