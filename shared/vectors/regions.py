"""Region vectors: each image's vectors of a few windows (shared/features/nets), kept in a
companion space next to its space (``<space>__regions``), one point per window.

A companion space rather than extra points in the image space: the image space keeps exactly
one point per image (counts, duplicates, ``GET .../vector`` and migrations read it), and a
search that does not want regions never sees them. The adapters cascade deletes into the
companion (an image, a tenant, a dropped space), so a region point never outlives its image,
and hide companions from the space listing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

from shared.errors import NotFound
from shared.vectors.protocol import REGION_KEY, SPACE_RE, Hit

if TYPE_CHECKING:
    from shared.vectors.protocol import VectorIndex

SUFFIX = "__regions"
IMAGE_KEY = "imageId"
MAX_REGIONS = 8  # point ids reserved per image
WINDOWS = 5  # the region windows the built-in models make (shared/features/nets)


def companion(space: str) -> str:
    return space + SUFFIX


def is_companion(space: str) -> bool:
    return space.endswith(SUFFIX)


def _usable(space: str) -> bool:
    """Whether the space can have a companion (a name near the length limit cannot: such a
    space simply has no region vectors)."""
    return not is_companion(space) and SPACE_RE.match(companion(space)) is not None


def point_ids(image_id: uuid.UUID, n: int = MAX_REGIONS) -> list[uuid.UUID]:
    """The region points' ids of an image: derived, so a delete needs no lookup."""
    return [uuid.uuid5(image_id, f"region/{k}") for k in range(n)]


def cascade_delete(
    index: VectorIndex, space: str, *, tenant_id: uuid.UUID, image_ids: list[uuid.UUID]
) -> None:
    if not _usable(space) or not image_ids:
        return
    _delete(index, space, tenant_id, [pid for i in image_ids for pid in point_ids(i)])


def _delete(index: VectorIndex, space: str, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    """Delete region points from the space's companion, which may not exist yet."""
    try:
        index.delete(companion(space), tenant_id=tenant_id, point_ids=ids)
    except NotFound:
        pass


def cascade_delete_tenant(index: VectorIndex, space: str, *, tenant_id: uuid.UUID) -> None:
    if not _usable(space):
        return
    try:
        index.delete_tenant(companion(space), tenant_id=tenant_id)
    except NotFound:
        pass


def cascade_drop(index: VectorIndex, name: str) -> None:
    if not _usable(name):
        return
    try:
        index.drop_space(companion(name))
    except NotFound:
        pass


class RegionMethods:
    """``VectorIndex.upsert_regions`` and ``search_regions``, written once for every adapter
    (each adapter's own upsert, search and delete do the work)."""

    def upsert_regions(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        image_id: uuid.UUID,
        vectors: list[list[float]],
        payload: dict[str, Any],
    ) -> None:
        """The image's region points; any it had beyond these (re-indexed with fewer, or with
        regions switched off) are deleted, so none nominates the image with a stale window."""
        index = cast("VectorIndex", self)
        if not _usable(space):
            return
        vectors = vectors[:MAX_REGIONS]  # the event payload holds at most MAX_REGIONS
        stale = point_ids(image_id)[len(vectors) :]
        if stale:
            _delete(index, space, tenant_id, stale)
        if not vectors:
            return
        name = companion(space)
        index.ensure_space(name, len(vectors[0]), half=True)
        for pid, (k, vec) in zip(point_ids(image_id), enumerate(vectors), strict=False):
            body = {**payload, IMAGE_KEY: str(image_id), REGION_KEY: k}
            index.upsert(name, tenant_id=tenant_id, point_id=pid, vector=vec, payload=body)

    def search_regions(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        vector: list[float],
        limit: int,
        windows: int = WINDOWS,
    ) -> list[Hit]:
        """The nearest ``limit`` images by each region window, as hits on the image's id (best
        first, each image once).

        Per window rather than over all region points at once: a crop's own window ranks its
        original first (on the dev split, every 60% crop's top-left window did), while the best
        of five windows of many look-alikes (200 faces) drowns it in one pooled ranking.
        """
        index = cast("VectorIndex", self)
        if not _usable(space):
            return []
        hits: list[Hit] = []
        for k in range(windows):
            try:
                hits += index.search(
                    companion(space),
                    tenant_id=tenant_id,
                    vector=vector,
                    limit=limit,
                    match={REGION_KEY: k},
                )
            except NotFound:
                return []  # nothing with regions indexed in this space yet
        best: dict[uuid.UUID, Hit] = {}
        for h in hits:
            try:
                image_id = uuid.UUID(str(h.payload.get(IMAGE_KEY)))
            except ValueError:
                continue
            if image_id not in best or h.score > best[image_id].score:
                best[image_id] = Hit(image_id, h.score, h.payload)
        return sorted(best.values(), key=lambda h: -h.score)
