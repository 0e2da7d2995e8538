"""The end of a model migration: cutover (each tenant's target becomes active, atomically per
tenant, only once the target holds every image — counted in ``image_spaces`` and in the vector
index, not assumed), rollback (back to the previous space while it is kept) and cleanup (drop
the other space). The platform's models follow when every tenant has switched."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from shared.db import Database
from shared.errors import Conflict, NotFound
from shared.model_spaces import ModelSpaces
from shared.store import backfills as backfill_store
from shared.store import model_spaces as store
from shared.store import tenants as tenant_store
from shared.store.tenants import TenantRow
from shared.telemetry import span

if TYPE_CHECKING:
    from shared.vectors import VectorIndex

log = logging.getLogger(__name__)


class Cutover:
    def __init__(self, db: Database, models: ModelSpaces, vectors: VectorIndex) -> None:
        self.db, self.models, self.vectors = db, models, vectors

    def switch(
        self, tenants: list[TenantRow], role: str, *, platform: bool
    ) -> list[dict[str, Any]]:
        """Make each tenant's other space of ``role`` (target: cutover; previous: rollback)
        active where it is complete; with ``platform``, the platform's models follow once
        every tenant did. When none could switch, a 409 says why."""
        switched = [self._switch(t, role) for t in tenants]
        results = [r for r in switched if r is not None]
        if platform:
            plat = self.models.current_platform()
            if all(r["ok"] for r in results):
                if role == "target" and plat.target_model:
                    self.models.set_platform(
                        active=plat.target_model, target=None, previous=plat.active_model
                    )
                    return results
                if role == "previous" and plat.previous_model:
                    self.models.set_platform(
                        active=plat.previous_model, target=plat.active_model, previous=None
                    )
                    return results
        _raise_if_none(results, role)
        return results

    def _switch(self, t: TenantRow, role: str) -> dict[str, Any] | None:
        st = self.models.state(t.id)
        if st.other_role != role or not st.other_space or not st.other_model:
            return None
        # The vector index is counted too: image_spaces says what was written, the index
        # says what is there now.
        try:
            points = self.vectors.count(st.other_space, tenant_id=t.id)
        except NotFound:
            points = 0
        with span("model.switch", tenant_id=t.id), self.db.tx() as conn:
            locked = store.state(conn, tenant_id=t.id, lock=True)
            if locked is None or locked.other_role != role or locked.other_space != st.other_space:
                return None
            images, held = backfill_store.counts(conn, tenant_id=t.id, space=st.other_space)
            if held < images or points < images:
                return {
                    "tenantId": str(t.id),
                    "ok": False,
                    "code": "target_incomplete",
                    "reason": f"{t.slug}: {st.other_space} holds {min(held, points)} of"
                    f" {images} images",
                }
            new_role = "previous" if role == "target" else "target"
            store.swap(conn, tenant_id=t.id, role=new_role)
            tenant_store.set_space(conn, tenant_id=t.id, space=st.other_space)
            model = self.models.spec(st.other_model).name
            backfill_store.adopt_space(conn, tenant_id=t.id, space=st.other_space, model=model)
        log.info("tenant %s now searches %s", t.slug, st.other_space)
        return {"tenantId": str(t.id), "ok": True, "activeSpace": st.other_space}

    def cleanup(self, tenants: list[TenantRow], *, platform: bool) -> list[dict[str, Any]]:
        """Drop each tenant's other space (the previous one after a cutover, or an abandoned
        target): its points, its image_spaces rows and running backfills. A shared space no
        tenant uses any more is dropped whole."""
        dropped: list[dict[str, Any]] = []
        for t in tenants:
            st = self.models.state(t.id)
            if not st.other_space:
                continue
            with span("model.cleanup", tenant_id=t.id), self.db.tx() as conn:
                store.clear_other(conn, tenant_id=t.id)
                backfill_store.cancel_running(conn, tenant_id=t.id, space=st.other_space)
                store.forget_space(conn, tenant_id=t.id, space=st.other_space)
            self._drop_points(t, st.other_space)
            dropped.append({"tenantId": str(t.id), "dropped": st.other_space})
        if platform:
            self.models.set_platform(target=None, previous=None)
        return dropped

    def _drop_points(self, t: TenantRow, space: str) -> None:
        vectors = self.vectors
        with self.db.tx() as conn:
            used = store.space_users(conn, space=space)
        try:
            if used == 0:
                vectors.drop_space(space)
            else:
                vectors.delete_tenant(space, tenant_id=t.id)
        except NotFound:
            pass


def _raise_if_none(results: list[dict[str, Any]], role: str) -> None:
    if not results:
        what = "migration target" if role == "target" else "previous space"
        raise Conflict(f"no tenant has a {what}", code="nothing_to_switch")
    if not any(r["ok"] for r in results):
        raise Conflict("; ".join(r["reason"] for r in results), code=results[0]["code"])
