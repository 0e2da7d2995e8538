"""``Gate``: the identity cache plus the API-call meter of one process.

Calls are counted in memory per tenant and UTC day and flushed atomically (the one daily-usage
upsert, shared/store/usage.py) every ``FLUSH_SECONDS`` or when ``BATCH`` calls are pending.
Near the limit (``EXACT_MARGIN`` calls left, as last seen) and on a process's first call of a
tenant each call is counted in the database synchronously; a process never holds more than
``MAX_PENDING`` uncounted calls of a tenant.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import psycopg

from shared.auth.keys import TokenKeys
from shared.db import Database
from shared.errors import DeepLensError, TransientError
from shared.hotpath.identity import IdentityCache, NeedsDatabase
from shared.store import api_keys
from shared.store import usage as store
from shared.usage import over_quota

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.2
BATCH = 16  # pending calls that wake the flusher early
MAX_PENDING = 32  # at most this many uncounted calls per tenant per process
EXACT_MARGIN = 64  # within this many calls of the limit, every call is counted in the DB


@dataclass
class Meter:
    day: date
    known: int | None = None  # the day's total in the database as of this process's last flush
    pending: int = 0
    over: bool = False
    flushing: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)


class Gate(IdentityCache):
    def __init__(self, db: Database, keys: Callable[[], TokenKeys], *, listen: bool = True):
        super().__init__(db, keys, listen=listen)
        self.meters: dict[tuple[uuid.UUID, date], Meter] = {}
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self.db_writes = 0  # usage flushes and synchronous counts (tests and benchmarks read it)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        with self.lock:
            if self._started:
                return
            self._started = True
        targets = [self._flusher] + ([self._listener] if self._listen else [])
        for target in targets:
            t = threading.Thread(target=target, name=f"gate-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=3)
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the database may be gone already
            log.warning("could not flush API-call counts at close")

    # --- what the identity cache tells the meter -----------------------------------------
    def _tenant_changed(self, tenant_id: uuid.UUID) -> None:
        for (t, _), meter in self.meters.items():
            if t == tenant_id:
                meter.over = False  # a raised limit applies at once

    def _clear(self) -> None:
        super()._clear()
        for meter in self.meters.values():
            meter.over = False

    # --- the API-call meter -----------------------------------------------------------------
    def admit(self, tenant_id: uuid.UUID, *, db: bool = True) -> None:
        """Count one data-plane call of an active tenant, or refuse it (403/404/429)."""
        limit = self.tenant(tenant_id, db=db).max_api_calls_per_day
        today = datetime.now(UTC).date()
        with self.lock:
            meter = self.meters.get((tenant_id, today))
            if meter is None:
                meter = self.meters[(tenant_id, today)] = Meter(today)
            if meter.over:
                raise over_quota(limit)
            if (
                meter.known is not None
                and limit - (meter.known + meter.pending) > EXACT_MARGIN
                and meter.pending < MAX_PENDING
            ):
                meter.pending += 1
                if meter.pending >= BATCH:
                    self._wake.set()
                return
        if not db:
            raise NeedsDatabase
        total = self._flush_meter(tenant_id, meter, extra=1)
        if total > limit:
            with self.lock:
                meter.over = True
            raise over_quota(limit)

    def _flush_meter(self, tenant_id: uuid.UUID, meter: Meter, extra: int = 0) -> int:
        """Add the meter's pending calls (plus ``extra``) to the day's row; the new total."""
        with meter.cond:
            while meter.flushing:
                meter.cond.wait()
            meter.flushing = True
        try:
            with self.lock:
                n, meter.pending = meter.pending + extra, 0
            if n == 0:
                return meter.known or 0
            try:
                with self.db.one() as conn:
                    total = store.add(conn, tenant_id=tenant_id, day=meter.day, api_calls=n)
            except psycopg.errors.ForeignKeyViolation:
                return 0  # the tenant was purged
            except (psycopg.Error, DeepLensError) as exc:
                with self.lock:
                    meter.pending += n - extra  # counted next time
                raise TransientError("usage counter unavailable") from exc
            self.db_writes += 1
            with self.lock:
                meter.known = total
            return total
        finally:
            with meter.cond:
                meter.flushing = False
                meter.cond.notify_all()

    def flush_tenant(self, tenant_id: uuid.UUID) -> None:
        """Write this tenant's pending calls now (before a usage read in this process)."""
        with self.lock:
            meters = [
                m
                for (t, _), m in self.meters.items()
                if t == tenant_id and (m.pending or m.flushing)
            ]
        for meter in meters:
            self._flush_meter(tenant_id, meter)

    def flush(self) -> None:
        """Write every pending count now (the flusher's job; tests and close call it). A meter
        the flusher thread is writing is waited for: its calls are no longer pending, but not
        yet in the database either (a read right after this call must see them)."""
        with self.lock:
            meters = [(k, m) for k, m in self.meters.items() if m.pending or m.flushing]
            touch, self.keys_to_touch = list(self.keys_to_touch), set()
        today = datetime.now(UTC).date()
        for (tenant_id, day), meter in meters:
            total = self._flush_meter(tenant_id, meter)
            with self.lock:
                if day != today and not meter.pending:
                    self.meters.pop((tenant_id, day), None)  # a past day, all written
                    continue
                state = self.tenants.get(tenant_id)
                if state is not None and total > state.max_api_calls_per_day:
                    meter.over = True
        if touch:
            with self.db.one() as conn:
                api_keys.used(conn, key_ids=touch)

    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - retried on the next round
                log.warning("API-call flush failed; retrying", exc_info=True)
