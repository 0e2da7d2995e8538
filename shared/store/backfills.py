"""Re-embedding jobs: ``backfills`` (one per tenant and space, a migration's or a reindex's)
and ``backfill_items`` (what was queued, done or failed).

Also the reads and updates of ``images`` that the backfill and the model migrations need (the
images to queue, how many of a tenant's images a space holds, the images' space and model at
cutover): they join the job tables and ``image_spaces``, and belong with them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_all, fetch_dicts, fetch_one

Conn = psycopg.Connection[Any]
TOP_UP_LOCK = 724016  # pg advisory lock: one top-up at a time across processes


@dataclass
class BackfillRow:
    id: uuid.UUID
    tenant_id: uuid.UUID
    model: str
    space: str
    kind: str  # migrate | reindex
    state: str  # running | done | cancelled
    cursor: uuid.UUID | None
    created_at: datetime
    finished_at: datetime | None


@dataclass
class Outstanding:
    image_id: uuid.UUID
    attempts: int
    stale: bool  # queued longer ago than the stale limit: queue it again


# --- backfills ------------------------------------------------------------------------------
NEXT: LiteralString = (
    "SELECT * FROM backfills WHERE state = 'running' ORDER BY created_at, id LIMIT 1"
)
CANCEL_RUNNING: LiteralString = """
UPDATE backfills SET state = 'cancelled', finished_at = now()
WHERE tenant_id = %(t)s AND space = %(s)s AND state = 'running'
"""
CREATE: LiteralString = """
INSERT INTO backfills (id, tenant_id, model, space, kind)
VALUES (%(id)s, %(t)s, %(m)s, %(s)s, %(k)s)
"""
SET_CURSOR: LiteralString = "UPDATE backfills SET cursor = %(c)s WHERE id = %(b)s"
FINISH: LiteralString = "UPDATE backfills SET state = 'done', finished_at = now() WHERE id = %(b)s"


def try_lock(conn: Conn) -> bool:
    """The top-up lock for the caller's transaction; False when another caller holds it."""
    got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (TOP_UP_LOCK,)).fetchone()
    return bool(got and got[0])


def next_running(conn: Conn) -> BackfillRow | None:
    """The oldest running backfill (jobs run tenant by tenant)."""
    return fetch_one(conn, NEXT, table="backfills", row=BackfillRow)


def cancel_running(conn: Conn, *, tenant_id: uuid.UUID, space: str) -> None:
    execute(conn, CANCEL_RUNNING, {"t": tenant_id, "s": space}, table="backfills")


def create(conn: Conn, *, tenant_id: uuid.UUID, model: str, space: str, kind: str) -> None:
    params = {"id": uuid.uuid4(), "t": tenant_id, "m": model, "s": space, "k": kind}
    execute(conn, CREATE, params, table="backfills")


def set_cursor(conn: Conn, *, backfill_id: uuid.UUID, cursor: uuid.UUID | None) -> None:
    execute(conn, SET_CURSOR, {"c": cursor, "b": backfill_id}, table="backfills")


def finish(conn: Conn, *, backfill_id: uuid.UUID) -> None:
    execute(conn, FINISH, {"b": backfill_id}, table="backfills")


# --- backfill_items -------------------------------------------------------------------------
# Queued, not failed, not yet held by the space, image still live.
OUTSTANDING: LiteralString = """
SELECT bi.image_id, bi.attempts, bi.queued_at < now() - make_interval(secs => %(stale)s) AS stale
FROM backfill_items bi JOIN images i ON i.id = bi.image_id AND i.deleted_at IS NULL
WHERE bi.backfill_id = %(b)s AND bi.failed_at IS NULL AND bi.done_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM image_spaces s WHERE s.image_id = bi.image_id
                  AND s.space = %(space)s)
"""
ADD_ITEM: LiteralString = """
INSERT INTO backfill_items (backfill_id, image_id) VALUES (%(b)s, %(i)s) ON CONFLICT DO NOTHING
"""
REQUEUE_ITEM: LiteralString = """
UPDATE backfill_items SET attempts = attempts + 1, queued_at = now()
WHERE backfill_id = %(b)s AND image_id = %(i)s
"""
ITEM_DONE: LiteralString = """
UPDATE backfill_items SET done_at = now() WHERE backfill_id = %(b)s AND image_id = %(i)s
"""
ITEM_FAILED: LiteralString = """
UPDATE backfill_items SET failed_at = now(), error = %(e)s
WHERE backfill_id = %(b)s AND image_id = %(i)s
"""
FAILURES: LiteralString = """
SELECT count(*) AS n FROM backfill_items bi JOIN backfills b ON b.id = bi.backfill_id
WHERE b.tenant_id = %(t)s AND b.space = %(space)s AND b.state <> 'cancelled'
  AND bi.failed_at IS NOT NULL
"""


