"""Where a model migration stands: per tenant its spaces, the images each holds, the
backfill's progress (done, remaining, rate over the last minute, ETA, failures); per model
its space, dimension and whether similarities are calibrated; totals over all tenants."""

from __future__ import annotations

from typing import Any

from shared.db import Database
from shared.model_spaces import ModelSpaces
from shared.store import backfills as store
from shared.store.model_spaces import TenantModels
from shared.store.tenants import TenantRow


def report(db: Database, models: ModelSpaces, tenants: list[TenantRow]) -> dict[str, Any]:
    plat = models.current_platform()
    totals: dict[str, Any] = {
        "images": 0,
        "done": 0,
        "remaining": 0,
        "failures": 0,
        "ratePerSecond": 0.0,
    }
    out = [tenant_status(db, t, models.state(t.id), totals) for t in tenants]
    rate = totals["ratePerSecond"]
    totals["etaSeconds"] = round(totals["remaining"] / rate, 1) if rate > 0 else None
    refs = {plat.active_model, plat.target_model, plat.previous_model} - {None}
    return {
        "platform": {
            "activeModel": plat.active_model,
            "targetModel": plat.target_model,
            "previousModel": plat.previous_model,
        },
        "models": [model_info(models, r) for r in sorted(r for r in refs if r is not None)],
        "tenants": out,
        "totals": totals,
    }


def model_info(models: ModelSpaces, ref: str) -> dict[str, Any]:
    spec = models.spec(ref)
    return {
        "model": ref,
        "space": spec.space_name,
        "dimension": spec.dim,
        "similarity": "calibrated" if spec.calibration is not None else "raw cosine",
    }


def tenant_status(
    db: Database, t: TenantRow, st: TenantModels, totals: dict[str, Any]
) -> dict[str, Any]:
    """One tenant's entry; adds its progress to ``totals``."""
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
    with db.tx() as conn:
        images, in_active = store.counts(conn, tenant_id=t.id, space=st.active_space)
        item.update(images=images, inActive=in_active)
        if not st.other_space:
            return item
        _, held = store.counts(conn, tenant_id=t.id, space=st.other_space)
        recent, elapsed = store.recent_rate(
            conn, tenant_id=t.id, space=st.other_space, since=st.started_at
        )
        failures = store.failures(conn, tenant_id=t.id, space=st.other_space)
    window = min(60.0, max(elapsed, 1.0))
    rate = round(recent / window, 2)
    remaining = images - held
    item.update(
        inOther=held,
        complete=remaining == 0,
        progress={
            "done": held,
            "remaining": remaining,
            "failures": failures,
            "ratePerSecond": rate,
            "etaSeconds": round(remaining / rate, 1) if rate > 0 else None,
        },
    )
    totals["images"] += images
    totals["done"] += held
    totals["remaining"] += remaining
    totals["failures"] += failures
    totals["ratePerSecond"] = round(totals["ratePerSecond"] + rate, 2)
    return item
