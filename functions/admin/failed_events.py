"""Failed events (events the broker dead-lettered): list, inspect, replay. Tenant
administrators see their tenant's, system administrators everyone's.

GET /api/admin/failed-events?limit&offset; GET /api/admin/failed-events/{id};
POST /api/admin/failed-events/{id}/replay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from shared.failed_events import FailedEventRow
from shared.http import Auth, Services
from shared.models import ApiModel
from shared.validation import Limit, Offset

router = APIRouter(tags=["admin"])


class FailedEventOut(ApiModel):
    id: uuid.UUID
    event_id: str
    event_type: str
    source: str
    subject: str | None
    tenant_id: uuid.UUID | None
    error: str | None
    attempts: int
    received_at: datetime
    replayed_at: datetime | None
    event: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: FailedEventRow, *, full: bool = False) -> FailedEventOut:
        out = cls.model_validate(row, from_attributes=True)
        if not full:
            out.event = None
        return out


@router.get("/api/admin/failed-events", response_model=list[FailedEventOut])
def failed_events(
    c: Services,
    principal: Auth,
    limit: Annotated[Limit, Query()] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> list[FailedEventOut]:
    rows = c.failed_events.list(principal, limit=limit, offset=offset)
    return [FailedEventOut.of(r) for r in rows]


@router.get("/api/admin/failed-events/{event_id}", response_model=FailedEventOut)
def failed_event(event_id: uuid.UUID, c: Services, principal: Auth) -> FailedEventOut:
    return FailedEventOut.of(c.failed_events.get(principal, event_id), full=True)


@router.post("/api/admin/failed-events/{event_id}/replay", response_model=FailedEventOut)
def replay(event_id: uuid.UUID, c: Services, principal: Auth) -> FailedEventOut:
    return FailedEventOut.of(c.failed_events.replay(principal, event_id), full=True)
