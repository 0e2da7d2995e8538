"""The ``images`` table: its row type and every statement on it.

- here: the catalog (insert, read, page, delete) that the images API uses;
- ``stages``: the pipeline's stage transitions (uploaded → validated → extracted → indexed, or
  failed) and the sweeper's platform-wide queries;
- ``groups``: near-duplicate groups (``duplicate_of``, ``near_similarity``).

Every function takes the connection first and identifiers as keywords. Tenant-scoped
statements filter by ``tenant_id`` themselves and callers run them inside
``Database.tenant_tx`` (row-level security, the second wall); the few platform-wide ones say so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg

from shared.db import execute, fetch_all, fetch_one

if TYPE_CHECKING:
    from shared.hotpath.asyncread import LoopReader

Conn = psycopg.Connection[Any]


@dataclass
class ImageRow:
    id: uuid.UUID
    tenant_id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    width: int | None
    height: int | None
    status: str
    failure_code: str | None
    failure_reason: str | None
    original_key: str
    thumb_256_key: str | None
    thumb_128_key: str | None
    thumbnails_bytes: int
    model: str | None
    vector_space: str | None
    uploaded_by: uuid.UUID | None
    uploaded_at: datetime
    validated_at: datetime | None
    extracted_at: datetime | None
    indexed_at: datetime | None
    updated_at: datetime
    deleted_at: datetime | None
    duplicate_of: uuid.UUID | None = None
    near_similarity: float | None = None
    phash: int | None = None


@dataclass
class Count:
    n: int


INSERT: LiteralString = """
INSERT INTO images (id, tenant_id, filename, content_type, size_bytes, sha256, width, height,
                    original_key, uploaded_by)
VALUES (%(id)s, %(t)s, %(filename)s, %(ctype)s, %(size)s, %(sha)s, %(w)s, %(h)s,
        %(key)s, %(by)s)
ON CONFLICT (id) DO NOTHING
RETURNING *
"""
GET: LiteralString = """
SELECT * FROM images WHERE id = %(id)s AND tenant_id = %(t)s AND deleted_at IS NULL
"""
EXISTS_ANYWHERE: LiteralString = "SELECT 1 AS n FROM images WHERE id = %(id)s"
PAGE: LiteralString = """
SELECT * FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY uploaded_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s
"""
COUNT: LiteralString = """
SELECT count(*) AS n FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL
  AND (%(status)s::text IS NULL OR status = %(status)s)
"""
SAME_BYTES: LiteralString = """
SELECT * FROM images WHERE tenant_id = %(t)s AND sha256 = %(sha)s AND deleted_at IS NULL
ORDER BY uploaded_at LIMIT 1
"""
SOFT_DELETE: LiteralString = """
UPDATE images SET deleted_at = now(), updated_at = now() WHERE id = %(id)s AND tenant_id = %(t)s
"""
FORGET: LiteralString = "DELETE FROM images WHERE id = %(id)s AND tenant_id = %(t)s"
REMOVE_DELETED: LiteralString = """
DELETE FROM images WHERE id = %(id)s AND tenant_id = %(t)s AND deleted_at IS NOT NULL
"""


def insert(
    conn: Conn,
    *,
    tenant_id: uuid.UUID,
    image_id: uuid.UUID,
    filename: str,
    content_type: str,
    size_bytes: int,
    sha256: str,
    width: int | None,
    height: int | None,
    original_key: str,
    uploaded_by: uuid.UUID | None = None,
) -> ImageRow | None:
    """The new row, or None when the id exists already (an adoption replayed)."""
    params = {
        "id": image_id,
        "t": tenant_id,
        "filename": filename,
        "ctype": content_type,
        "size": size_bytes,
        "sha": sha256,
        "w": width,
        "h": height,
        "key": original_key,
        "by": uploaded_by,
    }
    return fetch_one(conn, INSERT, params, table="images", row=ImageRow)


def get(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> ImageRow | None:
    """The tenant's image, unless it is (soft-)deleted."""
    return fetch_one(conn, GET, {"id": image_id, "t": tenant_id}, table="images", row=ImageRow)


async def get_on_loop(
    reader: LoopReader, *, tenant_id: uuid.UUID, image_id: uuid.UUID
) -> ImageRow | None:
    """``get`` on the event loop (the hot GET: shared/hotpath/asyncread.py)."""
    params = {"id": image_id, "t": tenant_id}
    return await reader.fetch_one(GET, params, table="images", row=ImageRow)


def exists_anywhere(conn: Conn, *, image_id: uuid.UUID) -> bool:
    """Platform-wide: whether any tenant has a row with this id (deleted ones included)."""
    return fetch_one(conn, EXISTS_ANYWHERE, {"id": image_id}, table="images", row=Count) is not None


def page(
    conn: Conn, *, tenant_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> list[ImageRow]:
    """One page of the tenant's images, newest first (optionally of one status)."""
    params = {"t": tenant_id, "status": status, "limit": limit, "offset": offset}
    return fetch_all(conn, PAGE, params, table="images", row=ImageRow)


def count(conn: Conn, *, tenant_id: uuid.UUID, status: str | None) -> int:
    row = fetch_one(conn, COUNT, {"t": tenant_id, "status": status}, table="images", row=Count)
    return row.n if row else 0


def same_bytes(conn: Conn, *, tenant_id: uuid.UUID, sha256: str) -> ImageRow | None:
    """The tenant's earliest live image with exactly these bytes."""
    params = {"t": tenant_id, "sha": sha256}
    return fetch_one(conn, SAME_BYTES, params, table="images", row=ImageRow)


def soft_delete(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> None:
    """Hide the image from every read at once (purge removes it for good)."""
    execute(conn, SOFT_DELETE, {"id": image_id, "t": tenant_id}, table="images")


def forget(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> None:
    """Remove a row whose original could not be stored."""
    execute(conn, FORGET, {"id": image_id, "t": tenant_id}, table="images")


def remove_deleted(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> None:
    """The last step of a purge: the soft-deleted row itself."""
    execute(conn, REMOVE_DELETED, {"id": image_id, "t": tenant_id}, table="images")
