"""Who is calling: built from a verified JWT or an API key, checked against roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.errors import Forbidden, NotFound

ROLE_RANK = {"User": 1, "Admin": 2, "TenantOwner": 3}
SYSTEM_ADMIN = "SystemAdmin"


@dataclass(frozen=True)
class Principal:
    tenant_id: uuid.UUID | None
    role: str
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    @property
    def is_system_admin(self) -> bool:
        return self.role == SYSTEM_ADMIN

    def require_role(self, minimum: str) -> None:
        if self.is_system_admin:
            return
        if ROLE_RANK.get(self.role, 0) < ROLE_RANK[minimum]:
            raise Forbidden(f"this action needs the {minimum} role", code="insufficient_role")

    def require_system_admin(self) -> None:
        if not self.is_system_admin:
            raise Forbidden("this action needs a system administrator", code="insufficient_role")

    def require_tenant(self) -> uuid.UUID:
        if self.tenant_id is None:
            raise Forbidden("this action needs a tenant account", code="tenant_required")
        return self.tenant_id

    def scope(self, tenant_id: uuid.UUID) -> uuid.UUID:
        """The tenant a request may act on: its own, or any for a system admin.

        Another tenant's id answers 404 (never 403), so ids of other tenants are not confirmed.
        """
        if self.is_system_admin or self.tenant_id == tenant_id:
            return tenant_id
        raise NotFound("tenant not found", code="tenant_not_found")
