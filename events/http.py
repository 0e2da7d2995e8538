"""CloudEvent endpoints for FastAPI: decode the request (binary or structured), answer with the
reply event in binary mode, or 202 with no body when there is nothing to say next."""

from __future__ import annotations

from fastapi import Request, Response

from events.codec import Event, decode, encode_binary
from shared.logs import bind_event


async def read_event(request: Request) -> Event:
    event = decode(dict(request.headers), await request.body())
    bind_event(event.id, event.tenant_id)  # log lines of this delivery carry its ids
    return event


def reply(event: Event | None) -> Response:
    if event is None:
        return Response(status_code=202)
    headers, body = encode_binary(event)
    return Response(content=body, status_code=200, headers=headers)
