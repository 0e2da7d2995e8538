"""The broker's delivery loop: Knative Kafka Broker semantics on PostgreSQL.

Durable (deliveries live in PostgreSQL before anyone is answered; a restart resumes), one
delivery per (event, trigger), at-least-once, each delivered in CloudEvents binary mode with the
sender headers of events/auth.py; a reply event is routed back in, in the same transaction that
marks the delivery done. Failures retry with exponential backoff; after ``max_attempts`` the
event goes to the dead-letter function, which stores it.

``LocalBroker`` posts through the in-process ASGI app (``--single-process``); its subclass
``HttpBroker`` (events/http_broker.py) posts over HTTP to function processes. The queue's SQL is
in shared/store/deliveries.py. Publishers NOTIFY ``deeplens_broker`` in their transaction, so a
delivery starts at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import datetime
from typing import Any

import httpx

from events.auth import sender_headers
from events.codec import Event, decode, encode_binary, from_json
from events.publisher import enqueue
from events.triggers import DEAD_LETTER_PATH, SWEEPER_PATH
from shared import metrics
from shared.config import Settings
from shared.db import Database
from shared.store import deliveries
from shared.store.deliveries import Delivery

log = logging.getLogger(__name__)

# (subscribers, n, r): claim at most n deliveries for these subscribers (one set of
# replicas), at most n - r of them below live priority.
Budgets = list[tuple[list[str], int, int]]


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
        self._listener: threading.Thread | None = None
        self.sender = sender_headers(settings)
        self.delivered = 0

    def start(self, *, reclaim: bool = False) -> None:
        """Start delivering. ``reclaim``: this is the only broker on the database (local
        mode), so deliveries claimed by a previous process that died are due again now rather
        than when their lease ends."""
        if reclaim:
            with self.db.tx() as conn:
                n = deliveries.reclaim(conn)
            if n:
                log.info("reclaimed %d deliveries from a previous run", n)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wakeup.set()
        self._thread.join(timeout=10)
        if self._listener is not None:
            self._listener.join(timeout=3)

    def _main(self) -> None:
        asyncio.run(self._run())

    def _client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://broker.local", timeout=120)

    def _slots(self, busy: int) -> tuple[int, Budgets | None]:
        """How many deliveries to claim now, and how many at most for each group of
        subscribers (None: any subscriber)."""
        return self.concurrency - busy, None

    async def _run(self) -> None:
        self._listener = threading.Thread(target=self._listen, name="broker-listen", daemon=True)
        self._listener.start()
        inflight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            inflight.discard(task)
            self.wakeup.set()
            exc = None if task.cancelled() else task.exception()
            if exc is not None:
                # Its outcome could not be recorded (the database is away): the delivery
                # stays pending and its lease redelivers it.
                log.warning(
                    "delivery not recorded (%s: %s); redelivered after its lease",
                    type(exc).__name__,
                    str(exc)[:200],
                )

        async with self._client() as client:
            next_sweep = time.monotonic() + 2.0
            while not self._stop.is_set():
                try:
                    if time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + self.sweep_every
                        tick = asyncio.create_task(self._tick(client))
                        inflight.add(tick)
                        tick.add_done_callback(finished)
                    n, budgets = self._slots(len(inflight))
                    batch = await asyncio.to_thread(self._claim, n, budgets) if n > 0 else []
                    for d in batch:
                        task = asyncio.create_task(self._deliver(client, d))
                        inflight.add(task)
                        task.add_done_callback(finished)
                    if batch:
                        # Let the new deliveries take their replica slots before the free
                        # ones are counted again (else the next claim counts them twice).
                        await asyncio.sleep(0)
                        continue
                except Exception:  # noqa: BLE001 - the broker must outlive any one failure
                    log.exception("broker loop error")
                await asyncio.to_thread(self.wakeup.wait, 0.2)
                self.wakeup.clear()
            # Deliveries still in flight finish or time out; their leases redeliver them.
            if inflight:
                await asyncio.wait(inflight, timeout=5)

    def _listen(self) -> None:
        """Wake the loop when any process publishes (LISTEN/NOTIFY); the loop also polls."""
        while not self._stop.is_set():
            try:
                with deliveries.listener(self.db.url) as conn:
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self.wakeup.set()
            except Exception:  # noqa: BLE001 - the poll still runs; retry the listener
                if not self._stop.is_set():
                    log.warning("broker LISTEN connection lost; reconnecting")
                    self._stop.wait(1.0)

    def _claim(self, n: int, budgets: Budgets | None = None) -> list[Delivery]:
        """Highest priority first (events/publisher.PRIORITY)."""
        with self.db.one() as conn:  # one statement: claim and lease atomically
            if budgets is None:
                return deliveries.claim(conn, n=n, lease=self.lease, subscribers=None)
            return deliveries.claim_groups(conn, budgets=budgets, lease=self.lease)

    async def _post(
        self,
        client: httpx.AsyncClient,
        path: str,
        event: Event,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers, body = self._request(event, extra)
        return await client.post(path, headers=headers, content=body)

    def _request(self, event: Event, extra: dict[str, str] | None) -> tuple[dict[str, str], bytes]:
        """A binary-mode CloudEvent with the sender's credentials (and any extra headers)."""
        headers, body = encode_binary(event)
        headers.update(self.sender)
        headers.update(extra or {})
        return headers, body

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
            deliveries.done(conn, delivery_id=d.id)
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
            deliveries.retry_later(conn, delivery_id=d.id, error=error, delay=delay)

    def _dead(self, d: Delivery, error: str) -> None:
        with self.db.tx() as conn:
            deliveries.dead(conn, delivery_id=d.id, error=error)

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
