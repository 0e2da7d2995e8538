"""extract: the image's feature vector by the tenant's active model; validated → extracted.
Also the backfill's re-embedding of a stored original into another space, and extraction as
an HTTP service (POST /extract: search by image asks it to embed the query)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from events.codec import Event
from events.payloads import ImageReembed, ImageValidated
from shared import metrics
from shared.config import Settings
from shared.db import Database
from shared.errors import DeepLensError, InvalidInput, TransientError
from shared.features.registry import ModelSpec, spec_for
from shared.pipeline import replies
from shared.pipeline.stage import Stage
from shared.storage import ObjectStore
from shared.store.images import stages
from shared.telemetry import span

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.features.embedder import Embedder
    from shared.model_spaces import ModelSpaces

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    model: str
    ms: float  # the embedding alone (not loading the model)


class Extract(Stage):
    def __init__(
        self,
        db: Database,
        storage: ObjectStore,
        settings: Settings,
        *,
        models: ModelSpaces,
        embedder_for: Callable[[ModelSpec], Embedder],
        publisher: Callable[[], Publisher],
    ):
        super().__init__(db, storage, settings)
        self.models, self._embedder_for, self._publisher = models, embedder_for, publisher

    @metrics.stage("extract")
    def on_validated(self, p: ImageValidated, cause: Event) -> Event | None:
        """Embed into the tenant's active space (the reply); while the tenant keeps another
        space (a migration target, or the previous space until cleanup), also embed with
        that model and publish its features.extracted (dual-write)."""
        loaded = self.load(tenant_id=p.tenant_id, image_id=p.image_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status in ("failed", "uploaded", "indexed"):
            return None
        active, *others = self.models.write_targets(row.tenant_id)
        with span(
            "image.extract", tenant_id=row.tenant_id, image_id=row.id, model=active.spec.name
        ):
            data = self.storage.get(tenant.minio_bucket_name, row.original_key)
            try:
                vector, regions = self._embed(active.spec, data)
            except TransientError:
                raise
            except DeepLensError as exc:
                return self.fail(row, "extract", exc, cause)
            copies = []
            for other in others:
                try:
                    copies.append((other, self._embed(other.spec, data)))
                except TransientError:
                    raise
                except DeepLensError as exc:
                    # The other space then lacks this image, and cutover says so.
                    log.warning("no %s vector for %s: %s", other.spec.ref, row.id, exc.code)
            with self.db.tenant_tx(row.tenant_id) as conn:
                stages.mark_extracted(
                    conn,
                    tenant_id=row.tenant_id,
                    image_id=row.id,
                    model=active.spec.name,
                    space=active.space,
                )
            for other, (vec, parts) in copies:
                copy = replies.features(
                    row, other.spec, other.space, vec, cause, primary=False, regions=parts
                )
                self._publisher().publish(replies.copy_of(copy, other.space))
        return replies.features(
            row, active.spec, active.space, vector, cause, primary=True, regions=regions
        )

    def reembed(self, p: ImageReembed, cause: Event) -> Event | None:
        """Backfill or reindex: embed a stored original into ``p.space`` once. Skipped when
        the space already holds the image (a redelivery, a crash replay) or is no longer one
        of the tenant's spaces (cleaned up)."""
        loaded = self.load(tenant_id=p.tenant_id, image_id=p.image_id)
        if loaded is None:
            return None
        row, tenant = loaded
        if row.status not in ("extracted", "indexed"):
            return None  # still in the pipeline: its extraction writes every current space
        spec = self.models.spec(p.model)
        if not self.models.holds_model(row.tenant_id, p.space, spec.ref, spec.name):
            return None  # not one of its spaces (cleaned up), or a space of another model
        if self.models.holds(row.id, p.space):
            return None
        with span("image.reembed", tenant_id=row.tenant_id, image_id=row.id, model=spec.name):
            data = self.storage.get(tenant.minio_bucket_name, row.original_key)
            try:
                vector, regions = self._embed(spec, data)
            except TransientError:
                raise
            except DeepLensError as exc:
                if p.backfill_id is not None:
                    self.models.item_failed(p.backfill_id, row.id, f"{exc.code}: {exc.message}")
                return None
        return replies.features(
            row,
            spec,
            p.space,
            vector,
            cause,
            primary=False,
            backfill_id=p.backfill_id,
            regions=regions,
        )

    def _embed(self, spec: ModelSpec, data: bytes) -> tuple[list[float], list[list[float]]]:
        """The vector, and the region vectors unless they are switched off."""
        embedder = self._embedder_for(spec)
        if self.settings.features.regions:
            return embedder.embed_regions(data)
        return embedder.embed(data), []

    # --- extraction as a service ---------------------------------------------------------
    def embed(self, requested: str | None, blobs: list[bytes], *, batch: bool) -> Embedded:
        """Embed images with the configured model, or with the one a model reference names
        (any model the platform serves, loaded on first use)."""
        embedder = self._serving(requested)
        t0 = time.perf_counter()
        vectors = embedder.embed_many(blobs) if batch else [embedder.embed(b) for b in blobs]
        ms = round((time.perf_counter() - t0) * 1000, 2)
        return Embedded(vectors, embedder.spec.name, ms)

    def _serving(self, requested: str | None) -> Embedder:
        default = self._embedder_for(spec_for(self.settings.features))
        if requested in (None, "", default.spec.name, default.spec.ref):
            return default
        assert requested is not None
        spec = self.models.spec(requested)
        if not self.models.in_use(spec):
            raise InvalidInput(
                f"this instance serves {default.spec.ref} and the models tenants use;"
                f" {requested} is not one of them",
                code="model_not_loaded",
            )
        return self._embedder_for(spec)
