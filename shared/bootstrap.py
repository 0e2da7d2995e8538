"""The composition root: builds services from settings with real adapters by default.

Tests pass other adapters by keyword. Resources that a function does not need are never built
(the auth function never opens the vector engine, and nothing but extraction imports torch).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import TYPE_CHECKING, TypedDict

from shared.bootstrap_identity import IdentityWiring
from shared.config import Settings
from shared.db import Database, migrate
from shared.embedded import embedded_database_url
from shared.features.registry import ModelSpec, spec_for
from shared.model_spaces import ModelSpaces
from shared.tenants import TenantResources, TenantService

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.analytics import AnalyticsService
    from shared.collections import CollectionService
    from shared.custom_models import CustomModels
    from shared.duplicates import DuplicateService
    from shared.failed_events import FailedEvents
    from shared.features.embedder import Embedder
    from shared.hotpath.asyncread import LoopReader
    from shared.images import ImageService
    from shared.model_migrations import MigrationService
    from shared.pipeline import Pipeline
    from shared.search import SearchService
    from shared.storage import ObjectStore
    from shared.vectors import VectorIndex

log = logging.getLogger(__name__)


class Adapters(TypedDict, total=False):
    """What a caller may pass instead of the real adapters (tests; ``function.new(**…)``)."""

    storage: ObjectStore
    vectors: VectorIndex
    embedder: Embedder
    publisher: Publisher
    run_migrations: bool


class Container(IdentityWiring):
    """Everything a function instance holds between requests. Built in ``start()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        storage: ObjectStore | None = None,
        vectors: VectorIndex | None = None,
        embedder: Embedder | None = None,
        publisher: Publisher | None = None,
        run_migrations: bool = True,
    ):
        self.settings = settings
        url = settings.database_url or embedded_database_url(settings.data_dir)
        self.database_url = url
        if run_migrations:
            migrate(url)
        self.db = Database(url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
        self._storage, self._vectors, self._embedder = storage, vectors, embedder
        self._publisher = publisher
        self._embedders: dict[str, Embedder] = {}
        self._embedders_lock = threading.Lock()

    def open(self) -> None:
        from shared import decoding

        decoding.configure(self.settings.decode_budget_bytes, self.settings.max_decoded_bytes)
        self.db.open()

    def close(self) -> None:
        """Close what this container built; adapters passed in belong to the caller."""
        reader = self.__dict__.get("fast_reader")
        if reader is not None:
            reader.close()
        if "gate" in self.__dict__:
            self.gate.close()  # writes the calls still counted in memory
        if "vectors" in self.__dict__ and self._vectors is None:
            self.vectors.close()
        if "embedder" in self.__dict__ and self._embedder is None:
            self.embedder.close()
        for other in self._embedders.values():
            other.close()
        self.db.close()

    # --- tenancy (identity services: shared/bootstrap_identity.py) ---------------------------
    @cached_property
    def fast_reader(self) -> LoopReader | None:
        """The hot GET's async reader (shared/hotpath/asyncread.py), when switched on."""
        from shared.hotpath.asyncread import LoopReader

        return LoopReader(self.database_url) if self.settings.async_reads else None

    @cached_property
    def tenants(self) -> TenantService:
        """Tenants and their lifecycle (builds storage and vectors: auth never asks for it)."""
        return TenantService(
            self.db,
            self.sessions,
            TenantResources(self.storage, self.vectors, self.models),
            bucket_prefix=self.settings.storage.bucket_prefix,
            signups=self.signups,
        )

    # --- pipeline adapters -----------------------------------------------------------------
    @cached_property
    def storage(self) -> ObjectStore:
        if self._storage is not None:
            return self._storage
        from shared.storage import build_store

        return build_store(self.settings)

    @cached_property
    def vectors(self) -> VectorIndex:
        if self._vectors is not None:
            return self._vectors
        from shared.vectors import build_index

        return build_index(self.settings)

    @cached_property
    def embedder(self) -> Embedder:
        if self._embedder is not None:
            return self._embedder
        from shared.features.embedder import build_embedder

        return build_embedder(self.settings)

    def embedder_for(self, spec: ModelSpec) -> Embedder:
        """The embedder of a model, loaded once per instance (under a lock: a model is
        loaded by one thread while the others wait). The settings' model is ``embedder``."""
        if spec.space_suffix == spec_for(self.settings.features).space_suffix:
            return self.embedder
        key = f"{spec.space_suffix}/{spec.onnx_path}"
        found = self._embedders.get(key)
        if found is not None:
            return found
        with self._embedders_lock:
            if key not in self._embedders:
                from shared.features.embedder import build_embedder
                from shared.lanes import at_normal_priority

                if spec.arch == "onnx":
                    self.custom_models.ensure_file(spec.name)

                # A model's runtime starts threads (ONNX Runtime's worker, the
                # micro-batcher): at normal priority even when a backfill asks first.
                self._embedders[key] = at_normal_priority(build_embedder, self.settings, spec)
            return self._embedders[key]

    @cached_property
    def models(self) -> ModelSpaces:
        return ModelSpaces(self.db, self.vectors, self.settings)

    @cached_property
    def custom_models(self) -> CustomModels:
        from shared.custom_models import CustomModels

        return CustomModels(self.db, self.models, self.settings.data_dir / "models" / "custom")

    @cached_property
    def migrations(self) -> MigrationService:
        from shared.backfill import Backfiller
        from shared.model_migrations import MigrationService

        backfill = Backfiller(
            self.db,
            lambda: self.publisher,
            batch=self.settings.models_backfill_batch,
            stale_seconds=self.settings.models_backfill_stale_seconds,
        )
        return MigrationService(self.db, self.models, self.vectors, backfill)

    @cached_property
    def publisher(self) -> Publisher:
        if self._publisher is not None:
            return self._publisher
        from events.publisher import build_publisher

        return build_publisher(self.settings, self.db)

    @cached_property
    def images(self) -> ImageService:
        from shared.images import ImageService

        return ImageService(
            self.db, self.storage, self.publisher, self.settings, vectors=self.vectors
        )

    @cached_property
    def pipeline(self) -> Pipeline:
        from shared.pipeline import Pipeline

        return Pipeline(
            self.db,
            self.storage,
            self.vectors,
            self.settings,
            models=self.models,
            embedder_for=self.embedder_for,
            migrations=lambda: self.migrations,
            publisher=lambda: self.publisher,
            images=lambda: self.images,
            purge_tenants=lambda: self.tenants.purge_deleted(),
        )

    @cached_property
    def search(self) -> SearchService:
        from shared.search import SearchService

        return SearchService(
            self.db,
            self.vectors,
            lambda: self.embedder,
            self.settings,
            models=self.models,
            embedder_for=self.embedder_for,
        )

    @cached_property
    def duplicates(self) -> DuplicateService:
        from shared.duplicates import DuplicateService

        return DuplicateService(self.db, self.images, self.vectors, self.settings)

    @cached_property
    def analytics(self) -> AnalyticsService:
        from shared.analytics import AnalyticsService

        return AnalyticsService(self.db)

    @cached_property
    def collections(self) -> CollectionService:
        from shared.collections import CollectionService

        spec = spec_for(self.settings.features)
        return CollectionService(self.db, self.vectors, active_space=(spec.space_name, spec.dim))

    # --- model lifecycle and failed events (helper D) ---------------------------------------
    @cached_property
    def failed_events(self) -> FailedEvents:
        from shared.failed_events import FailedEvents

        return FailedEvents(self.db, lambda: self.publisher)
