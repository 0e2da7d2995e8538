"""The data layer on the real PostgreSQL: a migrated database, a pool, and a few rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.db import Database, migrate
from shared.store import tenants, users
from shared.store.tenants import TenantRow


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    migrate(database_url)
    database = Database(database_url, min_size=1, max_size=8)
    database.open()
    try:
        yield database
    finally:
        database.close()


def add_tenant(db: Database, name: str = "Acme", **settings: Any) -> TenantRow:
    tenant_id = uuid.uuid4()
    with db.tx() as conn:
        return tenants.insert(
            conn,
            tenant_id=tenant_id,
            settings=settings,
            name=name,
            slug=f"{name.lower()}-{tenant_id.hex[:6]}",
            description=None,
            domain=None,
            tier="Free",
            bucket=f"b-{tenant_id.hex}",
            collection="images_test",
            max_storage=10_000_000,
            max_users=5,
            max_calls=100,
            created_by=None,
        )


def add_user(db: Database, tenant: TenantRow | None, email: str, role: str = "User") -> Any:
    with db.tx() as conn:
        return users.insert(
            conn,
            tenant_id=tenant.id if tenant else None,
            email=email,
            password_hash="not-a-real-hash",
            role=role,
        )
