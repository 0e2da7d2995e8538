"""shared/store/sessions.py: refresh tokens — rotation, and revocation by family, by user and
by tenant (what suspension and deletion use)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.db import Database
from shared.store import sessions
from tests.integration.store.conftest import add_tenant, add_user

pytestmark = pytest.mark.integration


def issue(db: Database, user_id: uuid.UUID, family: uuid.UUID | None = None) -> str:
    token_hash = uuid.uuid4().hex
    with db.tx() as conn:
        sessions.insert(
            conn,
            token_id=uuid.uuid4(),
            user_id=user_id,
            token_hash=token_hash,
            family_id=family or uuid.uuid4(),
            expires_at=datetime.now(UTC) + timedelta(days=1),
            ip="127.0.0.1",
            user_agent=None,
        )
    return token_hash


def live(db: Database, token_hash: str) -> bool:
    with db.tx() as conn:
        row = sessions.lock_by_hash(conn, token_hash=token_hash)
    assert row is not None
    return row.revoked_at is None


def test_rotation_and_family_revocation(db: Database) -> None:
    u = add_user(db, add_tenant(db), "a@example.com")
    family = uuid.uuid4()
    first = issue(db, u.id, family)
    with db.tx() as conn:
        old = sessions.lock_by_hash(conn, token_hash=first)
        assert old is not None and old.family_id == family and old.user_id == u.id
    second = issue(db, u.id, family)
    with db.tx() as conn:
        new = sessions.lock_by_hash(conn, token_hash=second)
        assert new is not None
        sessions.replaced(conn, token_id=old.id, by=new.id)
    assert not live(db, first) and live(db, second)
    other = issue(db, u.id)  # another device
    with db.tx() as conn:
        sessions.revoke_family_of(conn, token_hash=second)
        sessions.revoke_family_of(conn, token_hash="unknown")  # a no-op
    assert not live(db, second) and live(db, other)
    with db.tx() as conn:
        assert sessions.lock_by_hash(conn, token_hash="unknown") is None


def test_revoke_by_user_and_by_tenant(db: Database) -> None:
    a, b = add_tenant(db, "A"), add_tenant(db, "B")
    a1, a2 = add_user(db, a, "1@a.com"), add_user(db, a, "2@a.com")
    b1 = add_user(db, b, "1@b.com")
    tokens = {u.id: issue(db, u.id) for u in (a1, a2, b1)}
    with db.tx() as conn:
        sessions.revoke_user(conn, user_id=a1.id)
    assert [live(db, tokens[u.id]) for u in (a1, a2, b1)] == [False, True, True]
    with db.tx() as conn:
        sessions.revoke_tenant(conn, tenant_id=a.id)
        sessions.revoke_family(conn, family_id=uuid.uuid4())  # an unknown family: a no-op
    assert [live(db, tokens[u.id]) for u in (a1, a2, b1)] == [False, False, True]
