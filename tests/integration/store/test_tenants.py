"""shared/store/tenants.py: the one "tenant by id", the status check, the lifecycle
statements and every per-column update."""

from __future__ import annotations

import uuid

import pytest

from shared.db import Database
from shared.errors import Forbidden, NotFound
from shared.store import tenants
from tests.integration.store.conftest import add_tenant

pytestmark = pytest.mark.integration


def test_by_id_by_slug_and_soft_deleted(db: Database) -> None:
    t = add_tenant(db)
    with db.tx() as conn:
        assert tenants.get(conn, tenant_id=t.id) == t
        assert tenants.by_slug(conn, slug=t.slug) == t
        assert tenants.slug_taken(conn, slug=t.slug)
        assert tenants.get(conn, tenant_id=uuid.uuid4()) is None
        assert tenants.soft_delete(conn, tenant_id=t.id)
        assert not tenants.soft_delete(conn, tenant_id=t.id)  # once
        assert tenants.get(conn, tenant_id=t.id) is None
        assert tenants.by_slug(conn, slug=t.slug) is None
        assert not tenants.slug_taken(conn, slug=t.slug)  # the slug can be reused
        gone = tenants.get(conn, tenant_id=t.id, deleted=True)
        assert gone is not None and gone.status == "Deleted" and gone.deleted_at is not None
        assert [d.id for d in tenants.deleted(conn, limit=10)] == [t.id]
        assert t.id not in [x.id for x in tenants.list_all(conn, limit=10, offset=0)]


def test_check_active_refuses_missing_suspended_and_inactive(db: Database) -> None:
    t = add_tenant(db)
    with db.tx() as conn:
        assert tenants.active(conn, tenant_id=t.id).id == t.id
        assert tenants.lock_active(conn, tenant_id=t.id).id == t.id
        assert tenants.set_status(conn, tenant_id=t.id, status="Suspended")
        with pytest.raises(Forbidden) as suspended:
            tenants.active(conn, tenant_id=t.id)
        assert suspended.value.code == "tenant_suspended"
        with pytest.raises(NotFound):
            tenants.active(conn, tenant_id=uuid.uuid4())
        tenants.soft_delete(conn, tenant_id=t.id)
        with pytest.raises(Forbidden) as inactive:
            tenants.check_active(tenants.get(conn, tenant_id=t.id, deleted=True))
        assert inactive.value.code == "tenant_inactive"
        # A deleted tenant's status is not the operator's to set any more.
        assert not tenants.set_status(conn, tenant_id=t.id, status="Active")


def test_status_is_a_closed_set(db: Database) -> None:
    t = add_tenant(db)
    assert frozenset({"Active", "Suspended"}) == tenants.STATUSES
    with db.tx() as conn, pytest.raises(AssertionError):
        tenants.set_status(conn, tenant_id=t.id, status="Deleted")


def test_every_updatable_column(db: Database) -> None:
    t = add_tenant(db)
    values = {
        "name": "Renamed",
        "description": "d",
        "domain": "example.com",
        "settings": {"allowSelfRegistration": True},
        "tier": "Professional",
        "max_storage_bytes": 123,
        "max_users": 7,
        "max_api_calls_per_day": 9,
    }
    assert set(values) == set(tenants.UPDATES)
    with db.tx() as conn:
        for column, value in values.items():
            tenants.update(conn, tenant_id=t.id, column=column, value=value)
        after = tenants.get(conn, tenant_id=t.id)
    assert after is not None
    assert {c: getattr(after, c) for c in values} == values
    assert after.updated_at >= t.updated_at


def test_purge_removes_only_a_deleted_tenant(db: Database) -> None:
    gone = add_tenant(db, "Gone")
    with db.tx() as conn:
        tenants.purge(conn, tenant_id=gone.id)  # not deleted yet: nothing happens to the row
        assert tenants.get(conn, tenant_id=gone.id) is not None
        tenants.soft_delete(conn, tenant_id=gone.id)
        tenants.purge(conn, tenant_id=gone.id)
        assert tenants.get(conn, tenant_id=gone.id, deleted=True) is None


def test_tenants_in_a_space(db: Database) -> None:
    add_tenant(db, "A")
    b = add_tenant(db, "B")
    with db.tx() as conn:
        assert tenants.count_in_space(conn, space="images_test") == 2
        tenants.soft_delete(conn, tenant_id=b.id)
        assert tenants.count_in_space(conn, space="images_test") == 1
        assert tenants.count_in_space(conn, space="images_other") == 0
