"""dead-letter: receives events whose deliveries exhausted their retries (the broker's
dead-letter sink) and stores them in failed_events for inspection and replay
(shared/failed_events.py).

POST /events/dead-letter → 202. Storing the same event twice keeps one row.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from events.http import EVENT_ROUTE, read_event
from shared.http import container

router = APIRouter(tags=["dead-letter"])


@router.post("/events/dead-letter", **EVENT_ROUTE)
async def on_dead_letter(request: Request) -> Response:
    event = await read_event(request)
    await run_in_threadpool(container(request).failed_events.record, event)
    return Response(status_code=202)
