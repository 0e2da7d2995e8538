"""The ``tenants`` table: its row type and every statement that reads or writes it.

"Tenant by id" is written here once (``get``); services check a tenant's status with
``check_active``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

from shared.db import execute, fetch_all, fetch_dicts, fetch_one
from shared.errors import Forbidden, NotFound


@dataclass
class TenantRow:
    id: uuid.UUID
    name: str
    slug: str
    description: str | None
    domain: str | None
    status: str
    tier: str
    minio_bucket_name: str
    qdrant_collection_name: str
    max_storage_bytes: int
    max_users: int
    max_api_calls_per_day: int
    settings: dict[str, Any]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


# The statuses an operator may set (Deleted is set by ``soft_delete`` only).
STATUSES = frozenset({"Active", "Suspended"})

BY_ID: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s AND deleted_at IS NULL"
BY_ID_ANY: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s"
LOCK: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s AND deleted_at IS NULL FOR UPDATE"
BY_SLUG: LiteralString = "SELECT * FROM tenants WHERE slug = %(slug)s AND deleted_at IS NULL"
SLUG_TAKEN: LiteralString = (
    "SELECT 1 AS taken FROM tenants WHERE slug = %(slug)s AND deleted_at IS NULL"
)
LIST: LiteralString = (
    "SELECT * FROM tenants WHERE deleted_at IS NULL ORDER BY created_at LIMIT %(l)s OFFSET %(o)s"
)
INSERT: LiteralString = """
INSERT INTO tenants (id, name, slug, description, domain, status, tier, minio_bucket_name,
    qdrant_collection_name, max_storage_bytes, max_users, max_api_calls_per_day, settings,
    created_by)
VALUES (%(id)s, %(name)s, %(slug)s, %(description)s, %(domain)s, 'Active', %(tier)s,
    %(bucket)s, %(collection)s, %(max_storage)s, %(max_users)s, %(max_calls)s, %(settings)s,
    %(created_by)s)
RETURNING *
"""
SET_STATUS: LiteralString = (
    "UPDATE tenants SET status = %(s)s, updated_at = now() WHERE id = %(t)s AND deleted_at IS NULL"
)
SOFT_DELETE: LiteralString = """
UPDATE tenants SET status = 'Deleted', deleted_at = now(), updated_at = now()
WHERE id = %(t)s AND deleted_at IS NULL
"""
DELETED: LiteralString = (
    "SELECT * FROM tenants WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT %(l)s"
)
PURGE: LiteralString = "DELETE FROM tenants WHERE id = %(t)s AND deleted_at IS NOT NULL"
IN_SPACE: LiteralString = (
    "SELECT count(*) AS n FROM tenants WHERE qdrant_collection_name = %(n)s AND deleted_at IS NULL"
)
# One literal statement per updatable column: no SQL is built from request data.
UPDATES: dict[str, LiteralString] = {
    "name": "UPDATE tenants SET name = %(v)s, updated_at = now() WHERE id = %(t)s",
    "description": "UPDATE tenants SET description = %(v)s, updated_at = now() WHERE id = %(t)s",
    "domain": "UPDATE tenants SET domain = %(v)s, updated_at = now() WHERE id = %(t)s",
    "settings": "UPDATE tenants SET settings = %(v)s, updated_at = now() WHERE id = %(t)s",
    "tier": "UPDATE tenants SET tier = %(v)s, updated_at = now() WHERE id = %(t)s",
    "max_storage_bytes": "UPDATE tenants SET max_storage_bytes = %(v)s, updated_at = now()"
    " WHERE id = %(t)s",
    "max_users": "UPDATE tenants SET max_users = %(v)s, updated_at = now() WHERE id = %(t)s",
    "max_api_calls_per_day": "UPDATE tenants SET max_api_calls_per_day = %(v)s,"
    " updated_at = now() WHERE id = %(t)s",
}

Conn = psycopg.Connection[Any]


def get(conn: Conn, *, tenant_id: uuid.UUID, deleted: bool = False) -> TenantRow | None:
    """The tenant (``deleted=True`` also returns a soft-deleted one), or None."""
    query = BY_ID_ANY if deleted else BY_ID
    return fetch_one(conn, query, {"t": tenant_id}, table="tenants", row=TenantRow)


def check_active(tenant: TenantRow | None) -> TenantRow:
    """404 for a missing tenant, 403 for a suspended or otherwise inactive one."""
    if tenant is None:
        raise NotFound("tenant not found", code="tenant_not_found")
    if tenant.status == "Suspended":
        raise Forbidden("this tenant is suspended", code="tenant_suspended")
    if tenant.status != "Active":
        raise Forbidden("this tenant is not active", code="tenant_inactive")
    return tenant


def active(conn: Conn, *, tenant_id: uuid.UUID) -> TenantRow:
    """The tenant, refused unless it exists and is active."""
    return check_active(get(conn, tenant_id=tenant_id))


def lock_active(conn: Conn, *, tenant_id: uuid.UUID) -> TenantRow:
    """Inside the caller's transaction: lock the (active) tenant row, so quota checks of one
    tenant serialise."""
    return check_active(fetch_one(conn, LOCK, {"t": tenant_id}, table="tenants", row=TenantRow))


def by_slug(conn: Conn, *, slug: str) -> TenantRow | None:
    return fetch_one(conn, BY_SLUG, {"slug": slug}, table="tenants", row=TenantRow)


def slug_taken(conn: Conn, *, slug: str) -> bool:
    return bool(fetch_dicts(conn, SLUG_TAKEN, {"slug": slug}, table="tenants"))


def list_all(conn: Conn, *, limit: int, offset: int) -> list[TenantRow]:
    return fetch_all(conn, LIST, {"l": limit, "o": offset}, table="tenants", row=TenantRow)


def insert(
    conn: Conn, *, tenant_id: uuid.UUID, settings: dict[str, Any], **values: Any
) -> TenantRow:
    """A new Active tenant; ``values`` are INSERT's other parameters (name, slug, …)."""
    params = {**values, "id": tenant_id, "settings": Jsonb(settings)}
    row = fetch_one(conn, INSERT, params, table="tenants", row=TenantRow)
    assert row is not None
    return row


