"""The ``failed_events`` table: events that exhausted their deliveries (the dead-letter sink
stores them; administrators list, inspect and replay them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

from shared.db import execute, fetch_all, fetch_one

Conn = psycopg.Connection[Any]


@dataclass
class FailedEventRow:
    id: uuid.UUID
    event_id: str
    event_type: str
    source: str
    subject: str | None
    tenant_id: uuid.UUID | None
    event: dict[str, Any]
    error: str | None
    attempts: int
    received_at: datetime
    replayed_at: datetime | None


# Storing the same event twice keeps one row (its attempts add up, the last error wins).
RECORD: LiteralString = """
INSERT INTO failed_events (id, event_id, event_type, source, subject, tenant_id,
                           event, error, attempts)
VALUES (%(id)s, %(eid)s, %(type)s, %(source)s, %(subject)s, %(tenant)s, %(event)s,
        %(error)s, %(attempts)s)
ON CONFLICT (event_id) DO UPDATE SET error = EXCLUDED.error,
    attempts = failed_events.attempts + EXCLUDED.attempts
"""
# ``everyone``: a system administrator sees every tenant's (and tenant-less) events.
PAGE: LiteralString = """
SELECT * FROM failed_events
WHERE %(all)s OR tenant_id = %(t)s
ORDER BY received_at DESC LIMIT %(l)s OFFSET %(o)s
"""
BY_ID: LiteralString = (
    "SELECT * FROM failed_events WHERE id = %(id)s AND (%(all)s OR tenant_id = %(t)s)"
)
REPLAYED: LiteralString = "UPDATE failed_events SET replayed_at = now() WHERE id = %(id)s"
PURGE_TENANT: LiteralString = "DELETE FROM failed_events WHERE tenant_id = %(t)s"


def record(
    conn: Conn,
    *,
    tenant_id: uuid.UUID | None,
    event_id: str,
    event_type: str,
    source: str,
    subject: str | None,
    event: dict[str, Any],
    error: str | None,
    attempts: int,
) -> None:
    execute(
        conn,
        RECORD,
        {
            "id": uuid.uuid4(),
            "eid": event_id,
            "type": event_type,
            "source": source,
            "subject": subject,
            "tenant": tenant_id,
            "event": Jsonb(event),
            "error": error,
            "attempts": attempts,
        },
        table="failed_events",
    )


def page(
    conn: Conn, *, tenant_id: uuid.UUID | None, everyone: bool, limit: int, offset: int
) -> list[FailedEventRow]:
    """Newest first: the tenant's events, or all of them for ``everyone``."""
    params = {"all": everyone, "t": tenant_id, "l": limit, "o": offset}
    return fetch_all(conn, PAGE, params, table="failed_events", row=FailedEventRow)


def get(
    conn: Conn, *, tenant_id: uuid.UUID | None, everyone: bool, failed_id: uuid.UUID
) -> FailedEventRow | None:
    params = {"id": failed_id, "all": everyone, "t": tenant_id}
    return fetch_one(conn, BY_ID, params, table="failed_events", row=FailedEventRow)


def mark_replayed(conn: Conn, *, failed_id: uuid.UUID) -> None:
    execute(conn, REPLAYED, {"id": failed_id}, table="failed_events")


def purge_tenant(conn: Conn, *, tenant_id: uuid.UUID) -> int:
    """Every failed event of a (deleted) tenant: for the sweeper's purge."""
    return execute(conn, PURGE_TENANT, {"t": tenant_id}, table="failed_events")
