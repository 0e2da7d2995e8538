"""A tenant's users: list, invite, change role, deactivate; self-registration where a tenant
allows it; the caller's own identity; plus the system admin account."""

from __future__ import annotations

import secrets
import uuid

from shared.auth.passwords import PasswordHasher
from shared.auth.principal import ROLE_RANK, Principal
from shared.db import Database
from shared.errors import Forbidden, InvalidInput, NotFound
from shared.store import sessions, tenants, users
from shared.store.tenants import TenantRow
from shared.store.users import UserRow
from shared.telemetry import span
from shared.usage import UsageService


class UserService:
    def __init__(self, db: Database, hasher: PasswordHasher):
        self.db, self.hasher = db, hasher

    def list(
        self, principal: Principal, *, tenant_id: uuid.UUID, limit: int = 50, offset: int = 0
    ) -> list[UserRow]:
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with self.db.tenant_tx(tenant_id) as conn:
            return users.list_in_tenant(conn, tenant_id=tenant_id, limit=limit, offset=offset)

    def get(self, principal: Principal, *, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserRow:
        principal.scope(tenant_id)
        with self.db.tenant_tx(tenant_id) as conn:
            u = users.in_tenant(conn, tenant_id=tenant_id, user_id=user_id)
        if u is None:
            raise NotFound("user not found", code="user_not_found")
        return u

    def me(self, principal: Principal) -> tuple[UserRow | None, TenantRow | None]:
        """The caller's own account (none for an API key) and tenant (none for a system
        admin): the ids come from a verified credential."""
        with self.db.tx() as conn:
            user = users.get(conn, user_id=principal.user_id) if principal.user_id else None
            if principal.tenant_id is None:
                return user, None
            tenant = tenants.get(conn, tenant_id=principal.tenant_id)
        if tenant is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return user, tenant

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
        tenant_slug: str,
        email: str,
        password: str,
        first_name: str | None = None,
        last_name: str | None = None,
    ) -> UserRow:
        """Self-registration, only into an active tenant whose settings allow it
        (``allowSelfRegistration``). One answer whether the slug is unknown, closed or
        suspended: registration must not tell outsiders which tenants exist."""
        with self.db.tx() as conn:
            tenant = tenants.by_slug(conn, slug=tenant_slug)
        if (
            tenant is None
            or not tenant.settings.get("allowSelfRegistration")
            or tenant.status != "Active"
        ):
            raise Forbidden(
                "no tenant with this slug accepts self-registration", code="registration_closed"
            )
        return self._add(tenant.id, email, password, first_name, last_name, "User")

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
        with self.db.tenant_tx(tenant_id) as conn:
            # A full tenant is refused before the (deliberately slow) hash, then checked again
            # under the lock below.
            UsageService.check_users(conn, tenant_id)
        hashed = self.hasher.hash(password)  # before the lock: bcrypt is slow on purpose
        with self.db.tenant_tx(tenant_id) as conn:
            UsageService.reserve_user(conn, tenant_id)
            return users.insert(
                conn,
                tenant_id=tenant_id,
                email=email,
                password_hash=hashed,
                first_name=first_name,
                last_name=last_name,
                role=role,
            )

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
                users.set_role(conn, tenant_id=tenant_id, user_id=user_id, role=role)
            if is_active is not None:
                users.set_active(conn, tenant_id=tenant_id, user_id=user_id, active=is_active)
                if not is_active:
                    sessions.revoke_user(conn, user_id=user_id)
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
            return users.insert(
                conn,
                tenant_id=None,
                email=email,
                password_hash=self.hasher.hash(password),
                role="SystemAdmin",
            )
