"""Changing the model without downtime: migrate (a target space, dual-write, backfill),
status, cutover (atomic per tenant, only once the target holds every image — counted, not
assumed), rollback (to the previous space while it is kept), cleanup (drop the other space),
and reindex (rebuild the active space from the stored originals).

The backfill re-embeds images through the extract function (``image.reembed`` events at low
broker priority), tenant by tenant, in bounded batches. Its state is in PostgreSQL: a crash at
any point resumes from what ``image_spaces`` and ``backfill_items`` say, and an image already
held by the target is never embedded again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg

from shared.auth.principal import Principal
from shared.db import Database, execute, fetch_all, fetch_dicts, fetch_one
from shared.errors import Conflict, Forbidden, NotFound
from shared.model_spaces import ModelSpaces, TenantModels, space_for
from shared.models import TenantRow
from shared.telemetry import span

if TYPE_CHECKING:
    from shared.backfill import Backfiller
    from shared.vectors import VectorIndex

log = logging.getLogger(__name__)

LIVE_TENANTS: LiteralString = (
    "SELECT * FROM tenants WHERE deleted_at IS NULL ORDER BY created_at, id"
)
TENANT: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s AND deleted_at IS NULL"
LOCK_STATE: LiteralString = "SELECT * FROM tenant_models WHERE tenant_id = %(t)s FOR UPDATE"
# The images a complete space must hold: every live image past extraction. Images still at
# uploaded/validated are extracted after a cutover into whatever spaces are current then.
COUNTS: LiteralString = """
SELECT count(*) AS images,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM image_spaces s
                                      WHERE s.image_id = i.id AND s.space = %(space)s)) AS held
FROM images i
WHERE i.tenant_id = %(t)s AND i.deleted_at IS NULL AND i.status IN ('extracted', 'indexed')
"""
RATE: LiteralString = """
SELECT count(*) AS recent,
       extract(epoch FROM now() - %(since)s::timestamptz) AS elapsed
FROM image_spaces
WHERE space = %(space)s AND tenant_id = %(t)s AND created_at > now() - interval '60 seconds'
"""
FAILURES: LiteralString = """
SELECT count(*) AS n FROM backfill_items bi JOIN backfills b ON b.id = bi.backfill_id
WHERE b.tenant_id = %(t)s AND b.space = %(space)s AND b.state <> 'cancelled'
  AND bi.failed_at IS NOT NULL
