"""Near-duplicate grouping at index time: a newly indexed image joins the group of the closest
earlier image, if one is close enough.

A group's root is its earliest upload, so grouping is the same whatever order the images are
indexed in; the tenant row lock serialises concurrent indexing of one tenant.
"""

from __future__ import annotations

import uuid

from shared.db import Database
from shared.features.registry import ModelSpec
from shared.store import tenants
from shared.store.images import ImageRow, groups
from shared.store.images import get as get_image
from shared.vectors import VectorIndex


def group_duplicates(
    db: Database,
    vectors: VectorIndex,
    row: ImageRow,
    *,
    space: str,
    vector: list[float],
    spec: ModelSpec,
    threshold: float,
) -> None:
    """Put ``row`` (just indexed into ``space``) into its near-duplicate group."""
    hits = vectors.search(
        space, tenant_id=row.tenant_id, vector=vector, limit=6, threshold=spec.raw_for(threshold)
    )
    others = [h for h in hits if h.id != row.id]
    if not others:
        return
    similarity = spec.calibrate(others[0].score)
    t = row.tenant_id
    with db.tenant_tx(t) as conn:
        tenants.lock(conn, tenant_id=t)
        neighbour = get_image(conn, tenant_id=t, image_id=others[0].id)
        me = get_image(conn, tenant_id=t, image_id=row.id)
        if neighbour is None or me is None or me.duplicate_of is not None:
            return
        root_id: uuid.UUID = neighbour.duplicate_of or neighbour.id
        root = get_image(conn, tenant_id=t, image_id=root_id) or neighbour
        if (me.uploaded_at, str(me.id)) < (root.uploaded_at, str(root.id)):
            groups.become_root(
                conn, tenant_id=t, image_id=me.id, root_id=root.id, similarity=similarity
            )
        else:
            groups.join(conn, tenant_id=t, image_id=me.id, root_id=root.id, similarity=similarity)
