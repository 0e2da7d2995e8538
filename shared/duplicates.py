"""Duplicates within a tenant: near-duplicate groups (by embedding, formed at index time) and
each image's near-duplicates, told apart as true copies or similar shots (bursts, re-framings,
a second viewpoint) by the same signal as search: a ``copy`` is geometrically verified against
its group's image with their stored local features (shared/local_features); images indexed
before local features existed fall back to the perceptual hash (within
``copy_max_hash_distance``). Exact byte-for-byte duplicates never get a second row (see
ImageService.upload).
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.auth.principal import Principal
from shared.config import Settings
from shared.db import Database
from shared.errors import Conflict
from shared.features.registry import spec_for
from shared.images import ImageService
from shared.imaging import hash_distance
from shared.local_features import LocalFeatures
from shared.matching import verify
from shared.store.images import ImageRow
from shared.store.images import groups as image_groups
from shared.vectors import VectorIndex
from shared.verification import load

# Geometric checks per request, at most (search verifies 16 candidates a query): past them, a
# pair is told by its perceptual hashes, so a threshold of 0 or a page of large groups cannot
# make one call run dozens of RANSAC fits.
MAX_CHECKS = 16


class DuplicateService:
    def __init__(
        self,
        db: Database,
        images: ImageService,
        vectors: VectorIndex,
        settings: Settings,
    ):
        self.db, self.images, self.vectors, self.settings = db, images, vectors, settings
        self.spec = spec_for(settings.features)

    def kind(
        self,
        a: ImageRow,
        b: ImageRow,
        features: dict[uuid.UUID, LocalFeatures] | None = None,
    ) -> str:
        if a.sha256 == b.sha256:
            return "identical"
        fa, fb = (features or {}).get(a.id), (features or {}).get(b.id)
        if fa is not None and fb is not None:
            return "copy" if verify(fb, fa).verified else "similar-shot"
        if (
            a.phash is not None
            and b.phash is not None
            and hash_distance(a.phash, b.phash) <= self.settings.copy_max_hash_distance
        ):
            return "copy"
        return "similar-shot"

    def for_image(
        self, principal: Principal, image_id: uuid.UUID, threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """This image's near-duplicates in the caller's tenant, closest first."""
        row, vector = self.images.vector(principal, image_id)
        if row.vector_space is None:
            raise Conflict("the image is not indexed yet", code="not_indexed")
        t = self.settings.near_duplicate_threshold if threshold is None else threshold
        hits = self.vectors.search(
            row.vector_space,
            tenant_id=row.tenant_id,
            vector=vector,
            limit=51,
            threshold=self.spec.raw_for(t),
        )
        hits = [h for h in hits if h.id != row.id]
        with self.db.tenant_tx(row.tenant_id) as conn:
            found = image_groups.by_ids(conn, tenant_id=row.tenant_id, ids=[h.id for h in hits])
            rows = {r.id: r for r in found}
            nearest = [h.id for h in hits if h.id in rows][:MAX_CHECKS]
            features = load(conn, row.tenant_id, [row.id, *nearest])
        return [
            {
                "imageId": h.id,
                "filename": rows[h.id].filename,
                "similarity": round(self.spec.calibrate(h.score), 6),
                "kind": self.kind(row, rows[h.id], features),
                "uploadedAt": rows[h.id].uploaded_at.isoformat(),
            }
            for h in hits
            if h.id in rows
        ]

    def groups(self, principal: Principal, *, page: int, page_size: int) -> dict[str, Any]:
        """Near-duplicate groups of the caller's tenant, newest activity first, paged in SQL
        (a large library never loads whole)."""
        tenant_id = principal.require_tenant()
        with self.db.tenant_tx(tenant_id) as conn:
            roots = image_groups.roots(
                conn, tenant_id=tenant_id, limit=page_size, offset=(page - 1) * page_size
            )
            total = image_groups.count(conn, tenant_id=tenant_id)
            members = image_groups.members(conn, tenant_id=tenant_id, roots=[r.root for r in roots])
            root_ids = {r.root for r in roots}
            checked = [m.id for m in members if m.id not in root_ids][:MAX_CHECKS]
            features = load(conn, tenant_id, [*root_ids, *checked])
        by_root: dict[uuid.UUID, list[ImageRow]] = {r.root: [] for r in roots}
        for m in members:
            by_root.setdefault(m.duplicate_of or m.id, []).append(m)
        groups = []
        for r in roots:
            rows = by_root[r.root]
            if not rows:
                continue  # its images were deleted (or regrouped) between the two reads
            root = next((m for m in rows if m.id == r.root), rows[0])
            groups.append(
                {
                    "rootId": root.id,
                    "size": len(rows),
                    "images": [
                        {
                            "imageId": m.id,
                            "filename": m.filename,
                            "similarity": 1.0 if m.id == root.id else m.near_similarity,
                            "kind": (
                                "original" if m.id == root.id else self.kind(root, m, features)
                            ),
                            "uploadedAt": m.uploaded_at.isoformat(),
                        }
                        for m in rows
                    ],
                }
            )
        return {"groups": groups, "page": page, "pageSize": page_size, "total": total}
