"""PostgreSQL row-level security, the second wall: inside a tenant-scoped transaction even a
query with no tenant filter sees and changes only that tenant's rows."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.conftest import Platform
from tests.integration.test_pipeline import upload
from tests.photos import encode, photo

pytestmark = pytest.mark.integration


def test_unfiltered_queries_stay_inside_the_tenant(platform: Platform) -> None:
    p = platform
    db = p.container.db
    assert db.rls, "the deeplens_tenant role should exist on the test server"
    a, b = p.signup("A"), p.signup("B")
    upload(p, a, "a1.jpg", encode(photo("coffee.png")))
    upload(p, a, "a2.jpg", encode(photo("chelsea.png")))
    upload(p, b, "b1.jpg", encode(photo("rocket.jpg")))
    ta, tb = uuid.UUID(a["tenant"]["id"]), uuid.UUID(b["tenant"]["id"])

    with db.tenant_tx(ta) as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM tenants").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1
        n = conn.execute("UPDATE images SET filename = 'renamed.jpg'").rowcount
        assert n == 2
    with db.tx() as conn:  # the platform's own role sees all: B was untouched
        names = dict(conn.execute("SELECT filename, tenant_id FROM images").fetchall())
    assert names.get("b1.jpg") == tb and list(names.values()).count(ta) == 1

    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.tenant_tx(ta) as conn:
        conn.execute(
            "INSERT INTO images (id, tenant_id, filename, content_type, size_bytes,"
            " sha256, original_key) VALUES (%s, %s, 'x', 'image/jpeg', 1, 'x', 'k')",
            (uuid.uuid4(), tb),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.tenant_tx(ta) as conn:
        conn.execute("SELECT count(*) FROM refresh_tokens")  # not a tenant-facing table
