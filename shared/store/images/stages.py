"""The pipeline's statements on ``images``: an image's stage transitions, and the sweeper's
platform-wide queries.

Each transition is conditional on the stage it leaves (``AND status = …``), so a redelivered
event changes nothing, and filters by tenant AND id; the pipeline runs them inside
``Database.tenant_tx`` (tests/integration/test_row_level_security.py proves the wall holds).
"""

from __future__ import annotations

import uuid
from dataclasses import fields
from typing import LiteralString

from psycopg import sql

from shared.db import execute, fetch_all, fetch_composed
from shared.store.images import Conn, ImageRow
from shared.store.tenants import TenantRow

# The image row and its tenant's columns (prefixed t__) in one statement; the column list is
# composed from the TenantRow fields with sql.Identifier, never string formatting.
WITH_TENANT = sql.SQL(
    "SELECT i.*, {tenant} FROM images i JOIN tenants t ON t.id = i.tenant_id"
    " WHERE i.id = %(id)s AND i.tenant_id = %(t)s"
    " AND i.deleted_at IS NULL AND t.deleted_at IS NULL"
).format(
    tenant=sql.SQL(", ").join(
        sql.SQL("t.{} AS {}").format(sql.Identifier(f.name), sql.Identifier("t__" + f.name))
        for f in fields(TenantRow)
    )
)
FAILED: LiteralString = """
UPDATE images SET status = 'failed', failure_code = %(c)s, failure_reason = %(r)s,
    updated_at = now()
WHERE id = %(id)s AND tenant_id = %(t)s
"""
VALIDATED: LiteralString = """
UPDATE images SET status = 'validated', width = %(w)s, height = %(h)s,
    thumb_256_key = %(t256)s, thumb_128_key = %(t128)s, thumbnails_bytes = %(tb)s,
    phash = %(ph)s, validated_at = now(), updated_at = now()
WHERE id = %(id)s AND tenant_id = %(t)s AND status = 'uploaded'
"""
EXTRACTED: LiteralString = """
UPDATE images SET status = 'extracted', model = %(m)s, vector_space = %(s)s,
    extracted_at = now(), updated_at = now()
WHERE id = %(id)s AND tenant_id = %(t)s AND status = 'validated'
"""
INDEXED: LiteralString = """
UPDATE images SET status = 'indexed', indexed_at = now(), updated_at = now()
WHERE id = %(id)s AND tenant_id = %(t)s AND status = 'extracted'
"""
BACK_TO_VALIDATED: LiteralString = """
UPDATE images SET status = 'validated', updated_at = now()
WHERE id = %(id)s AND tenant_id = %(t)s AND status = 'extracted'
"""
STUCK: LiteralString = """
SELECT i.* FROM images i
WHERE i.deleted_at IS NULL AND i.status IN ('uploaded', 'validated', 'extracted')
  AND i.updated_at < now() - make_interval(secs => %(s)s)
  AND NOT EXISTS (
    SELECT 1 FROM broker_deliveries d
    WHERE d.status = 'pending'
      AND d.event->>'subject' = 'tenants/' || i.tenant_id || '/images/' || i.id)
ORDER BY i.updated_at LIMIT %(l)s
"""
DELETED: LiteralString = """
SELECT * FROM images WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT %(l)s
"""


def with_tenant(
    conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID
) -> tuple[ImageRow, TenantRow] | None:
    """The live image and its live tenant in one round trip (every stage starts here)."""
    found = fetch_composed(conn, WITH_TENANT, {"id": image_id, "t": tenant_id}, table="images")
    if not found:
        return None
    image = {k: v for k, v in found[0].items() if not k.startswith("t__")}
    tenant = {k[3:]: v for k, v in found[0].items() if k.startswith("t__")}
    return ImageRow(**image), TenantRow(**tenant)


def mark_failed(
    conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID, code: str, reason: str
) -> int:
    params = {"id": image_id, "t": tenant_id, "c": code, "r": reason}
    return execute(conn, FAILED, params, table="images")


def mark_validated(
    conn: Conn,
    *,
    tenant_id: uuid.UUID,
    image_id: uuid.UUID,
    width: int,
    height: int,
    thumb_256_key: str,
    thumb_128_key: str,
    thumbnails_bytes: int,
    phash: int,
) -> int:
    """uploaded → validated, with what processing learnt; 0 when it was not ``uploaded``."""
    params = {
        "id": image_id,
        "t": tenant_id,
        "w": width,
        "h": height,
        "t256": thumb_256_key,
        "t128": thumb_128_key,
        "tb": thumbnails_bytes,
        "ph": phash,
    }
    return execute(conn, VALIDATED, params, table="images")


def mark_extracted(
    conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID, model: str, space: str
) -> int:
    """validated → extracted, into the model's space; 0 when it was not ``validated``."""
    params = {"id": image_id, "t": tenant_id, "m": model, "s": space}
    return execute(conn, EXTRACTED, params, table="images")


def mark_indexed(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> int:
    """extracted → indexed; 0 when it was not ``extracted`` (indexed already)."""
    return execute(conn, INDEXED, {"id": image_id, "t": tenant_id}, table="images")


def back_to_validated(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> int:
    """extracted → validated: the vector travelled only in a lost event, so the sweeper
    restarts the image at extraction."""
    return execute(conn, BACK_TO_VALIDATED, {"id": image_id, "t": tenant_id}, table="images")


def stuck(conn: Conn, *, older_than_seconds: float, limit: int) -> list[ImageRow]:
    """Platform-wide: images that stopped mid-pipeline with no delivery pending for them."""
    params = {"s": older_than_seconds, "l": limit}
    return fetch_all(conn, STUCK, params, table="images", row=ImageRow)


def deleted(conn: Conn, *, limit: int) -> list[ImageRow]:
    """Platform-wide: soft-deleted images waiting for their purge, oldest first."""
    return fetch_all(conn, DELETED, {"l": limit}, table="images", row=ImageRow)
