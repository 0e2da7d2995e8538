"""The backfill: re-embedding jobs (a migration's target, a reindex), one per tenant and space,
run tenant by tenant in bounded batches through the extract function (``image.reembed`` at
low broker priority). The state is in PostgreSQL (``backfills``, ``backfill_items``,
``image_spaces``; SQL in shared/store/backfills.py), so any crash resumes: the sweeper and each
completed re-embedding call ``top_up``, and an image the space already holds is never queued
again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from events import types
from events.codec import Event, make_event
from events.payloads import ImageReembed
from shared.db import Database
from shared.store import backfills as store
from shared.store.backfills import BackfillRow

if TYPE_CHECKING:
    from events.publisher import Publisher

log = logging.getLogger(__name__)


class Backfiller:
    def __init__(
        self,
        db: Database,
        publisher: Callable[[], Publisher],
        *,
        batch: int = 4,
        stale_seconds: float = 600.0,
    ) -> None:
        # The publisher is resolved when a batch is queued: building it needs the broker's
        # address, which only functions that publish are given.
        self.db, self._publisher = db, publisher
        self.batch, self.stale_seconds = batch, stale_seconds

    def new_job(
        self, conn: psycopg.Connection[Any], tenant_id: uuid.UUID, ref: str, space: str, kind: str
    ) -> None:
        """Inside the caller's transaction: a running job for (tenant, space) replaces any
        other running one."""
        store.cancel_running(conn, tenant_id=tenant_id, space=space)
        store.create(conn, tenant_id=tenant_id, model=ref, space=space, kind=kind)

    def top_up(self) -> int:
        """Queue the next bounded batch of the oldest running backfill (tenant by tenant);
        finish backfills with nothing left. Safe to call from anywhere, any number of times:
        one caller at a time does the work (an advisory lock), the rest return at once."""
        with self.db.tx() as conn:
            if not store.try_lock(conn):
                return 0
            while True:
                b = store.next_running(conn)
                if b is None:
                    return 0
                queued = self._batch(conn, b)
                if queued is not None:
                    return queued

    def _batch(self, conn: psycopg.Connection[Any], b: BackfillRow) -> int | None:
        """Queue one batch of ``b``; None when ``b`` had nothing left (finished, or its
        cursor rewound for a last pass) and the next backfill should be looked at."""
        pending = store.outstanding(
            conn, backfill_id=b.id, space=b.space, stale_seconds=self.stale_seconds
        )
        stale = [r for r in pending if r.stale]
        events = [self._event(b, r.image_id, r.attempts + 1) for r in stale]
        room = self.batch - len(pending)
        fresh = (
            store.candidates(
                conn,
                tenant_id=b.tenant_id,
                backfill_id=b.id,
                space=b.space,
                cursor=b.cursor,
                n=room,
            )
            if room > 0
            else []
        )
        if room > 0 and not fresh and b.cursor is not None:
            # The end: one more pass from the start, for images that reached 'indexed'
            # behind the cursor.
            store.set_cursor(conn, backfill_id=b.id, cursor=None)
            return None
        if not pending and not fresh:
            store.finish(conn, backfill_id=b.id)
            log.info("backfill %s (%s) done", b.id, b.space)
            return None
        events += [self._event(b, image_id, 1) for image_id in fresh]
        # Published before the items are committed: a crash in between leaves events whose
        # items the next top-up writes (same ids, so the broker drops repeats).
        for event in events:
            self._publisher().publish(event)
        for r in stale:
            store.requeue_item(conn, backfill_id=b.id, image_id=r.image_id)
        for image_id in fresh:
            store.add_item(conn, backfill_id=b.id, image_id=image_id)
        if fresh:
            store.set_cursor(conn, backfill_id=b.id, cursor=max(fresh))
        return len(events)

    def _event(self, b: BackfillRow, image_id: uuid.UUID, attempt: int) -> Event:
        event = make_event(
            types.IMAGE_REEMBED,
            ImageReembed(
                image_id=image_id,
                tenant_id=b.tenant_id,
                model=b.model,
                space=b.space,
                backfill_id=b.id,
            ),
            source="/deeplens/models",
        )
        event.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"reembed/{b.id}/{image_id}/{attempt}"))
        event.extensions["priority"] = "low"
        return event
