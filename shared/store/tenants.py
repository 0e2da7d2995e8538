"""The ``tenants`` table: its row type and every statement that reads it by id or slug."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_all, fetch_one
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


BY_ID: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s AND deleted_at IS NULL"
BY_ID_ANY: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s"
LOCK: LiteralString = "SELECT * FROM tenants WHERE id = %(t)s AND deleted_at IS NULL FOR UPDATE"

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
