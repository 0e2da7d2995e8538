"""The failed-events service on the real PostgreSQL (shared/failed_events.py): what the
dead-letter sink stores from Knative's error extensions, one row per event however often it
arrives, who sees it, and a replay that lets the broker deliver the event again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from events import types
from events.codec import Event
from events.publisher import LocalPublisher
from shared.auth.principal import SYSTEM_ADMIN, Principal
from shared.db import Database, migrate
from shared.errors import Forbidden, NotFound
from shared.failed_events import FailedEvents
from shared.store import failed_events as store

pytestmark = pytest.mark.integration


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    migrate(database_url)
    database = Database(database_url, min_size=1, max_size=2)
    database.open()
    try:
        yield database
    finally:
        database.close()


def dead(tenant: str, *, code: str, data: str | None, attempts: str | None) -> Event:
    image = str(uuid.uuid4())
    event = Event(
        type=types.IMAGE_UPLOADED,
        source="/deeplens/images",
        data={"imageId": image, "tenantId": tenant},
        subject=f"tenants/{tenant}/images/{image}",
        extensions={"tenantid": tenant, "knativeerrorcode": code},
    )
    if data is not None:
        event.extensions["knativeerrordata"] = data
    if attempts is not None:
        event.extensions["deeplensattempts"] = attempts
    return event


def test_record_keeps_one_row_per_event_and_scopes_it_to_its_tenant(db: Database) -> None:
    service = FailedEvents(db, lambda: LocalPublisher(db))
    tenant, other = uuid.uuid4(), uuid.uuid4()
    event = dead(str(tenant), code="500", data="boom", attempts="3")
    service.record(event)
    event.extensions.update(knativeerrordata="again", deeplensattempts="2")
    service.record(event)  # the same event dead-lettered again: one row
    admin = Principal(tenant_id=tenant, role="Admin")
    [row] = service.list(admin, limit=10, offset=0)
    assert (row.event_id, row.error, row.attempts, row.tenant_id) == (event.id, "again", 5, tenant)
    assert "knativeerrordata" not in row.event and row.event["data"] == event.data
    assert service.list(Principal(tenant_id=other, role="Admin"), limit=10, offset=0) == []
    with pytest.raises(NotFound):
        service.get(Principal(tenant_id=other, role="Admin"), row.id)
    with pytest.raises(Forbidden):
        service.list(Principal(tenant_id=tenant, role="User"), limit=10, offset=0)


def test_unreadable_tenant_and_no_error_data(db: Database) -> None:
    """A tenant id that is not a UUID is stored as no tenant (system administrators only see
    it); without error data the error code is kept; attempts default to 1."""
    service = FailedEvents(db, lambda: LocalPublisher(db))
    service.record(dead("not-a-uuid", code="503", data=None, attempts=None))
    root = Principal(tenant_id=None, role=SYSTEM_ADMIN)
    [row] = service.list(root, limit=10, offset=0)
    assert (row.tenant_id, row.error, row.attempts) == (None, "503", 1)
    assert service.get(root, row.id).id == row.id


def test_replay_lets_a_dead_delivery_through_again(db: Database) -> None:
    publisher = LocalPublisher(db)
    service = FailedEvents(db, lambda: publisher)
    tenant = uuid.uuid4()
    event = dead(str(tenant), code="500", data="boom", attempts="5")
    publisher.publish(event)
    with db.tx() as conn:
        conn.execute("UPDATE broker_deliveries SET status = 'dead'")
    service.record(event)
    admin = Principal(tenant_id=tenant, role="Admin")
    [row] = service.list(admin, limit=10, offset=0)
    replayed = service.replay(admin, row.id)
    assert replayed.replayed_at is not None
    with db.tx() as conn:
        statuses = conn.execute(
            "SELECT status FROM broker_deliveries WHERE event_id = %s", (event.id,)
        ).fetchall()
        assert statuses == [("pending",)]
        assert store.purge_tenant(conn, tenant_id=tenant) == 1
    assert service.list(admin, limit=10, offset=0) == []
