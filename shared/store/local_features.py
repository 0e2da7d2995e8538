"""The ``image_local_features`` table: each image's packed local features (shared/local_features).

Why the database and not the object store next to the thumbnails: a query verifies its top
candidates, and one ``SELECT … WHERE image_id = ANY(…)`` fetches all of their features in a
single round trip (~18 KB each), where the object store would cost one GET per candidate; the
rows also go with their image (foreign key, cascade), their tenant (row-level security) and
their transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_dicts
from shared.local_features import LocalFeatures

Conn = psycopg.Connection[Any]
TABLE = "image_local_features"

UPSERT: LiteralString = (
    "INSERT INTO image_local_features (image_id, tenant_id, features)"
    " VALUES (%(i)s, %(t)s, %(f)s)"
    " ON CONFLICT (image_id) DO UPDATE SET features = EXCLUDED.features"
)
BY_IDS: LiteralString = (
    "SELECT image_id, features FROM image_local_features"
    " WHERE tenant_id = %(t)s AND image_id = ANY(%(ids)s)"
)


def save(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID, features: LocalFeatures) -> None:
    execute(conn, UPSERT, {"i": image_id, "t": tenant_id, "f": features.pack()}, table=TABLE)


def load(
    conn: Conn, *, tenant_id: uuid.UUID, image_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, LocalFeatures]:
    """The stored features of those of ``image_ids`` that have them (one statement)."""
    rows = fetch_dicts(conn, BY_IDS, {"t": tenant_id, "ids": list(image_ids)}, table=TABLE)
    return {r["image_id"]: LocalFeatures.unpack(bytes(r["features"])) for r in rows}
