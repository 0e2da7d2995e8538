"""Read-only, cross-table reporting queries: the platform's state as the scrape's gauges
report it (shared/scrape.py), counts grouped by closed sets (statuses, tiers, trigger names).

This module owns no table and never writes: each statement counts rows of a table family
owned elsewhere (tenants, images, broker deliveries, failed events) across every tenant, so
it runs as the platform, outside any tenant transaction, and names no tenant in its answer.
The statements are plain ``conn.execute`` on purpose: a scrape does not time itself into
the database histograms it is reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg

TENANTS: LiteralString = "SELECT status, tier, count(*) FROM tenants GROUP BY status, tier"
IMAGES: LiteralString = (
    "SELECT status, count(*) FROM images WHERE deleted_at IS NULL GROUP BY status"
)
BACKLOG: LiteralString = (
    "SELECT trigger_name, count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)"
    " FROM broker_deliveries WHERE status = 'pending' GROUP BY trigger_name"
)
FAILED: LiteralString = "SELECT count(*) FROM failed_events WHERE replayed_at IS NULL"
IMAGE_STATUSES = ("uploaded", "validated", "extracted", "indexed", "failed")


@dataclass
class PlatformState:
    tenants: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, tier) -> n
    images: dict[str, int] = field(default_factory=dict)  # every pipeline status, 0 included
    pending: dict[str, int] = field(default_factory=dict)  # trigger -> undelivered events
    oldest_pending_seconds: float = 0.0
    failed_events: int = 0  # dead-lettered, awaiting replay


def platform_state(conn: psycopg.Connection[Any]) -> PlatformState:
    """Tenants by status and tier, images by status, the broker's backlog per trigger and
    the age of its oldest undelivered event, failed events not yet replayed."""
    state = PlatformState()
    for status, tier, n in conn.execute(TENANTS):
        state.tenants[(status, tier)] = n
    state.images = dict.fromkeys(IMAGE_STATUSES, 0)
    for status, n in conn.execute(IMAGES):
        state.images[status] = n
    for trigger, n, oldest_s in conn.execute(BACKLOG):
        state.pending[trigger] = n
        state.oldest_pending_seconds = max(state.oldest_pending_seconds, float(oldest_s))
    row = conn.execute(FAILED).fetchone()
    state.failed_events = row[0] if row else 0
    return state
