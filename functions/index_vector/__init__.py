"""index-vector: consumes features.extracted; upserts the vector (point id = image id) into
the tenant's space and replies image.indexed. POST /events/index-vector."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from events.codec import payload
from events.http import EVENT_ROUTE, read_event, reply
from events.payloads import FeaturesExtracted
from shared.http import Services
from shared.lanes import run_for

router = APIRouter(tags=["index-vector"])


@router.post("/events/index-vector", **EVENT_ROUTE)
async def on_extracted(request: Request, c: Services) -> Response:
    event = await read_event(request)
    p = payload(event, FeaturesExtracted)
    assert isinstance(p, FeaturesExtracted)
    lane = c.settings.background_lane
    return reply(await run_for(event, lane, c.pipeline.index.on_extracted, p, event))
