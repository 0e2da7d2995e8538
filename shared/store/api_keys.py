"""The ``tenant_api_keys`` table: its row type and every statement that reads or writes it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_all, fetch_one


@dataclass
class ApiKeyRow:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    key_prefix: str
    key_hash: str
    created_by: uuid.UUID | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


INSERT: LiteralString = """
INSERT INTO tenant_api_keys (id, tenant_id, name, key_prefix, key_hash, created_by)
VALUES (%(id)s, %(t)s, %(n)s, %(p)s, %(h)s, %(by)s) RETURNING *
"""
LIST: LiteralString = "SELECT * FROM tenant_api_keys WHERE tenant_id = %(t)s ORDER BY created_at"
REVOKE: LiteralString = """
UPDATE tenant_api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(id)s AND tenant_id = %(t)s
"""
BY_PREFIX: LiteralString = """
SELECT k.* FROM tenant_api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_prefix = %(prefix)s AND t.deleted_at IS NULL
"""
# last_used_at at minute precision: one write a minute per key, not one per call.
USED: LiteralString = """
UPDATE tenant_api_keys SET last_used_at = now() WHERE id = ANY(%(ids)s)
AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""

Conn = psycopg.Connection[Any]


def insert(
    conn: Conn,
    *,
    tenant_id: uuid.UUID,
    name: str,
    prefix: str,
    key_hash: str,
    created_by: uuid.UUID | None,
) -> ApiKeyRow:
    params = {
        "id": uuid.uuid4(),
        "t": tenant_id,
        "n": name,
        "p": prefix,
        "h": key_hash,
        "by": created_by,
    }
    row = fetch_one(conn, INSERT, params, table="tenant_api_keys", row=ApiKeyRow)
    assert row is not None
    return row


def list_for(conn: Conn, *, tenant_id: uuid.UUID) -> list[ApiKeyRow]:
    return fetch_all(conn, LIST, {"t": tenant_id}, table="tenant_api_keys", row=ApiKeyRow)


def revoke(conn: Conn, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    """False when the tenant has no such key (revoking twice is fine)."""
    return execute(conn, REVOKE, {"id": key_id, "t": tenant_id}, table="tenant_api_keys") > 0


def by_prefix(conn: Conn, *, prefix: str) -> ApiKeyRow | None:
    """The key with this visible prefix, unless its tenant is deleted (revoked keys too:
    the caller refuses them)."""
    return fetch_one(conn, BY_PREFIX, {"prefix": prefix}, table="tenant_api_keys", row=ApiKeyRow)


def used(conn: Conn, *, key_ids: list[uuid.UUID]) -> None:
    """Record that these keys were used (at most one write a minute per key)."""
    execute(conn, USED, {"ids": key_ids}, table="tenant_api_keys")
