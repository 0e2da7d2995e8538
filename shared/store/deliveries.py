"""The ``broker_deliveries`` table: the durable queue of the PostgreSQL broker (one row per
event and trigger). Publishers insert; brokers claim with a lease, then mark each delivery
done, due again later, or dead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

from shared.db import execute, fetch_all, fetch_dicts

Conn = psycopg.Connection[Any]

# Brokers LISTEN here; NOTIFY is delivered at commit, so a broker never sees a delivery before
# it is durable (and a rolled-back publish wakes nobody).
CHANNEL = "deeplens_broker"


@dataclass
class Delivery:
    id: int
    event: dict[str, Any]
    subscriber: str
    attempts: int


INSERT: LiteralString = """
INSERT INTO broker_deliveries (event_id, event_type, trigger_name, subscriber, event, priority)
VALUES (%(id)s, %(type)s, %(trigger)s, %(subscriber)s, %(event)s, %(priority)s)
ON CONFLICT (event_id, trigger_name) DO NOTHING
"""
NOTIFY: LiteralString = "SELECT pg_notify('deeplens_broker', '')"
LISTEN: LiteralString = "LISTEN deeplens_broker"
# Claiming pushes next_attempt_at out by the lease: a delivery whose process died is picked up
# again when the lease ends (that is the redelivery after a crash). Higher priority first: live
# work (0) is never queued behind background re-embedding (-1, see events.publisher.PRIORITY).
CLAIM: LiteralString = """
UPDATE broker_deliveries SET attempts = attempts + 1,
    next_attempt_at = now() + make_interval(secs => %(lease)s), updated_at = now()
WHERE id IN (SELECT id FROM broker_deliveries
             WHERE status = 'pending' AND next_attempt_at <= now()
               AND (%(subscribers)s::text[] IS NULL OR subscriber = ANY(%(subscribers)s))
             ORDER BY priority DESC, next_attempt_at, id LIMIT %(n)s FOR UPDATE SKIP LOCKED)
RETURNING id, event, subscriber, attempts
"""
# The same, with a budget per group of subscribers (the functions one set of replicas serves):
# a broker never claims more deliveries for a function than it has free slots for, so nothing
# claimed waits in memory while a higher-priority delivery arrives in the table; and the last
# ``r`` free slots of a group are for live work (priority >= 0) only, so a live delivery finds
# a slot at once instead of waiting for a bulk one to finish.
CLAIM_GROUPS: LiteralString = """
WITH budget AS (SELECT g, n, r FROM unnest(%(ns)s::int[], %(rs)s::int[]) WITH ORDINALITY
                AS b(n, r, g)),
     member AS (SELECT sub, g FROM unnest(%(subs)s::text[], %(gs)s::int[]) AS m(sub, g))
UPDATE broker_deliveries SET attempts = attempts + 1,
    next_attempt_at = now() + make_interval(secs => %(lease)s), updated_at = now()
WHERE id IN (SELECT c.id FROM budget CROSS JOIN LATERAL (
                 SELECT d.id, d.priority, row_number() OVER (
                     ORDER BY d.priority DESC, d.next_attempt_at, d.id) AS rn
                 FROM (SELECT d.id, d.priority, d.next_attempt_at FROM broker_deliveries d
                       WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                         AND d.subscriber IN (SELECT sub FROM member WHERE member.g = budget.g)
                       ORDER BY d.priority DESC, d.next_attempt_at, d.id LIMIT budget.n
                       FOR UPDATE SKIP LOCKED) d) c
             WHERE c.priority >= 0 OR c.rn <= budget.n - budget.r)
RETURNING id, event, subscriber, attempts
"""
RECLAIM: LiteralString = """
UPDATE broker_deliveries SET next_attempt_at = now()
WHERE status = 'pending' AND next_attempt_at > now() AND attempts > 0
"""
DONE: LiteralString = """
UPDATE broker_deliveries SET status = 'done', updated_at = now(), last_error = NULL
WHERE id = %(id)s
"""
RETRY_LATER: LiteralString = """
UPDATE broker_deliveries SET last_error = %(e)s, updated_at = now(),
    next_attempt_at = now() + make_interval(secs => %(s)s) WHERE id = %(id)s
