"""shared/store/users.py: sign-in candidates, what the hot path keeps of a user, counts."""

from __future__ import annotations

import dataclasses

import pytest

from shared.db import Database
from shared.store import tenants, users
from tests.integration.store.conftest import add_tenant, add_user

pytestmark = pytest.mark.integration


def test_sign_in_candidates(db: Database) -> None:
    a, b = add_tenant(db, "A"), add_tenant(db, "B")
    ua = add_user(db, a, "Same@Example.com")
    ub = add_user(db, b, "same@example.com")
    root = add_user(db, None, "root@example.com", role="SystemAdmin")
    with db.tx() as conn:
        found = users.by_email(conn, email="SAME@example.com", slug=None)
        assert [u.id for u in found] == [ua.id, ub.id]  # case-insensitive, oldest first
        assert [u.id for u in users.by_email(conn, email="same@example.com", slug=b.slug)] == [
            ub.id
        ]
        assert [u.id for u in users.by_email(conn, email="root@example.com", slug=None)] == [
            root.id
        ]
        tenants.soft_delete(conn, tenant_id=a.id)
        assert [u.id for u in users.by_email(conn, email="same@example.com", slug=None)] == [ub.id]


def test_identity_never_carries_the_password_hash(db: Database) -> None:
    t = add_tenant(db)
    u = add_user(db, t, "a@example.com", role="Admin")
    with db.tx() as conn:
        ident = users.identity(conn, user_id=u.id)
    assert ident is not None
    assert dataclasses.asdict(ident) == {"tenant_id": t.id, "role": "Admin", "is_active": True}


def test_changes_stay_inside_the_tenant_and_counts(db: Database) -> None:
    a, b = add_tenant(db, "A"), add_tenant(db, "B")
    u = add_user(db, a, "a@example.com")
    add_user(db, a, "b@example.com")
    with db.tx() as conn:
        assert users.count_active(conn, tenant_id=a.id) == 2
        users.set_role(conn, tenant_id=b.id, user_id=u.id, role="Admin")  # wrong tenant
        users.set_active(conn, tenant_id=b.id, user_id=u.id, active=False)
        assert users.in_tenant(conn, tenant_id=b.id, user_id=u.id) is None
        same = users.in_tenant(conn, tenant_id=a.id, user_id=u.id)
        assert same is not None and same.role == "User" and same.is_active
        users.set_role(conn, tenant_id=a.id, user_id=u.id, role="Admin")
        users.set_active(conn, tenant_id=a.id, user_id=u.id, active=False)
        assert users.count_active(conn, tenant_id=a.id) == 1
        users.count_failed(conn, user_ids=[u.id])
        after = users.get(conn, user_id=u.id)
        assert after is not None and after.role == "Admin" and not after.is_active
        assert after.failed_login_attempts == 1
        users.signed_in(conn, user_id=u.id)
        again = users.get(conn, user_id=u.id)
        assert again is not None and again.failed_login_attempts == 0
        assert again.last_login_at is not None
        listed = users.list_in_tenant(conn, tenant_id=a.id, limit=1, offset=1)
        assert [x.email for x in listed] == ["b@example.com"]