def update(conn: Conn, *, tenant_id: uuid.UUID, column: str, value: Any) -> None:
    """Set one column of ``UPDATES`` (the status has its own statement: ``set_status``)."""
    v = Jsonb(value) if column == "settings" else value
    execute(conn, UPDATES[column], {"t": tenant_id, "v": v}, table="tenants")


def set_status(conn: Conn, *, tenant_id: uuid.UUID, status: str) -> bool:
    """Set an operator status (one of ``STATUSES``); False when there is no such tenant."""
    assert status in STATUSES
    return execute(conn, SET_STATUS, {"s": status, "t": tenant_id}, table="tenants") > 0


def soft_delete(conn: Conn, *, tenant_id: uuid.UUID) -> bool:
    return execute(conn, SOFT_DELETE, {"t": tenant_id}, table="tenants") > 0


def deleted(conn: Conn, *, limit: int) -> list[TenantRow]:
    """Soft-deleted tenants waiting for the sweeper, oldest first."""
    return fetch_all(conn, DELETED, {"l": limit}, table="tenants", row=TenantRow)


def purge(conn: Conn, *, tenant_id: uuid.UUID) -> None:
    """Delete a soft-deleted tenant's row (its users, keys and usage cascade)."""
    execute(conn, PURGE, {"t": tenant_id}, table="tenants")


def count_in_space(conn: Conn, *, space: str) -> int:
    """Live tenants whose images are indexed in this vector space."""
    [row] = fetch_dicts(conn, IN_SPACE, {"n": space}, table="tenants")
    return int(row["n"])


# --- for the model lifecycle (helper D) ---------------------------------------------------
LIVE: LiteralString = "SELECT * FROM tenants WHERE deleted_at IS NULL ORDER BY created_at, id"
SET_SPACE: LiteralString = """
UPDATE tenants SET qdrant_collection_name = %(s)s, updated_at = now() WHERE id = %(t)s
"""


def live(conn: Conn) -> list[TenantRow]:
    """Every tenant not deleted, oldest first."""
    return fetch_all(conn, LIVE, table="tenants", row=TenantRow)


def set_space(conn: Conn, *, tenant_id: uuid.UUID, space: str) -> None:
    """The tenant's active vector space (changed at a model cutover)."""
    execute(conn, SET_SPACE, {"s": space, "t": tenant_id}, table="tenants")


# --- for the pipeline (helper B) ----------------------------------------------------------
BY_BUCKET: LiteralString = (
    "SELECT * FROM tenants WHERE minio_bucket_name = %(b)s AND deleted_at IS NULL"
)
LOCK_ANY: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s FOR UPDATE"


def by_bucket(conn: Conn, *, bucket: str) -> TenantRow | None:
    """Platform-wide: the live tenant that owns this bucket (an object-store notification
    names the bucket only)."""
    return fetch_one(conn, BY_BUCKET, {"b": bucket}, table="tenants", row=TenantRow)


def lock(conn: Conn, *, tenant_id: uuid.UUID) -> TenantRow | None:
    """Inside the caller's transaction: lock the tenant row, whatever its state (duplicate
    grouping serialises per tenant on it)."""
    return fetch_one(conn, LOCK_ANY, {"t": tenant_id}, table="tenants", row=TenantRow)
