"""Operations: failed events (inspect and replay).

Tenant analytics live in shared/analytics.py, vector collections in shared/collections.py and
the tenant lifecycle (suspend, reactivate, delete, purge) in shared/tenants/."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from events.codec import from_json
from shared.auth.principal import Principal
from shared.db import Database, execute, fetch_all, fetch_one
from shared.errors import NotFound

if TYPE_CHECKING:
    from events.publisher import Publisher


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


class AdminService:
    def __init__(self, db: Database, publisher: Callable[[], Publisher]):
        self.db, self._publisher = db, publisher

    # --- failed events ---------------------------------------------------------------------
    def failed_events(
        self, principal: Principal, *, limit: int, offset: int
    ) -> list[FailedEventRow]:
        principal.require_role("Admin")
        with self.db.tx() as conn:
            return fetch_all(
                conn,
                """
                SELECT * FROM failed_events
                WHERE %(all)s OR tenant_id = %(t)s
                ORDER BY received_at DESC LIMIT %(l)s OFFSET %(o)s
                """,
                {
                    "all": principal.is_system_admin,
                    "t": principal.tenant_id,
                    "l": limit,
                    "o": offset,
                },
                table="failed_events",
                row=FailedEventRow,
            )

    def failed_event(self, principal: Principal, event_id: uuid.UUID) -> FailedEventRow:
        principal.require_role("Admin")
        with self.db.tx() as conn:
            row = fetch_one(
                conn,
                "SELECT * FROM failed_events WHERE id = %(id)s AND (%(all)s OR tenant_id = %(t)s)",
                {"id": event_id, "all": principal.is_system_admin, "t": principal.tenant_id},
                table="failed_events",
                row=FailedEventRow,
            )
        if row is None:
            raise NotFound("failed event not found", code="failed_event_not_found")
        return row

    def replay(self, principal: Principal, event_id: uuid.UUID) -> FailedEventRow:
        """Send the stored event to the broker again (same id: idempotent handlers make a
        second delivery safe)."""
        row = self.failed_event(principal, event_id)
        with self.db.tx() as conn:
            execute(
                conn,
                "UPDATE failed_events SET replayed_at = now() WHERE id = %(id)s",
                {"id": row.id},
                table="failed_events",
            )
            # The local broker keys deliveries on (event id, trigger): let a replay through.
            execute(
                conn,
                "DELETE FROM broker_deliveries WHERE event_id = %(e)s AND status = 'dead'",
                {"e": row.event_id},
                table="broker_deliveries",
            )
        self._publisher().publish(from_json(row.event))
        return self.failed_event(principal, event_id)
