"""The sweeper's tick (a PingSource in production, the local broker's timer locally): restart
images stuck in a stage, purge deleted images and tenants, top up model-migration backfills.

Finding stuck and deleted images is platform-wide (the platform's own role sees every
tenant); restarting and purging one image runs in that image's tenant transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from events.codec import Event
from events.publisher import priority_name
from shared.config import Settings
from shared.db import Database
from shared.pipeline import replies
from shared.store import deliveries
from shared.store.images import ImageRow, stages

if TYPE_CHECKING:
    from events.publisher import Publisher
    from shared.images import ImageService

SOURCE = "/deeplens/sweeper"


@dataclass(frozen=True)
class Swept:
    restarted: int
    purged: int
    tenants_purged: int
    backfill_queued: int


class Sweeper:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        images: Callable[[], ImageService],
        publisher: Callable[[], Publisher],
        purge_tenants: Callable[[], int],
        top_up: Callable[[], int],
    ):
        self.db, self.settings, self._images = db, settings, images
        self._publisher, self._purge_tenants, self._top_up = publisher, purge_tenants, top_up

    def sweep(self) -> Swept:
        """One tick: every step is idempotent, so overlapping ticks do no harm."""
        restarted = purged = 0
        for row in self.stuck(self.settings.sweeper_stuck_seconds):
            event = self.restart_event(row)
            if event is not None:
                self._publisher().publish(event)
                restarted += 1
        for row in self.deleted():
            self._images().purge(row)
            purged += 1
        tenants = self._purge_tenants()
        # Model migrations resume here after a crash (and stale re-embeddings are queued again).
        return Swept(restarted, purged, tenants, self._top_up())

    def stuck(self, older_than_seconds: float, limit: int = 500) -> list[ImageRow]:
        """Images that stopped mid-pipeline with no delivery pending for them."""
        with self.db.tx() as conn:
            return stages.stuck(conn, older_than_seconds=older_than_seconds, limit=limit)

    def deleted(self, limit: int = 200) -> list[ImageRow]:
        with self.db.tx() as conn:
            return stages.deleted(conn, limit=limit)

    def restart_event(self, row: ImageRow) -> Event | None:
        """The event that restarts a stuck image at its stage (extracted restarts at
        extraction: the vector travelled only in the lost event), at the priority its events
        last travelled at (a bulk upload stays bulk)."""
        with self.db.tx() as conn:
            subject = f"tenants/{row.tenant_id}/images/{row.id}"
            priority = priority_name(deliveries.last_priority(conn, subject=subject))
        with self.db.tenant_tx(row.tenant_id) as conn:
            loaded = stages.with_tenant(conn, tenant_id=row.tenant_id, image_id=row.id)
            if loaded is None:
                return None
            row, tenant = loaded
            if row.status == "extracted":
                stages.back_to_validated(conn, tenant_id=row.tenant_id, image_id=row.id)
        bucket = tenant.minio_bucket_name
        if row.status == "uploaded":
            return replies.uploaded(row, bucket, source=SOURCE, priority=priority)
        if row.status in ("validated", "extracted"):
            return replies.validated(
                row,
                bucket,
                width=row.width or 0,
                height=row.height or 0,
                source=SOURCE,
                priority=priority,
            )
        return None
