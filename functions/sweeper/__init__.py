"""sweeper: on each tick (a PingSource in production, the local broker's timer locally)
re-emits events for images stuck in a stage, purges deleted images' objects, vectors, rows,
and tops up running model-migration backfills (shared/pipeline/sweeper.py).

POST /events/sweeper → 202 {restarted, purged, tenantsPurged, backfillQueued}.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from events.http import EVENT_ROUTE, read_event
from shared.http import Services

router = APIRouter(tags=["sweeper"])


@router.post("/events/sweeper", **EVENT_ROUTE)
async def on_tick(request: Request, c: Services) -> JSONResponse:
    await read_event(request)
    swept = await run_in_threadpool(c.pipeline.sweeper.sweep)
    return JSONResponse(
        {
            "restarted": swept.restarted,
            "purged": swept.purged,
            "tenantsPurged": swept.tenants_purged,
            "backfillQueued": swept.backfill_queued,
        },
        status_code=202,
    )
