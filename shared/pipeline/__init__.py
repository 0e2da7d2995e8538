"""The pipeline behind the event functions, one module per stage:

- ``process``: image.uploaded → thumbnails, perceptual hash, local features → image.validated;
  ``adopt``: an original put straight into a tenant bucket gets a row, then is processed;
- ``extract``: image.validated → the vector(s) → features.extracted (and backfill re-embeds);
- ``index``: features.extracted → upsert, near-duplicate ``grouping`` → image.indexed;
- ``sweeper``: each tick restarts stuck images, purges deleted images and tenants;
- ``replies``: every event these emit; ``stage``: loading and failing an image.

Each stage is idempotent on the image id:

- a stage whose output stage the image already passed answers with no event (nothing to do);
- a stage whose output stage the image is exactly at re-emits its reply (the earlier reply may
  have been lost with a crash), with the same deterministic event id;
- permanent failures (a corrupt image) mark the image failed and reply image.failed;
- transient failures raise, so the broker redelivers.

Every statement on one tenant's image runs in that tenant's transaction (row-level security).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.config import Settings
from shared.db import Database
from shared.features.registry import ModelSpec
from shared.pipeline.adopt import Adoption
from shared.pipeline.extract import Extract
from shared.pipeline.index import Index
from shared.pipeline.process import Process
from shared.pipeline.sweeper import Sweeper
from shared.storage import ObjectStore
from shared.vectors import VectorIndex

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.features.embedder import Embedder
    from shared.images import ImageService
    from shared.model_migrations import MigrationService
    from shared.model_spaces import ModelSpaces


class Pipeline:
    """The stages and the sweeper, sharing one set of adapters; each event handler calls one
    method of one of them."""

    def __init__(
        self,
        db: Database,
        storage: ObjectStore,
        vectors: VectorIndex,
        settings: Settings,
        *,
        models: ModelSpaces,
        embedder_for: Callable[[ModelSpec], Embedder],
        migrations: Callable[[], MigrationService],
        publisher: Callable[[], Publisher],
        images: Callable[[], ImageService],
        purge_tenants: Callable[[], int],
    ):
        self.process = Process(db, storage, settings)
        self.adopt = Adoption(db, storage, settings, self.process)
        self.extract = Extract(
            db, storage, settings, models=models, embedder_for=embedder_for, publisher=publisher
        )
        self.index = Index(
            db, storage, settings, vectors=vectors, models=models, migrations=migrations
        )
        self.sweeper = Sweeper(
            db,
            settings,
            images=images,
            publisher=publisher,
            purge_tenants=purge_tenants,
            top_up=lambda: migrations().top_up(),
        )
