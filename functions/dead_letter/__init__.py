"""dead-letter: receives events whose deliveries exhausted their retries (the broker's
dead-letter sink) and stores them in failed_events for inspection and replay.

POST /events/dead-letter → 202. Storing the same event twice keeps one row.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from psycopg.types.json import Jsonb
from starlette.concurrency import run_in_threadpool

from events.codec import Event, read_event_json
from events.http import EVENT_ROUTE, read_event
from shared.bootstrap import Container
from shared.db import execute
from shared.http import container

router = APIRouter(tags=["dead-letter"])


def store(c: Container, event: Event) -> None:
    ext = event.extensions
    error = ext.get("knativeerrordata") or ext.get("knativeerrorcode")
    tenant = event.tenant_id
    try:
        tenant_id = uuid.UUID(tenant) if tenant else None
    except ValueError:
        tenant_id = None
    with c.db.tx() as conn:
        execute(
            conn,
            """
            INSERT INTO failed_events (id, event_id, event_type, source, subject, tenant_id,
                                       event, error, attempts)
            VALUES (%(id)s, %(eid)s, %(type)s, %(source)s, %(subject)s, %(tenant)s, %(event)s,
                    %(error)s, %(attempts)s)
            ON CONFLICT (event_id) DO UPDATE SET error = EXCLUDED.error,
                attempts = failed_events.attempts + EXCLUDED.attempts
            """,
            {
                "id": uuid.uuid4(),
                "eid": event.id,
                "type": event.type,
                "source": event.source,
                "subject": event.subject,
                "tenant": tenant_id,
                "event": Jsonb(read_event_json(event)),
                "error": error,
                "attempts": int(ext.get("deeplensattempts", "1") or 1),
            },
            table="failed_events",
        )


@router.post("/events/dead-letter", **EVENT_ROUTE)
async def on_dead_letter(request: Request) -> Response:
    event = await read_event(request)
    await run_in_threadpool(store, container(request), event)
    return Response(status_code=202)