"""


class MigrationService:
    def __init__(
        self,
        db: Database,
        models: ModelSpaces,
        vectors: Callable[[], VectorIndex],
        backfill: Backfiller,
    ) -> None:
        self.db, self.models, self.backfill = db, models, backfill
        self._vectors = vectors

    def top_up(self) -> int:
        """Queue the next batch of the running backfill (see shared/backfill.py)."""
        return self.backfill.top_up()

    # --- helpers ---------------------------------------------------------------------------
    def _tenants(self, tenant_id: uuid.UUID | None) -> list[TenantRow]:
        with self.db.tx() as conn:
            if tenant_id is None:
                return fetch_all(conn, LIVE_TENANTS, table="tenants", row=TenantRow)
            t = fetch_one(conn, TENANT, {"t": tenant_id}, table="tenants", row=TenantRow)
        if t is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return [t]

    def _counts(self, conn: psycopg.Connection[Any], tenant_id: uuid.UUID, space: str) -> Any:
        [row] = fetch_dicts(conn, COUNTS, {"t": tenant_id, "space": space}, table="images")
        return int(row["images"]), int(row["held"])

    def _set_platform(self, **cols: str | None) -> None:
        with self.db.tx() as conn:
            self.models.platform(conn)
            execute(
                conn,
                "UPDATE model_platform SET active_model = coalesce(%(a)s, active_model),"
                " target_model = %(t)s, previous_model = %(p)s, updated_at = now()"
                " WHERE id = 1",
                {"a": cols.get("active"), "t": cols.get("target"), "p": cols.get("previous")},
                table="model_platform",
            )

    def _platform(self) -> dict[str, Any]:
        with self.db.tx() as conn:
            return self.models.platform(conn)

    # --- migrate ---------------------------------------------------------------------------
    def migrate(
        self, principal: Principal, to: str, *, tenant_id: uuid.UUID | None = None
    ) -> dict[str, Any]:
        """Start (or resume) a migration to model ``to``: a target space per tenant, dual
        writes from now on, and a backfill job per tenant. For one tenant only, its tier must
        be Enterprise (everyone else follows the platform)."""
        principal.require_system_admin()
        spec = self.models.spec(to)
        tenants = self._tenants(tenant_id)
        if tenant_id is not None and tenants[0].tier != "Enterprise":
            raise Forbidden(
                "a tenant of its own model needs the Enterprise tier", code="tier_required"
            )
        if tenant_id is None:
            plat = self._platform()
            if plat["previous_model"]:
                raise Conflict(
                    f"the previous space ({plat['previous_model']}) is still kept:"
                    " run cleanup (or rollback) first",
                    code="cleanup_required",
                )
            if plat["target_model"] not in (None, spec.ref):
                raise Conflict(
                    f"a migration to {plat['target_model']} is running; cleanup abandons it",
                    code="migration_in_progress",
                )
            if plat["active_model"] == spec.ref:
                raise Conflict(f"{spec.ref} is already active", code="already_active")
        states = {t.id: self.models.state(t.id) for t in tenants}
        for t in tenants:
            st = states[t.id]
            if st.other_role == "previous":
                raise Conflict(
                    f"tenant {t.slug} still keeps its previous space: cleanup first",
                    code="cleanup_required",
                )
            if st.other_role == "target" and st.other_model != spec.ref:
                raise Conflict(
                    f"tenant {t.slug} is migrating to {st.other_model}",
                    code="migration_in_progress",
                )
        if tenant_id is None:
            self._set_platform(target=spec.ref)
        for t in tenants:
            st = states[t.id]
            if st.active_model == spec.ref or st.other_role == "target":
                continue
            space = space_for(t, spec)
            self._vectors().ensure_space(space, spec.dim)
            with span("model.migrate", tenant_id=t.id), self.db.tx() as conn:
                execute(
                    conn,
                    "UPDATE tenant_models SET other_model = %(m)s, other_space = %(s)s,"
                    " other_role = 'target', started_at = now(), updated_at = now()"
                    " WHERE tenant_id = %(t)s AND other_role IS NULL",
                    {"m": spec.ref, "s": space, "t": t.id},
                    table="tenant_models",
                )
                self.backfill.new_job(conn, t.id, spec.ref, space, "migrate")
        self.backfill.top_up()
        return self.status(principal, tenant_id=tenant_id)

    def reindex(self, principal: Principal, *, tenant_id: uuid.UUID | None = None) -> int:
        """Rebuild each tenant's active space from the stored originals (after a lost or
        damaged vector store, say). Search keeps answering meanwhile: points are overwritten
        in place. Returns the number of tenants queued."""
        principal.require_system_admin()
        n = 0
        for t in self._tenants(tenant_id):
            st = self.models.state(t.id)
            spec = self.models.spec(st.active_model)
            self._vectors().ensure_space(st.active_space, spec.dim)
            with span("model.reindex", tenant_id=t.id), self.db.tx() as conn:
                execute(
                    conn,
                    "DELETE FROM image_spaces WHERE tenant_id = %(t)s AND space = %(s)s",
                    {"t": t.id, "s": st.active_space},
                    table="image_spaces",
                )
                self.backfill.new_job(conn, t.id, st.active_model, st.active_space, "reindex")
            n += 1
        self.backfill.top_up()
        return n

    # --- backfill --------------------------------------------------------------------------
    def status(self, principal: Principal, *, tenant_id: uuid.UUID | None = None) -> dict[str, Any]:
        """Where every tenant stands: spaces, images held by each, backfill progress (done,
        remaining, rate, ETA, failures) and whether similarities are calibrated."""
        principal.require_system_admin()
        plat = self._platform()
        out: list[dict[str, Any]] = []
        totals: dict[str, Any] = {
            "images": 0,
            "done": 0,
            "remaining": 0,
            "failures": 0,
            "ratePerSecond": 0.0,
        }
        for t in self._tenants(tenant_id):
            st = self.models.state(t.id)
            out.append(self._tenant_status(t, st, totals))
        rate = totals["ratePerSecond"]
        totals["etaSeconds"] = round(totals["remaining"] / rate, 1) if rate > 0 else None
        refs = {plat["active_model"], plat["target_model"], plat["previous_model"]} - {None}
        return {
            "platform": {
                "activeModel": plat["active_model"],
                "targetModel": plat["target_model"],
                "previousModel": plat["previous_model"],
            },
            "models": [self._model_info(r) for r in sorted(refs)],
            "tenants": out,
            "totals": totals,
        }

    def _model_info(self, ref: str) -> dict[str, Any]:
        spec = self.models.spec(ref)
        return {
            "model": ref,
            "space": spec.space_name,
            "dimension": spec.dim,
            "similarity": "calibrated" if spec.calibration is not None else "raw cosine",
        }

    def _tenant_status(
        self, t: TenantRow, st: TenantModels, totals: dict[str, Any]
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "tenantId": str(t.id),
            "slug": t.slug,
            "activeModel": st.active_model,
            "activeSpace": st.active_space,
            "otherModel": st.other_model,
            "otherSpace": st.other_space,
            "otherRole": st.other_role,
            "cutoverAt": st.cutover_at.isoformat() if st.cutover_at else None,
        }
        with self.db.tx() as conn:
            images, in_active = self._counts(conn, t.id, st.active_space)
            item.update(images=images, inActive=in_active)
            if st.other_space:
                _, held = self._counts(conn, t.id, st.other_space)
                params = {"t": t.id, "space": st.other_space, "since": st.started_at}
                [r] = fetch_dicts(conn, RATE, params, table="image_spaces")
                [f] = fetch_dicts(conn, FAILURES, params, table="backfill_items")
                window = min(60.0, max(float(r["elapsed"] or 0), 1.0))
                rate = round(int(r["recent"]) / window, 2)
                remaining = images - held
                item.update(
                    inOther=held,
                    complete=remaining == 0,
                    progress={
                        "done": held,
                        "remaining": remaining,
                        "failures": int(f["n"]),
                        "ratePerSecond": rate,
                        "etaSeconds": round(remaining / rate, 1) if rate > 0 else None,
                    },
                )
                totals["images"] += images
                totals["done"] += held
                totals["remaining"] += remaining
                totals["failures"] += int(f["n"])
                totals["ratePerSecond"] = round(totals["ratePerSecond"] + rate, 2)
        return item

    # --- cutover / rollback / cleanup --------------------------------------------------------
    def cutover(
        self, principal: Principal, *, tenant_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """Make each tenant's target active, atomically per tenant, where the target holds
        every image (counted in image_spaces and in the vector index). Tenants not complete
        stay where they are; when none could switch, a 409 says why."""
        principal.require_system_admin()
        switched = [self._switch(t, "target") for t in self._tenants(tenant_id)]
        results = [r for r in switched if r is not None]
        if tenant_id is None:
            plat = self._platform()
            if plat["target_model"] and all(r["ok"] for r in results):
                self._set_platform(
                    active=plat["target_model"], target=None, previous=plat["active_model"]
                )
                return results
        self._raise_if_none(results, "target")
        return results

    def rollback(
        self, principal: Principal, *, tenant_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """Return each tenant to its previous space (kept and dual-written since cutover);
        the migrated space becomes the target again, until cleanup drops it."""
        principal.require_system_admin()
        switched = [self._switch(t, "previous") for t in self._tenants(tenant_id)]
        results = [r for r in switched if r is not None]
        if tenant_id is None:
            plat = self._platform()
            if plat["previous_model"] and all(r["ok"] for r in results):
                self._set_platform(
                    active=plat["previous_model"], target=plat["active_model"], previous=None
                )
                return results
        self._raise_if_none(results, "previous")
        return results

    @staticmethod
    def _raise_if_none(results: list[dict[str, Any]], role: str) -> None:
        if not results:
            what = "migration target" if role == "target" else "previous space"
            raise Conflict(f"no tenant has a {what}", code="nothing_to_switch")
        if not any(r["ok"] for r in results):
            raise Conflict("; ".join(r["reason"] for r in results), code=results[0]["code"])

    def _switch(self, t: TenantRow, role: str) -> dict[str, Any] | None:
        st = self.models.state(t.id)
        if st.other_role != role or not st.other_space or not st.other_model:
            return None
        # The vector index is counted too: image_spaces says what was written, the index
        # says what is there now.
        try:
            points = self._vectors().count(st.other_space, tenant_id=t.id)
        except NotFound:
            points = 0
        with span("model.switch", tenant_id=t.id), self.db.tx() as conn:
            locked = fetch_one(
                conn, LOCK_STATE, {"t": t.id}, table="tenant_models", row=TenantModels
            )
            if locked is None or locked.other_role != role or locked.other_space != st.other_space:
                return None
            images, held = self._counts(conn, t.id, st.other_space)
            if held < images or points < images:
                return {
                    "tenantId": str(t.id),
                    "ok": False,
                    "code": "target_incomplete",
                    "reason": f"{t.slug}: {st.other_space} holds {min(held, points)} of"
                    f" {images} images",
                }
            new_role = "previous" if role == "target" else "target"
            execute(
                conn,
                "UPDATE tenant_models SET active_model = other_model, active_space = other_space,"
                " other_model = active_model, other_space = active_space, other_role = %(r)s,"
                " cutover_at = now(), updated_at = now() WHERE tenant_id = %(t)s",
                {"r": new_role, "t": t.id},
                table="tenant_models",
            )
            execute(
                conn,
                "UPDATE tenants SET qdrant_collection_name = %(s)s, updated_at = now()"
                " WHERE id = %(t)s",
                {"s": st.other_space, "t": t.id},
                table="tenants",
            )
            execute(
                conn,
                "UPDATE images SET vector_space = %(s)s, model = %(m)s WHERE tenant_id = %(t)s"
                " AND id IN (SELECT image_id FROM image_spaces WHERE space = %(s)s)",
                {"s": st.other_space, "m": self.models.spec(st.other_model).name, "t": t.id},
                table="images",
            )
        log.info("tenant %s now searches %s", t.slug, st.other_space)
        return {"tenantId": str(t.id), "ok": True, "activeSpace": st.other_space}

    def cleanup(
        self, principal: Principal, *, tenant_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """Drop each tenant's other space (the previous one after a cutover, or an abandoned
        target): its points, its image_spaces rows and running backfills. A shared space no
        tenant uses any more is dropped whole."""
        principal.require_system_admin()
        dropped: list[dict[str, Any]] = []
        for t in self._tenants(tenant_id):
            st = self.models.state(t.id)
            if not st.other_space:
                continue
            with span("model.cleanup", tenant_id=t.id), self.db.tx() as conn:
                execute(
                    conn,
                    "UPDATE tenant_models SET other_model = NULL, other_space = NULL,"
                    " other_role = NULL, updated_at = now() WHERE tenant_id = %(t)s",
                    {"t": t.id},
                    table="tenant_models",
                )
                execute(
                    conn,
                    "UPDATE backfills SET state = 'cancelled', finished_at = now()"
                    " WHERE tenant_id = %(t)s AND space = %(s)s AND state = 'running'",
                    {"t": t.id, "s": st.other_space},
                    table="backfills",
                )
                execute(
                    conn,
                    "DELETE FROM image_spaces WHERE tenant_id = %(t)s AND space = %(s)s",
                    {"t": t.id, "s": st.other_space},
                    table="image_spaces",
                )
            self._drop_points(t, st.other_space)
            dropped.append({"tenantId": str(t.id), "dropped": st.other_space})
        if tenant_id is None:
            self._set_platform(target=None, previous=None)
        return dropped

    def _drop_points(self, t: TenantRow, space: str) -> None:
        vectors = self._vectors()
        with self.db.tx() as conn:
            [used] = fetch_dicts(
                conn,
                "SELECT count(*) AS n FROM tenant_models m JOIN tenants t ON t.id = m.tenant_id"
                " WHERE (m.active_space = %(s)s OR m.other_space = %(s)s)"
                " AND t.deleted_at IS NULL",
                {"s": space},
                table="tenant_models",
            )
        try:
            if int(used["n"]) == 0:
                vectors.drop_space(space)
            else:
                vectors.delete_tenant(space, tenant_id=t.id)
        except NotFound:
            pass
