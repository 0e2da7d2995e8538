"""Rules on a tenant's own data: slugs, operator-only settings and fields, its vector space."""

from __future__ import annotations

import re
import uuid
from typing import Any

from shared.auth.principal import Principal
from shared.errors import Forbidden

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")

# Tenant settings only an operator (system admin) may set: a dedicated collection per tenant
# does not scale to thousands of tenants, so it is granted, not self-served.
OPERATOR_SETTINGS = frozenset({"isolatedVectors"})
# Tenant fields only an operator may change (owners edit name, description, domain, settings).
OPERATOR_FIELDS = frozenset(
    {"tier", "status", "max_storage_bytes", "max_users", "max_api_calls_per_day"}
)


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48].strip("-")
    return slug or "tenant"


def check_operator_settings(
    principal: Principal | None, new: dict[str, Any], current: dict[str, Any]
) -> dict[str, Any]:
    """Refuse a tenant's change to an operator-only setting; keep the operator's values when
    a tenant replaces its settings."""
    if principal is not None and principal.is_system_admin:
        return new
    changed = sorted(k for k in OPERATOR_SETTINGS if new.get(k) != current.get(k) and k in new)
    if changed:
        raise Forbidden(
            f"only an operator may set {', '.join(changed)}", code="operator_only_setting"
        )
    return {**new, **{k: current[k] for k in OPERATOR_SETTINGS if k in current}}


def check_operator_fields(principal: Principal, changes: dict[str, Any]) -> None:
    if OPERATOR_FIELDS & changes.keys() and not principal.is_system_admin:
        fields = ", ".join(sorted(OPERATOR_FIELDS & changes.keys()))
        raise Forbidden(
            f"only a system administrator may change {fields}", code="insufficient_role"
        )


def collection_for(tenant_id: uuid.UUID, space: str, settings: dict[str, Any]) -> str:
    """The vector space of a tenant: shared per model, or dedicated when the tier asks."""
    if settings.get("isolatedVectors"):
        return f"tenant_{tenant_id}_images"
    return space
