"""The backfill: re-embedding jobs (a migration's target, a reindex), one per tenant and space,
run tenant by tenant in bounded batches through the extract function (``image.reembed`` at
low broker priority). The state is in PostgreSQL (``backfills``, ``backfill_items``,
``image_spaces``), so any crash resumes: the sweeper and each completed re-embedding call
``top_up``, and an image the space already holds is never queued again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg

from events import types
from events.codec import Event, make_event
from events.payloads import ImageReembed
from shared.db import Database, execute, fetch_dicts

if TYPE_CHECKING:
    from events.publisher import Publisher

log = logging.getLogger(__name__)
TOP_UP_LOCK = 724016
NEXT_BACKFILL: LiteralString = """
SELECT * FROM backfills WHERE state = 'running' ORDER BY created_at, id LIMIT 1
"""
# Queued, not failed, not yet held by the space, image still live.
OUTSTANDING: LiteralString = """
SELECT bi.image_id, bi.attempts, bi.queued_at < now() - make_interval(secs => %(stale)s) AS stale
FROM backfill_items bi JOIN images i ON i.id = bi.image_id AND i.deleted_at IS NULL
WHERE bi.backfill_id = %(b)s AND bi.failed_at IS NULL AND bi.done_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM image_spaces s WHERE s.image_id = bi.image_id
                  AND s.space = %(space)s)
"""
CANDIDATES: LiteralString = """
SELECT i.id FROM images i
WHERE i.tenant_id = %(t)s AND i.deleted_at IS NULL AND i.status = 'indexed'
  AND NOT EXISTS (SELECT 1 FROM image_spaces s WHERE s.image_id = i.id AND s.space = %(space)s)
  AND NOT EXISTS (SELECT 1 FROM backfill_items bi WHERE bi.backfill_id = %(b)s
                  AND bi.image_id = i.id)
  AND (%(cursor)s::uuid IS NULL OR i.id > %(cursor)s::uuid)
ORDER BY i.id LIMIT %(n)s
"""


class Backfiller:
    def __init__(
        self,
        db: Database,
        publisher: Callable[[], Publisher],
        *,
        batch: int = 4,
        stale_seconds: float = 600.0,
    ) -> None:
        self.db, self._publisher = db, publisher
        self.batch, self.stale_seconds = batch, stale_seconds

    def new_job(
        self, conn: psycopg.Connection[Any], tenant_id: uuid.UUID, ref: str, space: str, kind: str
    ) -> None:
        execute(
            conn,
            "UPDATE backfills SET state = 'cancelled', finished_at = now()"
            " WHERE tenant_id = %(t)s AND space = %(s)s AND state = 'running'",
            {"t": tenant_id, "s": space},
            table="backfills",
        )
        execute(
            conn,
            "INSERT INTO backfills (id, tenant_id, model, space, kind)"
            " VALUES (%(id)s, %(t)s, %(m)s, %(s)s, %(k)s)",
            {"id": uuid.uuid4(), "t": tenant_id, "m": ref, "s": space, "k": kind},
            table="backfills",
        )

    def top_up(self) -> int:
        """Queue the next bounded batch of the oldest running backfill (tenant by tenant);
        finish backfills with nothing left. Safe to call from anywhere, any number of times:
        one caller at a time does the work (an advisory lock), the rest return at once."""
        queued = 0
        with self.db.tx() as conn:
            got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (TOP_UP_LOCK,)).fetchone()
            if not got or not got[0]:
                return 0
            while True:
                found = fetch_dicts(conn, NEXT_BACKFILL, table="backfills")
                if not found:
                    break
                b = found[0]
                params = {"b": b["id"], "space": b["space"], "t": b["tenant_id"]}
                pending = fetch_dicts(
                    conn, OUTSTANDING, {**params, "stale": self.stale_seconds}, table="backfills"
                )
                events = [
                    self._event(b, r["image_id"], int(r["attempts"]) + 1)
                    for r in pending
                    if r["stale"]
                ]
                room = self.batch - len(pending)
                fresh = (
                    [
                        r["id"]
                        for r in fetch_dicts(
                            conn,
                            CANDIDATES,
                            {**params, "n": room, "cursor": b["cursor"]},
                            table="images",
                        )
                    ]
                    if room > 0
                    else []
                )
                if room > 0 and not fresh and b["cursor"] is not None:
                    # The end: one more pass from the start, for images that reached
                    # 'indexed' behind the cursor.
                    execute(
                        conn,
                        "UPDATE backfills SET cursor = NULL WHERE id = %(b)s",
                        params,
                        table="backfills",
                    )
                    continue
                if not pending and not fresh:
                    execute(
                        conn,
                        "UPDATE backfills SET state = 'done', finished_at = now() WHERE id = %(b)s",
                        params,
                        table="backfills",
                    )
                    log.info("backfill %s (%s) done", b["id"], b["space"])
                    continue
                events += [self._event(b, image_id, 1) for image_id in fresh]
                # Published before the items are committed: a crash in between leaves events
                # whose items the next top-up writes (same ids, so the broker drops repeats).
                for event in events:
                    self._publisher().publish(event)
                for r in pending:
                    if r["stale"]:
                        execute(
                            conn,
                            "UPDATE backfill_items SET attempts = attempts + 1, queued_at ="
                            " now() WHERE backfill_id = %(b)s AND image_id = %(i)s",
                            {"b": b["id"], "i": r["image_id"]},
                            table="backfill_items",
                        )
                for image_id in fresh:
                    execute(
                        conn,
                        "INSERT INTO backfill_items (backfill_id, image_id) VALUES (%(b)s, %(i)s)"
                        " ON CONFLICT DO NOTHING",
                        {"b": b["id"], "i": image_id},
                        table="backfill_items",
                    )
                if fresh:
                    execute(
                        conn,
                        "UPDATE backfills SET cursor = %(c)s WHERE id = %(b)s",
                        {"c": max(fresh), "b": b["id"]},
                        table="backfills",
                    )
                queued += len(events)
                break
        return queued

    def _event(self, b: dict[str, Any], image_id: uuid.UUID, attempt: int) -> Event:
        event = make_event(
            types.IMAGE_REEMBED,
            ImageReembed(
                image_id=image_id,
                tenant_id=b["tenant_id"],
                model=b["model"],
                space=b["space"],
                backfill_id=b["id"],
            ),
            source="/deeplens/models",
        )
        event.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"reembed/{b['id']}/{image_id}/{attempt}"))
        event.extensions["priority"] = "low"
        return event

    # --- status ----------------------------------------------------------------------------