def outstanding(
    conn: Conn, *, backfill_id: uuid.UUID, space: str, stale_seconds: float
) -> list[Outstanding]:
    params = {"b": backfill_id, "space": space, "stale": stale_seconds}
    return fetch_all(conn, OUTSTANDING, params, table="backfills", row=Outstanding)


def add_item(conn: Conn, *, backfill_id: uuid.UUID, image_id: uuid.UUID) -> None:
    execute(conn, ADD_ITEM, {"b": backfill_id, "i": image_id}, table="backfill_items")


def requeue_item(conn: Conn, *, backfill_id: uuid.UUID, image_id: uuid.UUID) -> None:
    execute(conn, REQUEUE_ITEM, {"b": backfill_id, "i": image_id}, table="backfill_items")


def item_done(conn: Conn, *, backfill_id: uuid.UUID, image_id: uuid.UUID) -> None:
    execute(conn, ITEM_DONE, {"b": backfill_id, "i": image_id}, table="backfill_items")


def item_failed(conn: Conn, *, backfill_id: uuid.UUID, image_id: uuid.UUID, error: str) -> None:
    params = {"e": error[:500], "b": backfill_id, "i": image_id}
    execute(conn, ITEM_FAILED, params, table="backfill_items")


def failures(conn: Conn, *, tenant_id: uuid.UUID, space: str) -> int:
    """Items that failed in the tenant's (not cancelled) backfills of a space."""
    [row] = fetch_dicts(conn, FAILURES, {"t": tenant_id, "space": space}, table="backfill_items")
    return int(row["n"])


# --- images (for the backfill and the migrations) -------------------------------------------
CANDIDATES: LiteralString = """
SELECT i.id FROM images i
WHERE i.tenant_id = %(t)s AND i.deleted_at IS NULL AND i.status = 'indexed'
  AND NOT EXISTS (SELECT 1 FROM image_spaces s WHERE s.image_id = i.id AND s.space = %(space)s)
  AND NOT EXISTS (SELECT 1 FROM backfill_items bi WHERE bi.backfill_id = %(b)s
                  AND bi.image_id = i.id)
  AND (%(cursor)s::uuid IS NULL OR i.id > %(cursor)s::uuid)
ORDER BY i.id LIMIT %(n)s
"""
# The images a complete space must hold: every live image past extraction. Images still at
# uploaded/validated are extracted after a cutover into whatever spaces are current then.
COUNTS: LiteralString = """
SELECT count(*) AS images,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM image_spaces s
                                      WHERE s.image_id = i.id AND s.space = %(space)s)) AS held
FROM images i
WHERE i.tenant_id = %(t)s AND i.deleted_at IS NULL AND i.status IN ('extracted', 'indexed')
"""
RATE: LiteralString = """
SELECT count(*) AS recent,
       extract(epoch FROM now() - %(since)s::timestamptz) AS elapsed
FROM image_spaces
WHERE space = %(space)s AND tenant_id = %(t)s AND created_at > now() - interval '60 seconds'
"""
ADOPT_SPACE: LiteralString = """
UPDATE images SET vector_space = %(s)s, model = %(m)s
WHERE tenant_id = %(t)s AND id IN (SELECT image_id FROM image_spaces WHERE space = %(s)s)
"""


def candidates(
    conn: Conn,
    *,
    tenant_id: uuid.UUID,
    backfill_id: uuid.UUID,
    space: str,
    cursor: uuid.UUID | None,
    n: int,
) -> list[uuid.UUID]:
    """The next ``n`` indexed images (by id, after ``cursor``) neither held by the space nor
    queued by this backfill."""
    params = {"t": tenant_id, "b": backfill_id, "space": space, "cursor": cursor, "n": n}
    return [r["id"] for r in fetch_dicts(conn, CANDIDATES, params, table="images")]


def counts(conn: Conn, *, tenant_id: uuid.UUID, space: str) -> tuple[int, int]:
    """(images a complete space must hold, how many of them ``space`` holds)."""
    [row] = fetch_dicts(conn, COUNTS, {"t": tenant_id, "space": space}, table="images")
    return int(row["images"]), int(row["held"])


def recent_rate(
    conn: Conn, *, tenant_id: uuid.UUID, space: str, since: datetime | None
) -> tuple[int, float]:
    """(vectors the space received in the last minute, seconds since ``since``)."""
    params = {"t": tenant_id, "space": space, "since": since}
    [row] = fetch_dicts(conn, RATE, params, table="image_spaces")
    return int(row["recent"]), float(row["elapsed"] or 0)


def adopt_space(conn: Conn, *, tenant_id: uuid.UUID, space: str, model: str) -> None:
    """At cutover: the tenant's images held by ``space`` now live there, with ``model``."""
    params = {"s": space, "m": model, "t": tenant_id}
    execute(conn, ADOPT_SPACE, params, table="images")
