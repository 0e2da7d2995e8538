"""Operations: tenant analytics, vector collections, and the tenant lifecycle (suspend,
reactivate, delete → purged by the sweeper). Failed events: shared/failed_events.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any, LiteralString

from shared.auth.principal import Principal
from shared.db import Database, execute, fetch_all, fetch_dicts, fetch_one
from shared.errors import Conflict, InvalidInput, NotFound
from shared.models import TenantRow
from shared.storage import ObjectStore
from shared.telemetry import span
from shared.usage import THUMBNAIL_RESERVE

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.vectors import SpaceInfo, VectorIndex

TENANT_ANY: LiteralString = "SELECT * FROM tenants WHERE id = %(id)s"


class AdminService:
    def __init__(
        self,
        db: Database,
        storage: Callable[[], ObjectStore],
        vectors: Callable[[], VectorIndex],
        publisher: Callable[[], Publisher],
        *,
        active_space: tuple[str, int] | None = None,
    ):
        self.db = db
        self._storage, self._vectors, self._publisher = storage, vectors, publisher
        # (name, dimension) of the vector space new images are indexed into: protected.
        self.active_space = active_space

    # --- analytics -------------------------------------------------------------------------
    def analytics(self, principal: Principal, tenant_id: uuid.UUID) -> dict[str, Any]:
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with span("tenant.analytics", tenant_id=tenant_id), self.db.tenant_tx(tenant_id) as conn:
            tenant = fetch_one(
                conn,
                "SELECT * FROM tenants WHERE id = %(id)s AND deleted_at IS NULL",
                {"id": tenant_id},
                table="tenants",
                row=TenantRow,
            )
            if tenant is None:
                raise NotFound("tenant not found", code="tenant_not_found")
            [img] = fetch_dicts(
                conn,
                """
                SELECT count(*) AS images,
                       coalesce(sum(size_bytes + CASE WHEN thumbnails_bytes > 0
                            THEN thumbnails_bytes ELSE %(reserve)s END)
                            FILTER (WHERE status <> 'failed'), 0)::bigint AS storage,
                       count(*) FILTER (WHERE status = 'uploaded') AS uploaded,
                       count(*) FILTER (WHERE status = 'validated') AS validated,
                       count(*) FILTER (WHERE status = 'extracted') AS extracted,
                       count(*) FILTER (WHERE status = 'failed') AS failed
                FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL
                """,
                {"t": tenant_id, "reserve": THUMBNAIL_RESERVE},
                table="images",
            )
            days = fetch_dicts(
                conn,
                """
                SELECT day, api_calls, searches, uploads FROM usage_daily
                WHERE tenant_id = %(t)s AND day > (now() AT TIME ZONE 'UTC')::date - 30
                ORDER BY day
                """,
                {"t": tenant_id},
                table="usage_daily",
            )
            [users] = fetch_dicts(
                conn,
                "SELECT count(*) AS n FROM users WHERE tenant_id = %(t)s"
                " AND deleted_at IS NULL AND is_active",
                {"t": tenant_id},
                table="users",
            )
            [today] = fetch_dicts(
                conn, "SELECT (now() AT TIME ZONE 'UTC')::date AS d", table="usage_daily"
            )
        by_day: dict[date, dict[str, Any]] = {d["day"]: d for d in days}
        current = by_day.get(today["d"], {})
        return {
            "tenantId": str(tenant.id),
            "tier": tenant.tier,
            "status": tenant.status,
            "storageUsed": int(img["storage"]),
            "storageLimit": tenant.max_storage_bytes,
            "imageCount": int(img["images"]),
            "users": int(users["n"]),
            "userLimit": tenant.max_users,
            "apiCallsToday": int(current.get("api_calls", 0)),
            "apiCallLimit": tenant.max_api_calls_per_day,
            "searchesToday": int(current.get("searches", 0)),
            "uploadsToday": int(current.get("uploads", 0)),
            "apiCallsLast30Days": [
                {"date": d["day"].isoformat(), "calls": int(d["api_calls"])} for d in days
            ],
            "pipelineBacklog": {
                "uploaded": int(img["uploaded"]),
                "validated": int(img["validated"]),
                "extracted": int(img["extracted"]),
            },
            "failedImages": int(img["failed"]),
        }

    # --- collections -----------------------------------------------------------------------
    def collections(self, principal: Principal) -> list[SpaceInfo]:
        principal.require_system_admin()
        return self._vectors().spaces()

    def create_collection(self, principal: Principal, name: str, size: int, distance: str) -> None:
        principal.require_system_admin()
        if distance.lower() != "cosine":
            raise InvalidInput(
                "DeepLens vectors are L2-normalised: distance must be Cosine",
                code="unsupported_distance",
            )
        if not 1 <= size <= 8192:
            raise InvalidInput("vectorSize must be between 1 and 8192", code="invalid_size")
        if self.active_space is not None and name == self.active_space[0]:
            if size != self.active_space[1]:
                raise Conflict(
                    f"{name} is the active vector space: its vectors have"
                    f" {self.active_space[1]} dimensions, not {size}",
                    code="collection_active",
                )
        if any(s.name == name for s in self._vectors().spaces()):
            raise Conflict(f"collection {name} exists", code="collection_exists")
        self._vectors().ensure_space(name, size)

    def delete_collection(self, principal: Principal, name: str, *, force: bool) -> None:
        principal.require_system_admin()
        if not any(s.name == name for s in self._vectors().spaces()):
            raise NotFound(f"collection {name} does not exist", code="collection_not_found")
        with self.db.tx() as conn:
            [row] = fetch_dicts(
                conn,
                "SELECT count(*) AS n FROM tenants WHERE"
                " qdrant_collection_name = %(n)s AND deleted_at IS NULL",
                {"n": name},
                table="tenants",
            )
        # Never dropped, even with force: the active space (every sign-up and search needs
        # it) and a space tenants still use (their images would stay "indexed" with no vector).
        if self.active_space is not None and name == self.active_space[0]:
            raise Conflict(
                f"{name} is the active vector space and cannot be deleted",
                code="collection_active",
            )
        if row["n"]:
            raise Conflict(
                f"collection {name} still serves {row['n']} tenant(s)", code="collection_in_use"
            )
        if not force and any(s.name == name and s.vectors for s in self._vectors().spaces()):
            raise Conflict(
                f"collection {name} still holds vectors; pass force", code="collection_not_empty"
            )
        with self.db.tx() as conn:
            [mig] = fetch_dicts(
                conn,
                "SELECT count(*) AS n FROM tenant_models WHERE other_space = %(n)s",
                {"n": name},
                table="tenant_models",
            )
        if mig["n"]:  # a migration's target or a kept previous space: `deeplens models cleanup`
            raise Conflict(
                f"collection {name} is part of a model migration of {mig['n']} tenant(s);"
                " use deeplens models cleanup",
                code="collection_in_migration",
            )
        self._vectors().drop_space(name)

    # --- tenant lifecycle ------------------------------------------------------------------
    def set_status(self, principal: Principal, tenant_id: uuid.UUID, status: str) -> None:
        principal.require_system_admin()
        with self.db.tx() as conn:
            n = execute(
                conn,
                "UPDATE tenants SET status = %(s)s, updated_at = now()"
                " WHERE id = %(id)s AND deleted_at IS NULL",
                {"s": status, "id": tenant_id},
                table="tenants",
            )
            if status == "Suspended":
                execute(
                    conn,
                    "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at"
                    " IS NULL AND user_id IN (SELECT id FROM users WHERE tenant_id = %(t)s)",
                    {"t": tenant_id},
                    table="refresh_tokens",
                )
        if n == 0:
            raise NotFound("tenant not found", code="tenant_not_found")

    def delete_tenant(self, principal: Principal, tenant_id: uuid.UUID) -> None:
        """Soft delete: the tenant disappears at once (its slug can be reused); the sweeper
        then removes its objects, vectors and rows."""
        principal.scope(tenant_id)
        if not principal.is_system_admin:
            principal.require_role("TenantOwner")
        with self.db.tx() as conn:
            n = execute(
                conn,
                "UPDATE tenants SET status = 'Deleted', deleted_at = now(),"
                " updated_at = now() WHERE id = %(id)s AND deleted_at IS NULL",
                {"id": tenant_id},
                table="tenants",
            )
            execute(
                conn,
                "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL"
                " AND user_id IN (SELECT id FROM users WHERE tenant_id = %(t)s)",
                {"t": tenant_id},
                table="refresh_tokens",
            )
        if n == 0:
            raise NotFound("tenant not found", code="tenant_not_found")

    def purge_deleted_tenants(self, limit: int = 10) -> int:
        """Sweeper step: everything of a deleted tenant goes — objects, vectors, rows."""
        with self.db.tx() as conn:
            tenants = fetch_all(
                conn,
                "SELECT * FROM tenants WHERE deleted_at IS NOT NULL"
                " ORDER BY deleted_at LIMIT %(l)s",
                {"l": limit},
                table="tenants",
                row=TenantRow,
            )
        for t in tenants:
            with span("tenant.purge", tenant_id=t.id):
                self._storage().remove_bucket(t.minio_bucket_name)
                with self.db.tx() as conn:
                    others = fetch_dicts(
                        conn,
                        "SELECT other_space AS s FROM tenant_models WHERE tenant_id = %(t)s"
                        " AND other_space IS NOT NULL",
                        {"t": t.id},
                        table="tenant_models",
                    )
                for space in {t.qdrant_collection_name} | {o["s"] for o in others}:
                    try:
                        if space.startswith(f"tenant_{t.id}_"):
                            self._vectors().drop_space(space)
                        else:
                            self._vectors().delete_tenant(space, tenant_id=t.id)
                    except NotFound:
                        pass
                with self.db.tx() as conn:
                    execute(
                        conn,
                        "DELETE FROM failed_events WHERE tenant_id = %(t)s",
                        {"t": t.id},
                        table="failed_events",
                    )
                    execute(
                        conn,
                        "DELETE FROM tenants WHERE id = %(t)s AND deleted_at IS NOT NULL",
                        {"t": t.id},
                        table="tenants",
                    )
        return len(tenants)
