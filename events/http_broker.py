"""``HttpBroker``: the broker delivering over HTTP to the function processes the supervisor
started (``deeplens up``): at most containerConcurrency deliveries in flight per replica, only
to replicas that are ready (a delivery for a function that is restarting waits in the table
rather than burning attempts).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from events.codec import Event
from events.delivery import Budgets, LocalBroker
from shared.config import Settings
from shared.db import Database

# A function whose replicas take at least this many deliveries at once keeps one slot free
# for live work (bulk uploads and backfills use the others).
LIVE_RESERVE_FROM = 4


@dataclass
class Replica:
    """One function process as the broker sees it (the supervisor keeps ``ready`` current)."""

    url: str
    concurrency: int
    ready: bool = False
    inflight: int = 0


class HttpBroker(LocalBroker):
    """The same broker, delivering over HTTP to function processes: ``targets`` maps a
    FUNCTION_TARGET to its replicas. Replicas are picked least-busy first."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        targets: dict[str, list[Replica]],
        *,
        lease_seconds: float = 60.0,
        sweep_every: float = 15.0,
        timeout: float = 300.0,
    ):
        super().__init__(db, None, settings, lease_seconds=lease_seconds, sweep_every=sweep_every)
        self.targets, self.timeout = targets, timeout

    def _client(self) -> httpx.AsyncClient:
        total = sum(r.concurrency for reps in self.targets.values() for r in reps) + 8
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=5.0),
            limits=httpx.Limits(max_connections=total, max_keepalive_connections=total),
        )

    def _slots(self, busy: int) -> tuple[int, Budgets | None]:  # noqa: ARG002 - per replica
        """Never more deliveries for a set of replicas than it has free slots: a delivery
        claimed beyond them would wait here, ahead of any higher-priority one queued later.
        A set of at least LIVE_RESERVE_FROM slots keeps its last free one for live work."""
        groups: dict[int, tuple[list[str], int, int]] = {}  # functions sharing replicas
        for fn, replicas in self.targets.items():
            ready = [r for r in replicas if r.ready]
            free = sum(max(0, r.concurrency - r.inflight) for r in ready)
            if free > 0:
                reserve = int(sum(r.concurrency for r in ready) >= LIVE_RESERVE_FROM)
                groups.setdefault(id(replicas), ([], free, reserve))[0].append(f"/events/{fn}")
        budgets = list(groups.values())
        return sum(n for _, n, _ in budgets), budgets

    async def _replica(self, fn: str) -> Replica:
        """The least busy ready replica with a free slot (waits for one)."""
        replicas = self.targets.get(fn)
        if not replicas:
            raise LookupError(f"no function process serves {fn}")
        while True:
            free = [r for r in replicas if r.ready and r.inflight < r.concurrency]
            if free:
                best = min(free, key=lambda r: r.inflight)
                best.inflight += 1
                return best
            if self._stop.is_set():
                raise RuntimeError("broker stopping")
            await asyncio.sleep(0.01)

    async def _post(
        self,
        client: httpx.AsyncClient,
        path: str,
        event: Event,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        replica = await self._replica(path.removeprefix("/events/"))
        headers, body = self._request(event, extra)
        try:
            return await client.post(replica.url + path, headers=headers, content=body)
        except httpx.TransportError:
            replica.ready = False  # it died or is restarting; the supervisor re-marks it
            raise
        finally:
            replica.inflight -= 1
