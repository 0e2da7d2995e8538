"""sweeper: on each tick (a PingSource in production, the local broker's timer locally)
re-emits events for images stuck in a stage, purges deleted images' objects, vectors, rows,
and tops up running model-migration backfills.

POST /events/sweeper → 202 {restarted, purged, tenantsPurged, backfillQueued}.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from events.http import EVENT_ROUTE, read_event
from shared.bootstrap import Container
from shared.http import container

router = APIRouter(tags=["sweeper"])


def sweep(c: Container) -> dict[str, Any]:
    restarted = purged = 0
    for row in c.pipeline.stuck(c.settings.sweeper_stuck_seconds):
        event = c.pipeline.restart_event(row)
        if event is not None:
            c.publisher.publish(event)
            restarted += 1
    for row in c.pipeline.deleted():
        c.images.purge(row)
        purged += 1
    tenants = c.tenants.purge_deleted()
    # Model migrations resume here after a crash (and stale re-embeddings are queued again).
    backfill = c.migrations.top_up()
    return {
        "restarted": restarted,
        "purged": purged,
        "tenantsPurged": tenants,
        "backfillQueued": backfill,
    }


@router.post("/events/sweeper", **EVENT_ROUTE)
async def on_tick(request: Request) -> JSONResponse:
    await read_event(request)
    result = await run_in_threadpool(sweep, container(request))
    return JSONResponse(result, status_code=202)
