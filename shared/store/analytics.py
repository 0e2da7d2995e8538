"""The reads behind a tenant's analytics: its images by pipeline stage and their storage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg

from shared.db import fetch_one
from shared.store.usage import THUMBNAIL_RESERVE

IMAGES: LiteralString = """
SELECT count(*) AS images,
       coalesce(sum(size_bytes + CASE WHEN thumbnails_bytes > 0
            THEN thumbnails_bytes ELSE %(reserve)s END)
            FILTER (WHERE status <> 'failed'), 0)::bigint AS storage,
       count(*) FILTER (WHERE status = 'uploaded') AS uploaded,
       count(*) FILTER (WHERE status = 'validated') AS validated,
       count(*) FILTER (WHERE status = 'extracted') AS extracted,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL
"""


@dataclass
class ImageStats:
    images: int
    storage: int
    uploaded: int
    validated: int
    extracted: int
    failed: int


def images(conn: psycopg.Connection[Any], *, tenant_id: uuid.UUID) -> ImageStats:
    """A tenant's live images: how many, the storage they use (as the quota counts it), and
    how many wait in each stage or failed."""
    params = {"t": tenant_id, "reserve": THUMBNAIL_RESERVE}
    row = fetch_one(conn, IMAGES, params, table="images", row=ImageStats)
    assert row is not None
    return row
