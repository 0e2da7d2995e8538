"""TenantService: every tenant use case, the lifecycle included.

Every read is scoped: callers pass the principal's allowed tenant (see Principal.scope).
Suspending (``set_status`` and ``update`` with a status, by whichever route) always has the
same effects: the status is one of a closed set, the tenant's refresh tokens are revoked, and
the identity caches of every process drop the tenant (migration 0007's trigger NOTIFYs them;
shared/hotpath/), so its credentials are refused at once.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from shared.auth.principal import Principal
from shared.auth.sessions import SessionService
from shared.db import Database
from shared.errors import InvalidInput, NotFound
from shared.models import TokenPair
from shared.store import failed_events, model_spaces, sessions, tenants, users
from shared.store.tenants import STATUSES, TenantRow
from shared.telemetry import span
from shared.tenants.policy import (
    SLUG_RE,
    check_operator_fields,
    check_operator_settings,
    collection_for,
    slugify,
)
from shared.tenants.resources import TenantResources
from shared.tiers import TIERS
from shared.usage import SignupLimiter


class TenantService:
    def __init__(
        self,
        db: Database,
        sessions: SessionService,
        resources: TenantResources,
        *,
        bucket_prefix: str,
        signups: SignupLimiter | None = None,
    ):
        self.db, self.sessions, self.resources = db, sessions, resources
        self.bucket_prefix, self.signups = bucket_prefix, signups

    # --- creation --------------------------------------------------------------------------
    def sign_up(self, *, ip: str | None = None, **fields: Any) -> tuple[TenantRow, TokenPair]:
        """Public sign-up: a Free tenant with its owner, signed in; rate-limited per client
        address. ``fields`` are ``create``'s (tier and operator settings are not offered)."""
        if self.signups is not None:
            self.signups.take(ip)
        return self.create(ip=ip, **fields)

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
            settings = check_operator_settings(None, settings, {})
        password_hash = self.sessions.hasher.hash(admin_password)
        with span("tenant.create", tenant_id=tenant_id), self.db.tx() as conn:
            tenant = tenants.insert(
                conn,
                tenant_id=tenant_id,
                settings=settings,
                name=name,
                slug=slug or self._free_slug(conn, slugify(name)),
                description=description,
                domain=domain,
                tier=tier,
                bucket=f"{self.bucket_prefix}{tenant_id.hex}"[:63],
                collection=collection_for(tenant_id, self.resources.platform_space(), settings),
                max_storage=limits.max_storage_bytes,
                max_users=limits.max_users,
                max_calls=limits.max_api_calls_per_day,
                created_by=user_id,
            )
            owner = users.insert(
                conn,
                user_id=user_id,
                tenant_id=tenant_id,
                email=admin_email,
                password_hash=password_hash,
                first_name=admin_first_name,
                last_name=admin_last_name,
                role="TenantOwner",
            )
            # Provision inside the transaction: if the bucket or space cannot be made, the
            # tenant row is rolled back and the caller can retry (provisioning is idempotent).
            self.resources.provision(tenant)
            pair = self.sessions.issue_for(conn, owner, ip=ip, ua=user_agent)
        return tenant, pair

    @staticmethod
    def _free_slug(conn: psycopg.Connection[Any], base: str) -> str:
        candidate, n = base, 1
        while tenants.slug_taken(conn, slug=candidate):
            n += 1
            candidate = f"{base[:44]}-{n}"
        return candidate

    # --- reads -----------------------------------------------------------------------------
    def get(self, principal: Principal, *, tenant_id: uuid.UUID) -> TenantRow:
        principal.scope(tenant_id)
        with self.db.tx() as conn:
            t = tenants.get(conn, tenant_id=tenant_id)
        if t is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return t

    def get_by_slug(self, principal: Principal, slug: str) -> TenantRow:
        with self.db.tx() as conn:
            t = tenants.by_slug(conn, slug=slug)
        if t is None or not (principal.is_system_admin or principal.tenant_id == t.id):
            raise NotFound("tenant not found", code="tenant_not_found")
        return t

    def get_by_slug_internal(self, slug: str) -> TenantRow | None:
        with self.db.tx() as conn:
            return tenants.by_slug(conn, slug=slug)

    def list(self, principal: Principal, *, limit: int = 50, offset: int = 0) -> list[TenantRow]:
        with self.db.tx() as conn:
            if principal.is_system_admin:
                return tenants.list_all(conn, limit=limit, offset=offset)
            own = tenants.get(conn, tenant_id=principal.require_tenant())
        return [own] if own is not None else []

    # --- changes ---------------------------------------------------------------------------
    def update(
        self, principal: Principal, *, tenant_id: uuid.UUID, changes: dict[str, Any]
    ) -> TenantRow:
        """Owners edit name, description, domain and settings; tier, status and limits are
        the system admin's. A status goes through the lifecycle (``set_status``'s effects)."""
        current = self.get(principal, tenant_id=tenant_id)
        principal.require_role("Admin")
        changes = dict(changes)
        if "settings" in changes:
            changes["settings"] = check_operator_settings(
                principal, dict(changes["settings"] or {}), current.settings or {}
            )
        check_operator_fields(principal, changes)
        status = changes.pop("status", None)
        if status is not None:
            _check_status(status)
        if "tier" in changes:
            if changes["tier"] not in TIERS:
                raise InvalidInput("unknown tier", code="invalid_tier")
            tier = TIERS[changes["tier"]]
            changes.setdefault("max_storage_bytes", tier.max_storage_bytes)
            changes.setdefault("max_users", tier.max_users)
            changes.setdefault("max_api_calls_per_day", tier.max_api_calls_per_day)
        with self.db.tx() as conn:
            for column, value in changes.items():
                tenants.update(conn, tenant_id=tenant_id, column=column, value=value)
            if status is not None:
                self._apply_status(conn, tenant_id=tenant_id, status=status)
            t = tenants.get(conn, tenant_id=tenant_id)
        if t is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return t

    # --- lifecycle -------------------------------------------------------------------------
    def set_status(self, principal: Principal, *, tenant_id: uuid.UUID, status: str) -> None:
        """Suspend (``Suspended``) or reactivate (``Active``) a tenant: system admins only."""
        principal.require_system_admin()
        _check_status(status)
        with span("tenant.set_status", tenant_id=tenant_id), self.db.tx() as conn:
            self._apply_status(conn, tenant_id=tenant_id, status=status)

    @staticmethod
    def _apply_status(conn: psycopg.Connection[Any], *, tenant_id: uuid.UUID, status: str) -> None:
        """The one place a status changes. Suspension revokes every session of the tenant
        (its users must sign in again once reactivated); the status change itself NOTIFYs the
        identity caches, so access tokens and API keys are refused at once."""
        if not tenants.set_status(conn, tenant_id=tenant_id, status=status):
            raise NotFound("tenant not found", code="tenant_not_found")
        if status == "Suspended":
            sessions.revoke_tenant(conn, tenant_id=tenant_id)

    def delete(self, principal: Principal, *, tenant_id: uuid.UUID) -> None:
        """Soft delete: the tenant disappears at once (its slug can be reused); the sweeper
        then removes its objects, vectors and rows (``purge_deleted``)."""
        principal.scope(tenant_id)
        if not principal.is_system_admin:
            principal.require_role("TenantOwner")
        with span("tenant.delete", tenant_id=tenant_id), self.db.tx() as conn:
            found = tenants.soft_delete(conn, tenant_id=tenant_id)
            sessions.revoke_tenant(conn, tenant_id=tenant_id)
        if not found:
            raise NotFound("tenant not found", code="tenant_not_found")

    def purge_deleted(self, limit: int = 10) -> int:
        """Sweeper step: everything of a deleted tenant goes — objects, vectors, rows."""
        with self.db.tx() as conn:
            gone = tenants.deleted(conn, limit=limit)
        for t in gone:
            with span("tenant.purge", tenant_id=t.id):
                with self.db.tx() as conn:
                    others = model_spaces.other_spaces(conn, tenant_id=t.id)
                self.resources.release(t, {t.qdrant_collection_name, *others})
                with self.db.tx() as conn:
                    # failed_events.tenant_id has no foreign key (a dead letter may name none).
                    failed_events.purge_tenant(conn, tenant_id=t.id)
                    tenants.purge(conn, tenant_id=t.id)
        return len(gone)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InvalidInput("status must be Active or Suspended", code="invalid_status")
