"""A tenant's users: list, invite, change role, deactivate; plus the system admin account."""

from __future__ import annotations

import secrets
import uuid
from typing import LiteralString

from shared.auth.passwords import PasswordHasher
from shared.auth.principal import ROLE_RANK, Principal
from shared.db import Database, execute, fetch_all, fetch_one
from shared.errors import Forbidden, InvalidInput, NotFound
from shared.models import UserRow
from shared.telemetry import span
from shared.tenants import INSERT_USER
from shared.usage import UsageService

LIST_USERS: LiteralString = """
SELECT * FROM users WHERE tenant_id = %(tenant_id)s AND deleted_at IS NULL
ORDER BY created_at LIMIT %(limit)s OFFSET %(offset)s
"""
USER_IN_TENANT: LiteralString = """
SELECT * FROM users WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND deleted_at IS NULL
"""


class UserService:
    def __init__(self, db: Database, hasher: PasswordHasher):
        self.db, self.hasher = db, hasher

    def list(
        self, principal: Principal, *, tenant_id: uuid.UUID, limit: int = 50, offset: int = 0
    ) -> list[UserRow]:
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with self.db.tenant_tx(tenant_id) as conn:
            return fetch_all(
                conn,
                LIST_USERS,
                {"tenant_id": tenant_id, "limit": limit, "offset": offset},
                table="users",
                row=UserRow,
            )

    def get(self, principal: Principal, *, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserRow:
        principal.scope(tenant_id)
        with self.db.tenant_tx(tenant_id) as conn:
            u = fetch_one(
                conn,
                USER_IN_TENANT,
                {"id": user_id, "tenant_id": tenant_id},
                table="users",
                row=UserRow,
            )
        if u is None:
            raise NotFound("user not found", code="user_not_found")
        return u

    def get_any(self, user_id: uuid.UUID) -> UserRow | None:
        """The caller's own row (``/me``): the id comes from a verified token."""
        with self.db.tx() as conn:
            return fetch_one(
                conn,
                "SELECT * FROM users WHERE id = %(id)s AND deleted_at IS NULL",
                {"id": user_id},
                table="users",
                row=UserRow,
            )

    def invite(
        self,
        principal: Principal,
        *,
        tenant_id: uuid.UUID,
        email: str,
        role: str = "User",
        password: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> tuple[UserRow, str | None]:
        """Add a user; when no password is given a temporary one is generated and returned
        once (the caller shows it to the admin, it is never stored in clear)."""
        principal.scope(tenant_id)
        principal.require_role("Admin")
        self._check_grant(principal, role)
        temporary = None
        if password is None:
            temporary = secrets.token_urlsafe(12)
            password = temporary
        with span("user.invite", tenant_id=tenant_id):
            user = self._add(tenant_id, email, password, first_name, last_name, role)
        return user, temporary

    def register(
        self,
        *,
        tenant_id: uuid.UUID,
        email: str,
        password: str,
        first_name: str | None,
        last_name: str | None,
    ) -> UserRow:
        """Self-registration (only where the tenant allows it; checked by the caller)."""
        return self._add(tenant_id, email, password, first_name, last_name, "User")

    def _add(
        self,
        tenant_id: uuid.UUID,
        email: str,
        password: str,
        first_name: str | None,
        last_name: str | None,
        role: str,
    ) -> UserRow:
        """Insert a tenant user within the tier's user limit."""
        hashed = self.hasher.hash(password)  # before the lock: bcrypt is slow on purpose
        with self.db.tenant_tx(tenant_id) as conn:
            UsageService.reserve_user(conn, tenant_id)
            user = fetch_one(
                conn,
                INSERT_USER,
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant_id,
                    "email": email.strip(),
                    "hash": hashed,
                    "first": first_name,
                    "last": last_name,
                    "role": role,
                },
                table="users",
                row=UserRow,
            )
        assert user is not None
        return user

    def update(
        self,
        principal: Principal,
        *,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID,
        role: str | None = None,
        is_active: bool | None = None,
    ) -> UserRow:
        principal.require_role("Admin")
        target = self.get(principal, tenant_id=tenant_id, user_id=user_id)
        # Nobody changes or deactivates a user ranked above them: an Admin cannot touch the
        # TenantOwner (only another owner or a system admin can).
        self._check_grant(principal, target.role)
        if role is not None:
            self._check_grant(principal, role)
        if target.id == principal.user_id and (role is not None or is_active is False):
            raise Forbidden(
                "you cannot change your own role or deactivate yourself", code="self_modification"
            )
        with self.db.tx() as conn:
            if role is not None:
                execute(
                    conn,
                    "UPDATE users SET role = %(r)s, updated_at = now()"
                    " WHERE id = %(id)s AND tenant_id = %(t)s",
                    {"r": role, "id": user_id, "t": tenant_id},
                    table="users",
                )
            if is_active is not None:
                execute(
                    conn,
                    "UPDATE users SET is_active = %(a)s, updated_at = now()"
                    " WHERE id = %(id)s AND tenant_id = %(t)s",
                    {"a": is_active, "id": user_id, "t": tenant_id},
                    table="users",
                )
                if not is_active:
                    execute(
                        conn,
                        "UPDATE refresh_tokens SET revoked_at = now()"
                        " WHERE user_id = %(id)s AND revoked_at IS NULL",
                        {"id": user_id},
                        table="refresh_tokens",
                    )
        return self.get(principal, tenant_id=tenant_id, user_id=user_id)

    @staticmethod
    def _check_grant(principal: Principal, role: str) -> None:
        if role not in ROLE_RANK:
            raise InvalidInput("role must be User, Admin or TenantOwner", code="invalid_role")
        if principal.is_system_admin:
            return
        if ROLE_RANK[role] > ROLE_RANK.get(principal.role, 0):
            raise Forbidden(
                "you cannot grant or change a role above your own", code="insufficient_role"
            )

    def create_system_admin(self, *, email: str, password: str) -> UserRow:
        with self.db.tx() as conn:
            user = fetch_one(
                conn,
                INSERT_USER,
                {
                    "id": uuid.uuid4(),
                    "tenant_id": None,
                    "email": email.strip(),
                    "hash": self.hasher.hash(password),
                    "first": None,
                    "last": None,
                    "role": "SystemAdmin",
                },
                table="users",
                row=UserRow,
            )
        assert user is not None
        return user
