"""process-image: consumes image.uploaded; decodes safely, writes 256/128 WebP thumbnails,
replies image.validated (or image.failed for an image that cannot be decoded).

Also consumes MinIO's s3:ObjectCreated records as a KafkaSource delivers them
(``dev.knative.kafka.event``, data = MinIO's JSON with URL-encoded ``Records[].s3.object.key``).

POST /events/process-image. Transient failures answer 5xx so the broker redelivers.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from events import types
from events.codec import payload
from events.http import EVENT_ROUTE, read_event, reply
from events.payloads import ImageUploaded
from shared.http import Services
from shared.lanes import run_for

router = APIRouter(tags=["process-image"])


@router.post("/events/process-image", **EVENT_ROUTE)
async def on_uploaded(request: Request, c: Services) -> Response:
    event = await read_event(request)
    lane = c.settings.background_lane
    if event.type == types.KAFKA_RECORD:
        return reply(await run_for(event, lane, c.pipeline.adopt.object_created, event.data, event))
    p = payload(event, ImageUploaded)
    assert isinstance(p, ImageUploaded)
    return reply(await run_for(event, lane, c.pipeline.process.on_uploaded, p, event))
