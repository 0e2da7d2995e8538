"""Sign-in sessions: login, refresh-token rotation with reuse detection, logout, register.

Refresh tokens are opaque random strings stored as SHA-256 hashes: they carry 256 bits of
entropy, so a fast hash is enough (bcrypt is for low-entropy passwords).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from shared import metrics
from shared.auth.keys import TokenKeys
from shared.auth.passwords import PasswordHasher
from shared.db import Database
from shared.errors import Conflict, Forbidden, Unauthorized
from shared.models import TokenPair, UserOut
from shared.store import sessions as store
from shared.store import tenants, users
from shared.store.tenants import TenantRow
from shared.store.users import UserRow
from shared.telemetry import span
from shared.usage import LoginThrottle

if TYPE_CHECKING:
    from shared.users import UserService

INVALID = "invalid email or password"


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionService:
    def __init__(
        self,
        db: Database,
        keys: TokenKeys,
        hasher: PasswordHasher,
        refresh_ttl: int,
        *,
        throttle: LoginThrottle | None = None,
        users: UserService | None = None,
    ):
        self.db, self.keys, self.hasher, self.refresh_ttl = db, keys, hasher, refresh_ttl
        self.throttle, self.users = throttle, users

    # --- register ------------------------------------------------------------------------
    def register(
        self,
        *,
        tenant_slug: str,
        email: str,
        password: str,
        first_name: str | None = None,
        last_name: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> TokenPair:
        """Self-registration into a tenant that allows it (UserService.register), signed in."""
        assert self.users is not None, "SessionService built without users: no registration"
        if self.throttle is not None:
            # Before the account exists: a throttled address gets its 429 with nothing
            # created (the sign-in below would refuse it after the insert otherwise).
            self.throttle.check(email, ip)
        self.users.register(
            tenant_slug=tenant_slug,
            email=email,
            password=password,
            first_name=first_name,
            last_name=last_name,
        )
        return self.login(email, password, tenant_slug=tenant_slug, ip=ip, user_agent=user_agent)

    # --- login ---------------------------------------------------------------------------
    @metrics.counts_logins
    def login(
        self,
        email: str,
        password: str,
        *,
        tenant_slug: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> TokenPair:
        """Authenticate by email and password; the same 401 for an unknown email or a wrong
        password, and the same bcrypt cost for both."""
        with span("user.authenticate", auth_method="password") as s:
            if self.throttle is not None:
                self.throttle.check(email, ip)
            with self.db.tx() as conn:
                candidates = users.by_email(conn, email=email, slug=tenant_slug)
            if not candidates:
                self.hasher.verify(password, None)
                s.set_attribute("auth.result", "failure")
                if self.throttle is not None:
                    self.throttle.failed(email, ip)
                raise Unauthorized(INVALID, code="invalid_credentials")
            matches = [u for u in candidates if self.hasher.verify(password, u.password_hash)]
            if not matches:
                with self.db.tx() as conn:
                    users.count_failed(conn, user_ids=[u.id for u in candidates])
                s.set_attribute("auth.result", "failure")
                if self.throttle is not None:
                    self.throttle.failed(email, ip)
                raise Unauthorized(INVALID, code="invalid_credentials")
            if len(matches) > 1:
                s.set_attribute("auth.result", "ambiguous")
                raise Conflict(
                    "this email belongs to several tenants: give tenantSlug", code="tenant_required"
                )
            user = matches[0]
            s.set_attribute("user.id", str(user.id))
            s.set_attribute("tenant.id", str(user.tenant_id))
            with self.db.tx() as conn:
                self._check_can_sign_in(conn, user)
                pair = self._issue(conn, user, family=uuid.uuid4(), ip=ip, ua=user_agent)
                users.signed_in(conn, user_id=user.id)
            if self.throttle is not None:
                self.throttle.succeeded(email, ip)
            s.set_attribute("auth.result", "success")
            return pair

    def _check_can_sign_in(self, conn: psycopg.Connection[Any], user: UserRow) -> TenantRow | None:
        if not user.is_active:
            raise Forbidden("this account is deactivated", code="account_disabled")
        if user.tenant_id is None:
            return None
        tenant = tenants.get(conn, tenant_id=user.tenant_id)
        if tenant is None:
            raise Unauthorized(INVALID, code="invalid_credentials")
        if tenant.status == "Suspended":
            raise Forbidden("this tenant is suspended", code="tenant_suspended")
        if tenant.status == "Deleted":
            raise Unauthorized(INVALID, code="invalid_credentials")
        return tenant

    def _issue(
        self,
        conn: psycopg.Connection[Any],
        user: UserRow,
        *,
        family: uuid.UUID,
        ip: str | None,
        ua: str | None,
        replaces: uuid.UUID | None = None,
    ) -> TokenPair:
        with span("token.generate", user_id=user.id, tenant_id=user.tenant_id):
            access, ttl = self.keys.issue(
                user_id=str(user.id),
                tenant_id=str(user.tenant_id) if user.tenant_id else None,
                role=user.role,
            )
            refresh = secrets.token_urlsafe(32)
            new_id = uuid.uuid4()
            store.insert(
                conn,
                token_id=new_id,
                user_id=user.id,
                token_hash=_hash_token(refresh),
                family_id=family,
                expires_at=datetime.now(UTC) + timedelta(seconds=self.refresh_ttl),
                ip=ip,
                user_agent=(ua or "")[:256] or None,
            )
            if replaces is not None:
                store.replaced(conn, token_id=replaces, by=new_id)
        return TokenPair(
            access_token=access, refresh_token=refresh, expires_in=ttl, user=UserOut.of(user)
        )

    # --- refresh / logout ----------------------------------------------------------------
    @metrics.counts_refreshes
    def refresh(
        self, token: str, *, ip: str | None = None, user_agent: str | None = None
    ) -> TokenPair:
        """Rotate: the presented token is revoked and replaced. Presenting a token that was
        already rotated means it leaked, so the whole family is revoked."""
        with span("token.refresh") as s:
            with self.db.tx() as conn:
                row = store.lock_by_hash(conn, token_hash=_hash_token(token))
                if row is None:
                    raise Unauthorized("invalid refresh token", code="invalid_refresh_token")
                if row.revoked_at is None:
                    if row.expires_at <= datetime.now(UTC):
                        raise Unauthorized("refresh token expired", code="refresh_token_expired")
                    user = users.get(conn, user_id=row.user_id)
                    if user is None:
                        raise Unauthorized("invalid refresh token", code="invalid_refresh_token")
                    self._check_can_sign_in(conn, user)
                    s.set_attribute("user.id", str(user.id))
                    return self._issue(
                        conn, user, family=row.family_id, ip=ip, ua=user_agent, replaces=row.id
                    )
                # Reuse: revoke the family and let this transaction commit before refusing.
                store.revoke_family(conn, family_id=row.family_id)
            s.set_attribute("auth.result", "reuse_detected")
            raise Unauthorized(
                "refresh token was already used; sessions revoked", code="refresh_token_reused"
            )

    def logout(self, token: str) -> None:
        """Revoke the token's whole family (this device's session). Unknown tokens are a no-op,
        so logout is idempotent."""
        with span("token.revoke"), self.db.tx() as conn:
            store.revoke_family_of(conn, token_hash=_hash_token(token))

    def issue_for(
        self,
        conn: psycopg.Connection[Any],
        user: UserRow,
        *,
        ip: str | None = None,
        ua: str | None = None,
    ) -> TokenPair:
        """Tokens for a user just created (tenant sign-up, self-registration)."""
        return self._issue(conn, user, family=uuid.uuid4(), ip=ip, ua=ua)
