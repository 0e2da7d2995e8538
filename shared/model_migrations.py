"""Changing the model without downtime: migrate (a target space, dual-write, backfill),
status (shared/model_status.py), cutover, rollback and cleanup (shared/model_cutover.py), and
reindex (rebuild the active space from the stored originals).

The backfill re-embeds images through the extract function (``image.reembed`` events at low
broker priority), tenant by tenant, in bounded batches (shared/backfill.py). Its state is in
PostgreSQL: a crash at any point resumes from what ``image_spaces`` and ``backfill_items``
say, and an image already held by the target is never embedded again.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from shared import model_status
from shared.auth.principal import Principal
from shared.db import Database
from shared.errors import Conflict, Forbidden, NotFound
from shared.features.registry import ModelSpec
from shared.model_cutover import Cutover
from shared.model_spaces import ModelSpaces, space_for
from shared.store import model_spaces as store
from shared.store import tenants as tenant_store
from shared.store.tenants import TenantRow
from shared.telemetry import span

if TYPE_CHECKING:
    from shared.backfill import Backfiller
    from shared.vectors import VectorIndex

log = logging.getLogger(__name__)


class MigrationService:
    """The model lifecycle for system administrators. ``tenant_id`` None: every tenant, and
    the platform's models follow; a tenant of its own (Enterprise) moves alone."""

    def __init__(
        self,
        db: Database,
        models: ModelSpaces,
        vectors: VectorIndex,
        backfill: Backfiller,
    ) -> None:
        # The adapter opens its engine on first use (the owner process's job).
        self.db, self.models, self.backfill = db, models, backfill
        self.vectors = vectors
        self.switcher = Cutover(db, models, vectors)

    def top_up(self) -> int:
        """Queue the next batch of the running backfill (see shared/backfill.py)."""
        return self.backfill.top_up()

    def _tenants(self, tenant_id: uuid.UUID | None) -> list[TenantRow]:
        with self.db.tx() as conn:
            if tenant_id is None:
                return tenant_store.live(conn)
            t = tenant_store.get(conn, tenant_id=tenant_id)
        if t is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        return [t]

    # --- migrate -----------------------------------------------------------------------------
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
            self._check_platform(spec)
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
            self.models.set_platform(target=spec.ref)
        for t in tenants:
            st = states[t.id]
            if st.active_model == spec.ref or st.other_role == "target":
                continue
            space = space_for(t, spec)
            self.vectors.ensure_space(space, spec.dim)
            with span("model.migrate", tenant_id=t.id), self.db.tx() as conn:
                store.start_target(conn, tenant_id=t.id, model=spec.ref, space=space)
                self.backfill.new_job(conn, t.id, spec.ref, space, "migrate")
        self.backfill.top_up()
        return self.status(principal, tenant_id=tenant_id)

    def _check_platform(self, spec: ModelSpec) -> None:
        """A platform-wide migration needs no kept previous space and no other target."""
        plat = self.models.current_platform()
        if plat.previous_model:
            raise Conflict(
                f"the previous space ({plat.previous_model}) is still kept:"
                " run cleanup (or rollback) first",
                code="cleanup_required",
            )
        if plat.target_model not in (None, spec.ref):
            raise Conflict(
                f"a migration to {plat.target_model} is running; cleanup abandons it",
                code="migration_in_progress",
            )
        if plat.active_model == spec.ref:
            raise Conflict(f"{spec.ref} is already active", code="already_active")

    def reindex(self, principal: Principal, *, tenant_id: uuid.UUID | None = None) -> int:
        """Rebuild each tenant's active space from the stored originals (after a lost or
        damaged vector store, say). Search keeps answering meanwhile: points are overwritten
        in place. Returns the number of tenants queued."""
        principal.require_system_admin()
        n = 0
        for t in self._tenants(tenant_id):
            st = self.models.state(t.id)
            spec = self.models.spec(st.active_model)
            self.vectors.ensure_space(st.active_space, spec.dim)
            with span("model.reindex", tenant_id=t.id), self.db.tx() as conn:
                store.forget_space(conn, tenant_id=t.id, space=st.active_space)
                self.backfill.new_job(conn, t.id, st.active_model, st.active_space, "reindex")
            n += 1
        self.backfill.top_up()
        return n

    # --- status ------------------------------------------------------------------------------
    def status(self, principal: Principal, *, tenant_id: uuid.UUID | None = None) -> dict[str, Any]:
        """Where every tenant stands: spaces, images held by each, backfill progress (done,
        remaining, rate, ETA, failures) and whether similarities are calibrated."""
        principal.require_system_admin()
        return model_status.report(self.db, self.models, self._tenants(tenant_id))

    # --- cutover / rollback / cleanup (shared/model_cutover.py) --------------------------------
    def cutover(
        self, principal: Principal, *, tenant_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """Make each tenant's target active, atomically per tenant, where the target holds
        every image (counted in image_spaces and in the vector index). Tenants not complete
        stay where they are; when none could switch, a 409 says why."""
        principal.require_system_admin()
        tenants = self._tenants(tenant_id)
        return self.switcher.switch(tenants, "target", platform=tenant_id is None)

    def rollback(
        self, principal: Principal, *, tenant_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """Return each tenant to its previous space (kept and dual-written since cutover);
        the migrated space becomes the target again, until cleanup drops it."""
        principal.require_system_admin()
        tenants = self._tenants(tenant_id)
        return self.switcher.switch(tenants, "previous", platform=tenant_id is None)

    def cleanup(
        self, principal: Principal, *, tenant_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """Drop each tenant's other space (the previous one after a cutover, or an abandoned
        target): its points, its image_spaces rows and running backfills."""
        principal.require_system_admin()
        return self.switcher.cleanup(self._tenants(tenant_id), platform=tenant_id is None)
