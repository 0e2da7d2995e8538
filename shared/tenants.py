"""Tenants: creation (with owner, tokens, bucket and vector space), reads, updates.

Every read is scoped: callers pass the principal's allowed tenant (see Principal.scope).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

from shared.auth.principal import Principal
from shared.auth.sessions import SessionService
from shared.db import Database, execute, fetch_all, fetch_one
from shared.errors import Forbidden, InvalidInput, NotFound
from shared.models import TenantRow, TokenPair, UserRow
from shared.telemetry import span
from shared.tiers import TIERS

Provisioner = Callable[[TenantRow], None]

INSERT_TENANT: LiteralString = """
INSERT INTO tenants (id, name, slug, description, domain, status, tier, minio_bucket_name,
    qdrant_collection_name, max_storage_bytes, max_users, max_api_calls_per_day, settings,
    created_by)
VALUES (%(id)s, %(name)s, %(slug)s, %(description)s, %(domain)s, 'Active', %(tier)s,
    %(bucket)s, %(collection)s, %(max_storage)s, %(max_users)s, %(max_calls)s, %(settings)s,
    %(created_by)s)
RETURNING *
"""
INSERT_USER: LiteralString = """
INSERT INTO users (id, tenant_id, email, password_hash, first_name, last_name, role)
VALUES (%(id)s, %(tenant_id)s, %(email)s, %(hash)s, %(first)s, %(last)s, %(role)s)
RETURNING *
"""
TENANT_BY_ID: LiteralString = "SELECT * FROM tenants WHERE id = %(id)s AND deleted_at IS NULL"
TENANT_BY_SLUG: LiteralString = "SELECT * FROM tenants WHERE slug = %(slug)s AND deleted_at IS NULL"
SLUG_TAKEN: LiteralString = (
    "SELECT 1 AS taken FROM tenants WHERE slug = %(slug)s AND deleted_at IS NULL"
)

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48].strip("-")
    return slug or "tenant"


# Tenant settings only an operator (system admin) may set: a dedicated collection per tenant
# does not scale to thousands of tenants, so it is granted, not self-served.
OPERATOR_SETTINGS = frozenset({"isolatedVectors"})


def _check_operator_settings(
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


def collection_for(tenant_id: uuid.UUID, space: str, settings: dict[str, Any]) -> str:
    """The vector space of a tenant: shared per model, or dedicated when the tier asks."""
    if settings.get("isolatedVectors"):
        return f"tenant_{tenant_id}_images"
    return space


class TenantService:
    def __init__(
        self,
        db: Database,
        sessions: SessionService,
        *,
        bucket_prefix: str,
        space: str | Callable[[], str],
        provision: Provisioner | None = None,
    ):
        self.db, self.sessions = db, sessions
        self.bucket_prefix, self.space, self.provision = bucket_prefix, space, provision

    def create(
        self,
        *,
        name: str,
        admin_email: str,
        admin_password: str,
        slug: str | None = None,
        description: str | None = None,
        domain: str | None = None,
        tier: str = "Free",
        settings: dict[str, Any] | None = None,
        admin_first_name: str | None = None,
        admin_last_name: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        operator: bool = False,
    ) -> tuple[TenantRow, TokenPair]:
        """Create a tenant, its TenantOwner, a session for the owner, its bucket and space.
        Operator-only settings (``OPERATOR_SETTINGS``) only with ``operator`` (not sign-up)."""
        if tier not in TIERS:
            raise InvalidInput(f"unknown tier {tier!r}", code="invalid_tier")
        if slug is not None and not SLUG_RE.match(slug):
            raise InvalidInput(
                "slug must be lowercase letters, digits and dashes", code="invalid_slug"
            )
        limits = TIERS[tier]
        tenant_id, user_id = uuid.uuid4(), uuid.uuid4()
        settings = dict(settings or {})
        if not operator:
            settings = _check_operator_settings(None, settings, {})
        password_hash = self.sessions.hasher.hash(admin_password)
        with span("tenant.create", tenant_id=tenant_id), self.db.tx() as conn:
            final_slug = slug or self._free_slug(conn, slugify(name))
            tenant = fetch_one(
                conn,
                INSERT_TENANT,
                {
                    "id": tenant_id,
                    "name": name,
                    "slug": final_slug,
                    "description": description,
                    "domain": domain,
                    "tier": tier,
                    "bucket": f"{self.bucket_prefix}{tenant_id.hex}"[:63],
                    "collection": collection_for(
                        tenant_id,
                        self.space if isinstance(self.space, str) else self.space(),
                        settings,
                    ),
                    "max_storage": limits.max_storage_bytes,
                    "max_users": limits.max_users,
                    "max_calls": limits.max_api_calls_per_day,
                    "settings": Jsonb(settings),
                    "created_by": user_id,
                },
                table="tenants",
                row=TenantRow,
            )
            assert tenant is not None
            owner = fetch_one(
                conn,
                INSERT_USER,
                {
                    "id": user_id,
                    "tenant_id": tenant_id,
                    "email": admin_email.strip(),
                    "hash": password_hash,
                    "first": admin_first_name,
                    "last": admin_last_name,
                    "role": "TenantOwner",
                },
                table="users",
                row=UserRow,
            )
            assert owner is not None
            # Provision inside the transaction: if the bucket or space cannot be made, the
            # tenant row is rolled back and the caller can retry (provisioning is idempotent).
            if self.provision is not None:
                self.provision(tenant)
            pair = self.sessions.issue_for(conn, owner, ip=ip, ua=user_agent)
        return tenant, pair

    def _free_slug(self, conn: Any, base: str) -> str:
        candidate, n = base, 1
        while fetch_one(conn, SLUG_TAKEN, {"slug": candidate}, table="tenants", row=_One):
            n += 1
            candidate = f"{base[:44]}-{n}"
        return candidate

    def get(self, principal: Principal, tenant_id: uuid.UUID) -> TenantRow:
        principal.scope(tenant_id)
        with self.db.tx() as conn:
            t = fetch_one(conn, TENANT_BY_ID, {"id": tenant_id}, table="tenants", row=TenantRow)
        if t is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return t

    def get_by_slug(self, principal: Principal, slug: str) -> TenantRow:
        with self.db.tx() as conn:
            t = fetch_one(conn, TENANT_BY_SLUG, {"slug": slug}, table="tenants", row=TenantRow)
        if t is None or not (principal.is_system_admin or principal.tenant_id == t.id):
            raise NotFound("tenant not found", code="tenant_not_found")
        return t

    def get_by_slug_internal(self, slug: str) -> TenantRow | None:
        with self.db.tx() as conn:
            return fetch_one(conn, TENANT_BY_SLUG, {"slug": slug}, table="tenants", row=TenantRow)

    def list(self, principal: Principal, *, limit: int = 50, offset: int = 0) -> list[TenantRow]:
        with self.db.tx() as conn:
            if principal.is_system_admin:
                return fetch_all(
                    conn,
                    "SELECT * FROM tenants WHERE deleted_at IS NULL"
                    " ORDER BY created_at LIMIT %(l)s OFFSET %(o)s",
                    {"l": limit, "o": offset},
                    table="tenants",
                    row=TenantRow,
                )
            return fetch_all(
                conn,
                TENANT_BY_ID,
                {"id": principal.require_tenant()},
                table="tenants",
                row=TenantRow,
            )

    def update(
        self, principal: Principal, tenant_id: uuid.UUID, changes: dict[str, Any]
    ) -> TenantRow:
        """Owners edit name, description, domain and settings; tier, status and limits are
        the system admin's."""
        current = self.get(principal, tenant_id)
        principal.require_role("Admin")
        if "settings" in changes:
            changes["settings"] = _check_operator_settings(
                principal, dict(changes["settings"] or {}), current.settings or {}
            )
        operator_only = {
            "tier",
            "status",
            "max_storage_bytes",
            "max_users",
            "max_api_calls_per_day",
        }
        if operator_only & changes.keys() and not principal.is_system_admin:
            fields = ", ".join(sorted(operator_only & changes.keys()))
            raise Forbidden(
                f"only a system administrator may change {fields}", code="insufficient_role"
            )
        if "tier" in changes:
            if changes["tier"] not in TIERS:
                raise InvalidInput("unknown tier", code="invalid_tier")
            tier = TIERS[changes["tier"]]
            changes.setdefault("max_storage_bytes", tier.max_storage_bytes)
            changes.setdefault("max_users", tier.max_users)
            changes.setdefault("max_api_calls_per_day", tier.max_api_calls_per_day)
        with self.db.tx() as conn:
            for column, value in changes.items():
                execute(
                    conn,
                    _UPDATES[column],
                    {"id": tenant_id, "v": (Jsonb(value) if column == "settings" else value)},
                    table="tenants",
                )
            t = fetch_one(conn, TENANT_BY_ID, {"id": tenant_id}, table="tenants", row=TenantRow)
        assert t is not None
        return t


# One literal statement per updatable column: no SQL is built from request data.
_UPDATES: dict[str, LiteralString] = {
    "name": "UPDATE tenants SET name = %(v)s, updated_at = now() WHERE id = %(id)s",
    "description": "UPDATE tenants SET description = %(v)s, updated_at = now() WHERE id = %(id)s",
    "domain": "UPDATE tenants SET domain = %(v)s, updated_at = now() WHERE id = %(id)s",
    "settings": "UPDATE tenants SET settings = %(v)s, updated_at = now() WHERE id = %(id)s",
    "tier": "UPDATE tenants SET tier = %(v)s, updated_at = now() WHERE id = %(id)s",
    "status": "UPDATE tenants SET status = %(v)s, updated_at = now() WHERE id = %(id)s",
    "max_storage_bytes": "UPDATE tenants SET max_storage_bytes = %(v)s, updated_at = now()"
    " WHERE id = %(id)s",
    "max_users": "UPDATE tenants SET max_users = %(v)s, updated_at = now() WHERE id = %(id)s",
    "max_api_calls_per_day": "UPDATE tenants SET max_api_calls_per_day = %(v)s,"
    " updated_at = now() WHERE id = %(id)s",
}


class _One:
    def __init__(self, taken: int):
        self.taken = taken
