"""Near-duplicate groups on ``images``: ``duplicate_of`` points at the group's root (its
earliest upload), ``near_similarity`` is a member's similarity to the image it joined.

All tenant-scoped: callers run these inside ``Database.tenant_tx``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import LiteralString

from shared.db import execute, fetch_all, fetch_one
from shared.store.images import Conn, Count, ImageRow


@dataclass
class GroupRoot:
    root: uuid.UUID
    n: int
    latest: datetime


ROOTS: LiteralString = """
SELECT coalesce(duplicate_of, id) AS root, count(*) AS n, max(uploaded_at) AS latest
FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL
GROUP BY 1 HAVING count(*) > 1
ORDER BY latest DESC, root LIMIT %(l)s OFFSET %(o)s
"""
COUNT: LiteralString = """
SELECT count(*) AS n FROM (SELECT 1 FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL
GROUP BY coalesce(duplicate_of, id) HAVING count(*) > 1) g
"""
MEMBERS: LiteralString = """
SELECT * FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL
  AND (id = ANY(%(roots)s) OR duplicate_of = ANY(%(roots)s))
ORDER BY uploaded_at, id
"""
BY_IDS: LiteralString = """
SELECT * FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL AND id = ANY(%(ids)s)
"""
# A new root: the whole group (old root included) now points at it.
BECOME_ROOT: LiteralString = """
UPDATE images SET duplicate_of = %(me)s WHERE tenant_id = %(t)s
  AND (id = %(root)s OR duplicate_of = %(root)s)
"""
SIMILARITY: LiteralString = """
UPDATE images SET near_similarity = %(s)s WHERE id = %(id)s AND tenant_id = %(t)s
"""
JOIN: LiteralString = """
UPDATE images SET duplicate_of = %(root)s, near_similarity = %(s)s
WHERE id = %(me)s AND tenant_id = %(t)s
"""
# A deleted root hands its group to the next earliest member.
REROOT: LiteralString = """
WITH heir AS (SELECT id FROM images WHERE duplicate_of = %(id)s AND tenant_id = %(t)s
              AND deleted_at IS NULL ORDER BY uploaded_at, id LIMIT 1)
UPDATE images SET duplicate_of = CASE WHEN id = (SELECT id FROM heir) THEN NULL
                                      ELSE (SELECT id FROM heir) END
WHERE duplicate_of = %(id)s AND tenant_id = %(t)s
"""


def roots(conn: Conn, *, tenant_id: uuid.UUID, limit: int, offset: int) -> list[GroupRoot]:
    """One page of the tenant's groups (of two or more), newest activity first."""
    params = {"t": tenant_id, "l": limit, "o": offset}
    return fetch_all(conn, ROOTS, params, table="images", row=GroupRoot)


def count(conn: Conn, *, tenant_id: uuid.UUID) -> int:
    row = fetch_one(conn, COUNT, {"t": tenant_id}, table="images", row=Count)
    return row.n if row else 0


def members(conn: Conn, *, tenant_id: uuid.UUID, roots: list[uuid.UUID]) -> list[ImageRow]:
    """Every live image of these groups (roots included), earliest first."""
    params = {"t": tenant_id, "roots": roots}
    return fetch_all(conn, MEMBERS, params, table="images", row=ImageRow)


def by_ids(conn: Conn, *, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> list[ImageRow]:
    """The tenant's live images among ``ids`` (in no particular order)."""
    return fetch_all(conn, BY_IDS, {"t": tenant_id, "ids": ids}, table="images", row=ImageRow)


def become_root(
    conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID, root_id: uuid.UUID, similarity: float
) -> None:
    """An image earlier than a group's root takes the group over; the old root records its
    similarity to it."""
    execute(conn, BECOME_ROOT, {"t": tenant_id, "me": image_id, "root": root_id}, table="images")
    execute(conn, SIMILARITY, {"t": tenant_id, "id": root_id, "s": similarity}, table="images")


def join(
    conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID, root_id: uuid.UUID, similarity: float
) -> None:
    params = {"t": tenant_id, "me": image_id, "root": root_id, "s": similarity}
    execute(conn, JOIN, params, table="images")


def reroot(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> None:
    """Before an image is removed: if it was a root, its group gets the next earliest."""
    execute(conn, REROOT, {"id": image_id, "t": tenant_id}, table="images")
