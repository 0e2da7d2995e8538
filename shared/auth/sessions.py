"""Sign-in sessions: login, refresh-token rotation with reuse detection, logout, register.

Refresh tokens are opaque random strings stored as SHA-256 hashes: they carry 256 bits of
entropy, so a fast hash is enough (bcrypt is for low-entropy passwords).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg

from shared import metrics
from shared.auth.keys import TokenKeys
from shared.auth.passwords import PasswordHasher
from shared.db import Database, execute, fetch_all, fetch_one
from shared.errors import Conflict, Forbidden, Unauthorized
from shared.models import TenantRow, TokenPair, UserOut, UserRow
from shared.telemetry import span
from shared.usage import LoginThrottle

INVALID = "invalid email or password"

USERS_BY_EMAIL: LiteralString = """
SELECT u.* FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id
WHERE lower(u.email) = lower(%(email)s) AND u.deleted_at IS NULL
  AND (t.id IS NULL OR t.deleted_at IS NULL)
  AND (%(slug)s::text IS NULL OR t.slug = %(slug)s)
ORDER BY u.created_at
LIMIT 20
"""
TENANT_BY_ID: LiteralString = "SELECT * FROM tenants WHERE id = %(id)s AND deleted_at IS NULL"
USER_BY_ID: LiteralString = "SELECT * FROM users WHERE id = %(id)s AND deleted_at IS NULL"
INSERT_REFRESH: LiteralString = """
INSERT INTO refresh_tokens (id, user_id, token_hash, family_id, expires_at, created_by_ip,
                            user_agent)
VALUES (%(id)s, %(user_id)s, %(hash)s, %(family)s, %(expires)s, %(ip)s, %(ua)s)
"""
TOUCH_LOGIN: LiteralString = """
UPDATE users SET last_login_at = now(), failed_login_attempts = 0, updated_at = now()
WHERE id = %(id)s
"""
COUNT_FAILED: LiteralString = """
UPDATE users SET failed_login_attempts = failed_login_attempts + 1 WHERE id = ANY(%(ids)s)
"""


class RefreshRow:
    def __init__(
        self,
        id: uuid.UUID,
        user_id: uuid.UUID,
        family_id: uuid.UUID,
        expires_at: datetime,
        revoked_at: datetime | None,
    ):
        self.id, self.user_id, self.family_id = id, user_id, family_id
        self.expires_at, self.revoked_at = expires_at, revoked_at


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
    ):
        self.db, self.keys, self.hasher, self.refresh_ttl = db, keys, hasher, refresh_ttl
        self.throttle = throttle

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
                candidates = fetch_all(
                    conn,
                    USERS_BY_EMAIL,
                    {"email": email, "slug": tenant_slug},
                    table="users",
                    row=UserRow,
                )
            if not candidates:
                self.hasher.verify(password, None)
                s.set_attribute("auth.result", "failure")
                if self.throttle is not None:
                    self.throttle.failed(email, ip)
                raise Unauthorized(INVALID, code="invalid_credentials")
            matches = [u for u in candidates if self.hasher.verify(password, u.password_hash)]
            if not matches:
                with self.db.tx() as conn:
                    execute(conn, COUNT_FAILED, {"ids": [u.id for u in candidates]}, table="users")
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
                execute(conn, TOUCH_LOGIN, {"id": user.id}, table="users")
            if self.throttle is not None:
                self.throttle.succeeded(email, ip)
            s.set_attribute("auth.result", "success")
            return pair

    def _check_can_sign_in(self, conn: psycopg.Connection[Any], user: UserRow) -> TenantRow | None:
        if not user.is_active:
            raise Forbidden("this account is deactivated", code="account_disabled")
        if user.tenant_id is None:
            return None
        tenant = fetch_one(
            conn, TENANT_BY_ID, {"id": user.tenant_id}, table="tenants", row=TenantRow
        )
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
            execute(
                conn,
                INSERT_REFRESH,
                {
                    "id": new_id,
                    "user_id": user.id,
                    "hash": _hash_token(refresh),
                    "family": family,
                    "expires": datetime.now(UTC) + timedelta(seconds=self.refresh_ttl),
                    "ip": ip,
                    "ua": (ua or "")[:256] or None,
                },
                table="refresh_tokens",
            )
            if replaces is not None:
                execute(
                    conn,
                    "UPDATE refresh_tokens SET revoked_at = now(), replaced_by = %(new)s"
                    " WHERE id = %(old)s",
                    {"new": new_id, "old": replaces},
                    table="refresh_tokens",
                )
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
                row = fetch_one(
                    conn,
                    "SELECT id, user_id, family_id, expires_at, revoked_at FROM refresh_tokens"
                    " WHERE token_hash = %(h)s FOR UPDATE",
                    {"h": _hash_token(token)},
                    table="refresh_tokens",
                    row=RefreshRow,
                )
                if row is None:
                    raise Unauthorized("invalid refresh token", code="invalid_refresh_token")
                if row.revoked_at is None:
                    if row.expires_at <= datetime.now(UTC):
                        raise Unauthorized("refresh token expired", code="refresh_token_expired")
                    user = fetch_one(
                        conn, USER_BY_ID, {"id": row.user_id}, table="users", row=UserRow
                    )
                    if user is None:
                        raise Unauthorized("invalid refresh token", code="invalid_refresh_token")
                    self._check_can_sign_in(conn, user)
                    s.set_attribute("user.id", str(user.id))
                    return self._issue(
                        conn, user, family=row.family_id, ip=ip, ua=user_agent, replaces=row.id
                    )
                # Reuse: revoke the family and let this transaction commit before refusing.
                execute(
                    conn,
                    "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now())"
                    " WHERE family_id = %(f)s",
                    {"f": row.family_id},
                    table="refresh_tokens",
                )
            s.set_attribute("auth.result", "reuse_detected")
            raise Unauthorized(
                "refresh token was already used; sessions revoked", code="refresh_token_reused"
            )

    def logout(self, token: str) -> None:
        """Revoke the token's whole family (this device's session). Unknown tokens are a no-op,
        so logout is idempotent."""
        with span("token.revoke"), self.db.tx() as conn:
            execute(
                conn,
                "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now())"
                " WHERE family_id = (SELECT family_id FROM refresh_tokens"
                " WHERE token_hash = %(h)s)",
                {"h": _hash_token(token)},
                table="refresh_tokens",
            )

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