"""
DEAD: LiteralString = """
UPDATE broker_deliveries SET status = 'dead', last_error = %(e)s, updated_at = now()
WHERE id = %(id)s
"""
# The priority an image's events last travelled at (the sweeper restarts it at that priority).
LAST_PRIORITY: LiteralString = """
SELECT priority FROM broker_deliveries WHERE event->>'subject' = %(s)s ORDER BY id DESC LIMIT 1
"""
FORGET_DEAD: LiteralString = (
    "DELETE FROM broker_deliveries WHERE event_id = %(e)s AND status = 'dead'"
)


def insert(
    conn: Conn,
    *,
    event_id: str,
    event_type: str,
    trigger: str,
    subscriber: str,
    event: dict[str, Any],
    priority: int,
) -> int:
    """One delivery; 0 when the (event id, trigger) pair is already queued."""
    params = {
        "id": event_id,
        "type": event_type,
        "trigger": trigger,
        "subscriber": subscriber,
        "event": Jsonb(event),
        "priority": priority,
    }
    return execute(conn, INSERT, params, table="broker_deliveries")


def notify(conn: Conn) -> None:
    """Wake every broker at commit."""
    execute(conn, NOTIFY, table="broker_deliveries")


def listener(url: str) -> Conn:
    """A connection of its own (autocommit) that LISTENs on the broker's channel: iterate
    its ``notifies()``; close it (``with``) when done."""
    conn = psycopg.connect(url, autocommit=True)
    try:
        conn.execute(LISTEN)
    except BaseException:
        conn.close()
        raise
    return conn


def claim(conn: Conn, *, n: int, lease: float, subscribers: list[str] | None) -> list[Delivery]:
    """Up to ``n`` due deliveries (for these subscribers; None: any), leased for ``lease``
    seconds. One statement: claim and lease are atomic."""
    params = {"lease": lease, "n": n, "subscribers": subscribers}
    return fetch_all(conn, CLAIM, params, table="broker_deliveries", row=Delivery)


def claim_groups(
    conn: Conn, *, budgets: list[tuple[list[str], int, int]], lease: float
) -> list[Delivery]:
    """Due deliveries, highest priority first, for each (subscribers, n, r) of ``budgets``:
    at most ``n``, of which at most ``n - r`` below live priority; leased for ``lease``
    seconds. One statement: claim and lease are atomic."""
    subs = [sub for group, _, _ in budgets for sub in group]
    gs = [g for g, (group, _, _) in enumerate(budgets, 1) for _ in group]
    params = {
        "ns": [n for _, n, _ in budgets],
        "rs": [r for _, _, r in budgets],
        "subs": subs,
        "gs": gs,
        "lease": lease,
    }
    return fetch_all(conn, CLAIM_GROUPS, params, table="broker_deliveries", row=Delivery)


def reclaim(conn: Conn) -> int:
    """Deliveries leased by a broker that died are due now (only when one broker runs)."""
    return execute(conn, RECLAIM, table="broker_deliveries")


def done(conn: Conn, *, delivery_id: int) -> None:
    execute(conn, DONE, {"id": delivery_id}, table="broker_deliveries")


def retry_later(conn: Conn, *, delivery_id: int, error: str, delay: float) -> None:
    params = {"e": error, "s": delay, "id": delivery_id}
    execute(conn, RETRY_LATER, params, table="broker_deliveries")


def dead(conn: Conn, *, delivery_id: int, error: str) -> None:
    execute(conn, DEAD, {"e": error, "id": delivery_id}, table="broker_deliveries")


def forget_dead(conn: Conn, *, event_id: str) -> int:
    """Drop an event's dead deliveries, so a replay of it is queued again."""
    return execute(conn, FORGET_DEAD, {"e": event_id}, table="broker_deliveries")


# --- for the in-process quality harness (shared/quality/harness.py), which drives the
# pipeline itself instead of running the broker.
PENDING_EVENTS: LiteralString = (
    "SELECT event FROM broker_deliveries WHERE status = 'pending' ORDER BY id"
)
ALL_PENDING_DONE: LiteralString = (
    "UPDATE broker_deliveries SET status = 'done' WHERE status = 'pending'"
)


def pending_events(conn: Conn) -> list[dict[str, Any]]:
    """The events still waiting for delivery, oldest first (structured JSON)."""
    return [row[0] for row in conn.execute(PENDING_EVENTS).fetchall()]


def all_pending_done(conn: Conn) -> None:
    conn.execute(ALL_PENDING_DONE)


def last_priority(conn: Conn, *, subject: str) -> int | None:
    """The priority of the latest delivery about ``subject`` (None: none queued here, as on
    Knative, where Kafka holds the events)."""
    rows = fetch_dicts(conn, LAST_PRIORITY, {"s": subject}, table="broker_deliveries")
    return int(rows[0]["priority"]) if rows else None
