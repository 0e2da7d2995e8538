"""Usage accounting: the ``usage_daily`` counters, the storage a tenant uses, and the
``login_failures`` table (failed sign-ins and sign-ups, per scope and key).

``add`` is the one daily-usage upsert: API calls (shared/usage.py, shared/hotpath/), searches
and uploads all go through it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_all, fetch_one

# Thumbnails are written after the upload answers; until then their bytes are reserved at this
# upper bound (two WebP thumbnails of at most 256 and 128 px at quality 80 stay below it).
THUMBNAIL_RESERVE = 64 * 1024

ADD: LiteralString = """
INSERT INTO usage_daily (tenant_id, day, api_calls, searches, uploads)
VALUES (%(t)s, coalesce(%(day)s::date, (now() AT TIME ZONE 'UTC')::date), %(calls)s,
        %(searches)s, %(uploads)s)
ON CONFLICT (tenant_id, day) DO UPDATE SET api_calls = usage_daily.api_calls + EXCLUDED.api_calls,
    searches = usage_daily.searches + EXCLUDED.searches,
    uploads = usage_daily.uploads + EXCLUDED.uploads
RETURNING api_calls
"""
STORAGE_USED: LiteralString = """
SELECT coalesce(sum(size_bytes + CASE WHEN thumbnails_bytes > 0 THEN thumbnails_bytes
                                      ELSE %(reserve)s END), 0)::bigint AS n
FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL AND status <> 'failed'
"""
LAST_DAYS: LiteralString = """
SELECT day, api_calls, searches, uploads FROM usage_daily
WHERE tenant_id = %(t)s AND day > (now() AT TIME ZONE 'UTC')::date - %(days)s::int
ORDER BY day
"""
TODAY: LiteralString = "SELECT (now() AT TIME ZONE 'UTC')::date AS n"
RECENT_FAILURES: LiteralString = """
SELECT count(*) AS n, min(failed_at) AS oldest FROM (SELECT failed_at FROM login_failures
WHERE scope = %(s)s AND key = %(k)s AND failed_at > now() - make_interval(secs => %(w)s)
ORDER BY failed_at DESC LIMIT %(l)s) recent
"""
RECORD_FAILURE: LiteralString = "INSERT INTO login_failures (scope, key) VALUES (%(s)s, %(k)s)"
TRIM_FAILURES: LiteralString = """
DELETE FROM login_failures WHERE failed_at < now() - make_interval(secs => %(w)s)
AND scope <> 'signup' AND id IN (SELECT id FROM login_failures ORDER BY id LIMIT 100)
"""
CLEAR_FAILURES: LiteralString = """
DELETE FROM login_failures WHERE (scope = 'account' AND key = %(k)s)
OR (scope = 'pair' AND key = %(p)s)
"""
LOCK_KEY: LiteralString = "SELECT pg_advisory_xact_lock(724002, hashtext(%(k)s))"
SIGNUPS: LiteralString = """
SELECT count(*) AS n, min(failed_at) AS oldest FROM login_failures WHERE scope = 'signup'
AND key = %(k)s AND failed_at > now() - make_interval(secs => %(w)s)
"""

Conn = psycopg.Connection[Any]


@dataclass
class Count:
    n: int


@dataclass
class Recent:
    n: int
    oldest: datetime | None


@dataclass
class Day:
    day: date
    api_calls: int
    searches: int
    uploads: int


def add(
    conn: Conn,
    *,
    tenant_id: uuid.UUID,
    day: date | None = None,
    api_calls: int = 0,
    searches: int = 0,
    uploads: int = 0,
) -> int:
    """Add to a tenant's counters of a UTC day (today by default), atomically; the day's API
    calls after the addition."""
    params = {
        "t": tenant_id,
        "day": day,
        "calls": api_calls,
        "searches": searches,
        "uploads": uploads,
    }
    row = fetch_one(conn, ADD, params, table="usage_daily", row=_Calls)
    return row.api_calls if row else 0


@dataclass
class _Calls:
    api_calls: int


def last_days(conn: Conn, *, tenant_id: uuid.UUID, days: int = 30) -> list[Day]:
    return fetch_all(conn, LAST_DAYS, {"t": tenant_id, "days": days}, table="usage_daily", row=Day)


def today(conn: Conn) -> date:
    """The UTC day as the database sees it (the day ``add`` counts in)."""
    row = fetch_one(conn, TODAY, table="usage_daily", row=_Day)
    assert row is not None
    return row.n


@dataclass
class _Day:
    n: date


def storage_used(conn: Conn, *, tenant_id: uuid.UUID) -> int:
    """Bytes a tenant's live images use, thumbnails not yet written counted at the reserve."""
    params = {"t": tenant_id, "reserve": THUMBNAIL_RESERVE}
    row = fetch_one(conn, STORAGE_USED, params, table="images", row=Count)
    return row.n if row else 0


def recent_failures(conn: Conn, *, scope: str, key: str, window: float, limit: int) -> Recent:
    """Failures of (scope, key) within the window, counted up to ``limit``, and the oldest."""
    params = {"s": scope, "k": key, "w": window, "l": limit}
    row = fetch_one(conn, RECENT_FAILURES, params, table="login_failures", row=Recent)
    return row or Recent(0, None)


def record_failure(conn: Conn, *, scope: str, key: str) -> None:
    execute(conn, RECORD_FAILURE, {"s": scope, "k": key}, table="login_failures")


def trim_failures(conn: Conn, *, older_than: float) -> None:
    """Drop old sign-in failures, a few at a time (sign-ups are kept for their limiter)."""
    execute(conn, TRIM_FAILURES, {"w": older_than}, table="login_failures")


def clear_failures(conn: Conn, *, account: str, pair: str) -> None:
    execute(conn, CLEAR_FAILURES, {"k": account, "p": pair}, table="login_failures")


def lock_signups(conn: Conn, *, address: str, window: float) -> Recent:
    """Serialise the sign-ups of one address (to the end of the transaction), then count them
    within the window."""
    execute(conn, LOCK_KEY, {"k": address}, table="login_failures")
    params = {"k": address, "w": window}
    row = fetch_one(conn, SIGNUPS, params, table="login_failures", row=Recent)
    return row or Recent(0, None)
