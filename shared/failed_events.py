"""Failed events: what the dead-letter sink stores (``record``), and what administrators do
with it — list, inspect, replay. Tenant administrators see their tenant's events; system
administrators see all of them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from events.codec import Event, from_json, read_event_json
from shared.auth.principal import Principal
from shared.db import Database
from shared.errors import NotFound
from shared.store import deliveries
from shared.store import failed_events as store
from shared.store.failed_events import FailedEventRow

if TYPE_CHECKING:
    from events.publisher import Publisher

__all__ = ["FailedEventRow", "FailedEvents"]


class FailedEvents:
    def __init__(self, db: Database, publisher: Callable[[], Publisher]) -> None:
        # The publisher is resolved at replay: building it needs the broker's address, which
        # only functions that publish are given.
        self.db, self._publisher = db, publisher

    def record(self, event: Event) -> None:
        """Store an event the broker dead-lettered, with Knative's error extensions (the
        error and the attempts it took). Storing the same event twice keeps one row."""
        ext = event.extensions
        try:
            tenant_id = uuid.UUID(event.tenant_id) if event.tenant_id else None
        except ValueError:
            tenant_id = None
        with self.db.tx() as conn:
            store.record(
                conn,
                tenant_id=tenant_id,
                event_id=event.id,
                event_type=event.type,
                source=event.source,
                subject=event.subject,
                event=read_event_json(event),
                error=ext.get("knativeerrordata") or ext.get("knativeerrorcode"),
                attempts=_attempts(ext.get("deeplensattempts")),
            )

    def list(self, principal: Principal, *, limit: int, offset: int) -> list[FailedEventRow]:
        principal.require_role("Admin")
        with self.db.tx() as conn:
            return store.page(
                conn,
                tenant_id=principal.tenant_id,
                everyone=principal.is_system_admin,
                limit=limit,
                offset=offset,
            )

    def get(self, principal: Principal, failed_id: uuid.UUID) -> FailedEventRow:
        principal.require_role("Admin")
        with self.db.tx() as conn:
            row = store.get(
                conn,
                tenant_id=principal.tenant_id,
                everyone=principal.is_system_admin,
                failed_id=failed_id,
            )
        if row is None:
            raise NotFound("failed event not found", code="failed_event_not_found")
        return row

    def replay(self, principal: Principal, failed_id: uuid.UUID) -> FailedEventRow:
        """Send the stored event to the broker again (same id: idempotent handlers make a
        second delivery safe)."""
        row = self.get(principal, failed_id)
        with self.db.tx() as conn:
            store.mark_replayed(conn, failed_id=row.id)
            # The local broker keys deliveries on (event id, trigger): let a replay through.
            deliveries.forget_dead(conn, event_id=row.event_id)
        self._publisher().publish(from_json(row.event))
        return self.get(principal, failed_id)


def _attempts(value: object) -> int:
    """The delivery attempts a dead-lettered event carries (1 when absent or not a number)."""
    try:
        return max(1, min(int(str(value or 1)), 2**31 - 1))
    except ValueError:
        return 1
