"""Publishers: how a function emits an event that is not its HTTP reply.

Local: the event is written to PostgreSQL (one delivery row per matching trigger) — durable
before the caller gets its answer. Production: POST in binary mode to the broker (K_SINK).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import httpx
import psycopg

from events.codec import Event, encode_binary, to_json
from events.triggers import triggers_for
from shared import metrics
from shared.config import Settings
from shared.db import Database
from shared.errors import TransientError
from shared.store import deliveries

log = logging.getLogger(__name__)


# The ``priority`` extension (a CloudEvents extension attribute, carried end to end): the
# PostgreSQL broker claims higher first. Live work (no extension, 0) is served before bulk
# uploads (``deeplens ingest``, ``?priority=bulk``), which are served before background
# re-embedding. Kafka (Knative) carries the extension but delivers FIFO per partition.
PRIORITY = {"bulk": -1, "low": -2}


def priority_name(value: int | None) -> str | None:
    """The extension value for a stored priority (None: live, no extension)."""
    return next((name for name, n in PRIORITY.items() if n == value), None)


class Publisher(Protocol):
    def publish(self, event: Event) -> None: ...


def enqueue(conn: psycopg.Connection[Any], event: Event) -> int:
    """Fan an event out to its triggers inside the caller's transaction. The unique key on
    (event id, trigger) makes a re-published event a no-op, as Kafka-broker dedup would."""
    doc = to_json(event)
    metrics.published(event.type)
    n = 0
    for trig in triggers_for(event.type, event.source):
        n += deliveries.insert(
            conn,
            event_id=event.id,
            event_type=event.type,
            trigger=trig.name,
            subscriber=trig.path,
            event=doc,
            priority=PRIORITY.get(event.extensions.get("priority", ""), 0),
        )
    if n:
        deliveries.notify(conn)
    return n


class LocalPublisher:
    def __init__(self, db: Database):
        self.db = db
        self.wakeup = threading.Event()

    def publish(self, event: Event) -> None:
        with self.db.tx() as conn:
            enqueue(conn, event)
        self.wakeup.set()


class HttpPublisher:
    def __init__(self, url: str):
        self.client = httpx.Client(timeout=10)
        self.url = url

    def publish(self, event: Event) -> None:
        headers, body = encode_binary(event)
        metrics.published(event.type)
        try:
            r = self.client.post(self.url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise TransientError("event broker unreachable") from exc
        if r.status_code >= 300:
            raise TransientError(f"event broker answered {r.status_code}")


def build_publisher(settings: Settings, db: Database) -> Publisher:
    if settings.broker == "http":
        url = settings.broker_url or settings.k_sink
        if not url:
            raise RuntimeError("DEEPLENS_BROKER=http needs DEEPLENS_BROKER_URL or K_SINK")
        return HttpPublisher(url)
    return LocalPublisher(db)
