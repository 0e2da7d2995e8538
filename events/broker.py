"""The local broker used by ``deeplens up``: Knative Kafka Broker semantics in-process.

Durable (deliveries live in PostgreSQL before anyone is answered; a restart resumes), one
delivery per (event, trigger), at-least-once, each delivered through the function's real ASGI
CloudEvent handler; a reply event is routed back in, in the same transaction that marks the
delivery done. Failures retry with exponential backoff; after ``max_attempts`` the event goes to
the dead-letter function, which stores it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import httpx

from events.auth import sender_headers
from events.codec import Event, decode, encode_binary, from_json
from events.publisher import enqueue
from events.triggers import DEAD_LETTER_PATH, SWEEPER_PATH
from shared import metrics
from shared.config import Settings
from shared.db import Database, execute, fetch_all

log = logging.getLogger(__name__)

# Claiming pushes next_attempt_at out by the lease: a delivery whose process died is picked up
# again when the lease ends (that is the redelivery after a crash). Higher priority first: live
# work (0) is never queued behind background re-embedding (-1, see events.publisher.PRIORITY).
CLAIM: LiteralString = """
UPDATE broker_deliveries SET attempts = attempts + 1,
    next_attempt_at = now() + make_interval(secs => %(lease)s), updated_at = now()
WHERE id IN (SELECT id FROM broker_deliveries
             WHERE status = 'pending' AND next_attempt_at <= now()
             ORDER BY priority DESC, next_attempt_at, id LIMIT %(n)s FOR UPDATE SKIP LOCKED)
RETURNING id, event, subscriber, attempts
"""


@dataclass
class Delivery:
    id: int
    event: dict[str, Any]
    subscriber: str
    attempts: int


class LocalBroker:
    def __init__(
        self,
        db: Database,
        app: Any,
        settings: Settings,
        *,
        concurrency: int = 8,
        lease_seconds: float = 60.0,
        sweep_every: float = 15.0,
    ):
        self.db, self.app, self.settings = db, app, settings
        self.concurrency, self.lease = concurrency, lease_seconds
        self.sweep_every = sweep_every
        self._stop = threading.Event()
        self.wakeup = threading.Event()
        self._thread = threading.Thread(target=self._main, name="local-broker", daemon=True)
        self.delivered = 0

    def start(self, *, reclaim: bool = False) -> None:
        """Start delivering. ``reclaim``: this is the only broker on the database (local
        mode), so deliveries claimed by a previous process that died are due again now rather
        than when their lease ends."""
        if reclaim:
            with self.db.tx() as conn:
                n = execute(
                    conn,
                    "UPDATE broker_deliveries SET next_attempt_at = now()"
                    " WHERE status = 'pending' AND next_attempt_at > now()"
                    " AND attempts > 0",
                    table="broker_deliveries",
                )
            if n:
                log.info("reclaimed %d deliveries from a previous run", n)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.set()
        self._thread.join(timeout=10)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://broker.local", timeout=120
        ) as client:
            next_sweep = time.monotonic() + 2.0
            while not self._stop.is_set():
                try:
                    if time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + self.sweep_every
                        await self._tick(client)
                    batch = await asyncio.to_thread(self._claim)
                    if batch:
                        await asyncio.gather(*(self._deliver(client, d) for d in batch))
                        continue
                except Exception:  # noqa: BLE001 - the broker must outlive any one failure
                    log.exception("broker loop error")
                await asyncio.to_thread(self.wakeup.wait, 0.2)
                self.wakeup.clear()

    def _claim(self) -> list[Delivery]:
        with self.db.one() as conn:  # one statement: claim and lease atomically
            rows = fetch_all(
                conn,
                CLAIM,
                {"lease": self.lease, "n": self.concurrency},
                table="broker_deliveries",
                row=Delivery,
            )
        return rows

    async def _post(
        self,
        client: httpx.AsyncClient,
        path: str,
        event: Event,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers, body = encode_binary(event)
        headers.update(sender_headers(self.settings))
        headers.update(extra or {})
        return await client.post(path, headers=headers, content=body)

    async def _deliver(self, client: httpx.AsyncClient, d: Delivery) -> None:
        event = from_json(d.event)
        error: str
        try:
            r = await self._post(client, d.subscriber, event)
            if 200 <= r.status_code < 300:
                reply = decode(dict(r.headers), r.content) if "ce-type" in r.headers else None
                await asyncio.to_thread(self._done, d, reply)
                metrics.delivery("delivered", event.type, d.subscriber)
                self.delivered += 1
                return
            error = f"{r.status_code}: {r.text[:300]}"
        except Exception as exc:  # noqa: BLE001 - any failure is a failed attempt
            error = f"{type(exc).__name__}: {exc}"[:300]
        await self._failed(client, d, event, error)

    def _done(self, d: Delivery, reply: Event | None) -> None:
        with self.db.tx() as conn:
            execute(
                conn,
                "UPDATE broker_deliveries SET status = 'done', updated_at = now(),"
                " last_error = NULL WHERE id = %(id)s",
                {"id": d.id},
                table="broker_deliveries",
            )
            if reply is not None:
                enqueue(conn, reply)
        if reply is not None:
            self.wakeup.set()

    async def _failed(
        self, client: httpx.AsyncClient, d: Delivery, event: Event, error: str
    ) -> None:
        if d.attempts < self.settings.broker_max_attempts:
            backoff = self.settings.broker_backoff_seconds * 2 ** (d.attempts - 1)
            await asyncio.to_thread(self._retry_later, d, error, backoff)
            metrics.delivery("retried", event.type, d.subscriber)
            return
        # Exhausted: hand to the dead-letter function with Knative's error extensions.
        extra = {
            "ce-knativeerrordest": d.subscriber,
            "ce-knativeerrorcode": error[:3],
            "ce-knativeerrordata": error[:200],
            "ce-deeplensattempts": str(d.attempts),
        }
        try:
            r = await self._post(client, DEAD_LETTER_PATH, event, extra)
            ok = 200 <= r.status_code < 300
        except Exception:  # noqa: BLE001
            ok = False
        if ok:
            await asyncio.to_thread(self._dead, d, error)
            metrics.delivery("dead", event.type, d.subscriber)
        else:
            await asyncio.to_thread(self._retry_later, d, error, self.lease)

    def _retry_later(self, d: Delivery, error: str, delay: float) -> None:
        with self.db.tx() as conn:
            execute(
                conn,
                "UPDATE broker_deliveries SET last_error = %(e)s, updated_at = now(),"
                " next_attempt_at = now() + make_interval(secs => %(s)s) WHERE id = %(id)s",
                {"e": error, "s": delay, "id": d.id},
                table="broker_deliveries",
            )

    def _dead(self, d: Delivery, error: str) -> None:
        with self.db.tx() as conn:
            execute(
                conn,
                "UPDATE broker_deliveries SET status = 'dead', last_error = %(e)s,"
                " updated_at = now() WHERE id = %(id)s",
                {"e": error, "id": d.id},
                table="broker_deliveries",
            )

    async def _tick(self, client: httpx.AsyncClient) -> None:
        """What a PingSource does for the sweeper in production."""
        from events import types

        tick = Event(
            type=types.SWEEP_TICK,
            source="/deeplens/local-broker",
            data={"scheduledAt": datetime.now().isoformat()},
        )
        try:
            r = await self._post(client, SWEEPER_PATH, tick)
            if r.status_code >= 300:
                log.warning("sweeper tick answered %s", r.status_code)
        except Exception:  # noqa: BLE001
            log.exception("sweeper tick failed")
