"""CloudEvent endpoints for FastAPI: decode the request (binary or structured), answer with the
reply event in binary mode, or 202 with no body when there is nothing to say next.

Every event route is declared with ``**EVENT_ROUTE``: it answers the broker only (the token
of events/auth.py, checked before the body is read) and is left out of the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, Response

from events.auth import check_sender
from events.codec import Event, decode, encode_binary
from shared.errors import Unauthorized
from shared.logs import bind_event


def event_sender(request: Request) -> None:
    """FastAPI dependency: refuse any caller that does not present the event token."""
    settings = request.app.state.container.settings
    if not check_sender(settings, request.headers.get("authorization")):
        raise Unauthorized(
            "event endpoints answer the event broker only", code="event_sender_required"
        )


# Keyword arguments for every ``@router.post("/events/...")``: the sender check runs before
# the body is read, and the route stays out of the API docs.
EVENT_ROUTE: dict[str, Any] = {"dependencies": [Depends(event_sender)], "include_in_schema": False}


async def read_event(request: Request) -> Event:
    event = decode(dict(request.headers), await request.body())
    bind_event(event.id, event.tenant_id)  # log lines of this delivery carry its ids
    return event


def reply(event: Event | None) -> Response:
    if event is None:
        return Response(status_code=202)
    headers, body = encode_binary(event)
    return Response(content=body, status_code=200, headers=headers)
