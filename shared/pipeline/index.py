"""index-vector: upsert the vector (point id = image id) into the tenant's space, record it,
group near-duplicates; extracted → indexed. A vector for another of the tenant's spaces (a
dual-write or a backfill's copy) is upserted and recorded with no status change."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from events.codec import Event
from events.payloads import FeaturesExtracted
from shared import metrics
from shared.config import Settings
from shared.db import Database
from shared.features.registry import spec_for
from shared.pipeline import replies
from shared.pipeline.grouping import group_duplicates
from shared.pipeline.stage import Stage
from shared.storage import ObjectStore
from shared.store.images import ImageRow, stages
from shared.telemetry import span
from shared.vectors import VectorIndex

if TYPE_CHECKING:
    from shared.model_migrations import MigrationService
    from shared.model_spaces import ModelSpaces

log = logging.getLogger(__name__)


class Index(Stage):
    def __init__(
        self,
        db: Database,
        storage: ObjectStore,
        settings: Settings,
        *,
        vectors: VectorIndex,
        models: ModelSpaces,
        migrations: Callable[[], MigrationService],
    ):
        super().__init__(db, storage, settings)
        self.vectors, self.models, self._migrations = vectors, models, migrations

    @metrics.stage("index-vector")
    def on_extracted(self, p: FeaturesExtracted, cause: Event) -> Event | None:
        """features.extracted → image.indexed (again, for an image indexed already: the
        upsert by image id leaves one point)."""
        if not p.primary:
            return self._copy(p)
        loaded = self.load(tenant_id=p.tenant_id, image_id=p.image_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status not in ("extracted", "indexed"):
            return None
        # The event's claims are checked against the database, not trusted: the vector goes
        # only into this tenant's own space, from the model that extracted this image.
        if (
            p.space != tenant.qdrant_collection_name
            or (row.model and p.model != row.model)
            or not self.models.holds_model(row.tenant_id, p.space, p.ref, p.model)
        ):
            log.warning(
                "ignoring features.extracted for %s: space %s / model %s do not match",
                row.id,
                p.space,
                p.model,
            )
            return None
        vector = p.vector
        with span("image.index", tenant_id=row.tenant_id, image_id=row.id):
            self._upsert(row, p, vector)
            if not self.models.record(row.id, row.tenant_id, p.space, p.ref or p.model):
                # Deleted while it was being indexed: its vectors must not outlive it.
                self.vectors.delete(p.space, tenant_id=row.tenant_id, point_ids=[row.id])
                return None
            with self.db.tenant_tx(row.tenant_id) as conn:
                newly = stages.mark_indexed(conn, tenant_id=row.tenant_id, image_id=row.id)
            if newly:
                metrics.indexed_after((datetime.now(UTC) - row.uploaded_at).total_seconds())
            group_duplicates(
                self.db,
                self.vectors,
                row,
                space=p.space,
                vector=vector,
                spec=self.models.spec(p.ref) if p.ref else spec_for(self.settings.features),
                threshold=self.settings.near_duplicate_threshold,
            )
        return replies.indexed(row, space=p.space, model=p.model, cause=cause)

    def _upsert(self, row: ImageRow, p: FeaturesExtracted, vector: list[float]) -> None:
        """The image's point, then its region points (in the space's companion)."""
        self.vectors.ensure_space(p.space, p.dim)
        payload = {
            "filename": row.filename,
            "uploadedAt": row.uploaded_at.isoformat(),
            "model": p.model,
        }
        self.vectors.upsert(
            p.space, tenant_id=row.tenant_id, point_id=row.id, vector=vector, payload=payload
        )
        self.vectors.upsert_regions(
            p.space,
            tenant_id=row.tenant_id,
            image_id=row.id,
            vectors=p.regions,
            payload=payload,
        )

    def _copy(self, p: FeaturesExtracted) -> Event | None:
        """A vector for another of the tenant's spaces: upsert, record, no status change;
        a backfill's copy then tops up the next batch."""
        loaded = self.load(tenant_id=p.tenant_id, image_id=p.image_id)
        if loaded is not None and self.models.holds_model(p.tenant_id, p.space, p.ref, p.model):
            row = loaded[0]
            with span("image.index_copy", tenant_id=row.tenant_id, image_id=row.id):
                self._upsert(row, p, p.vector)
                if not self.models.record(row.id, row.tenant_id, p.space, p.ref or p.model):
                    self.vectors.delete(p.space, tenant_id=row.tenant_id, point_ids=[row.id])
        if p.backfill_id is not None:
            self.models.item_done(p.backfill_id, p.image_id)
            self._migrations().top_up()
        return None
