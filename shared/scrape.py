"""The scrape: what one ``GET /metrics`` reads. In multiprocess mode (the local runtime, one
process per function, ``PROMETHEUS_MULTIPROC_DIR`` shared) every process's samples, whichever
process answers; otherwise this process's. Plus gauges of the platform's state read from
PostgreSQL at scrape time, and the connection pools' use (the instruments: shared/metrics/).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector

from shared.config import metrics_multiprocess_dir
from shared.metrics import POOL, POOL_WAITING, trigger_names
from shared.store.stats import platform_state

if TYPE_CHECKING:
    from shared.db import Database


# --- pools and platform state (read at scrape time) --------------------------------------
_pools: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_pool(db: Database) -> None:
    _pools.add(db)


def sample_pools() -> None:
    in_use = idle = waiting = size = 0
    for db in list(_pools):
        try:
            stats = db.pool.get_stats()
        except Exception:  # noqa: BLE001 - a closed pool has nothing to say
            continue
        size += stats.get("pool_size", 0)
        idle += stats.get("pool_available", 0)
        waiting += stats.get("requests_waiting", 0)
    in_use = max(0, size - idle)
    POOL.labels("in_use").set(in_use)
    POOL.labels("idle").set(idle)
    POOL_WAITING.set(waiting)


class StateCollector(Collector):
    """Gauges of the platform's state, read from PostgreSQL at scrape time (cached a few
    seconds, so a busy status page does not multiply the queries): tenants by status and
    tier, images by status, broker backlog and the age of its oldest undelivered event,
    failed events awaiting replay. Rows are grouped by closed sets only."""

    def __init__(self, db: Database, ttl: float = 5.0):
        self.db, self.ttl = db, ttl
        self._cache: tuple[float, list[Metric]] | None = None
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] > self.ttl:
                self._cache = (now, self._read())
            return list(self._cache[1])

    def _read(self) -> list[Metric]:
        tenants = GaugeMetricFamily("deeplens_tenants", "Tenants", labels=["status", "tier"])
        images = GaugeMetricFamily(
            "deeplens_images", "Images by pipeline status", labels=["status"]
        )
        backlog = GaugeMetricFamily(
            "deeplens_broker_backlog_events", "Undelivered events", labels=["trigger"]
        )
        oldest = GaugeMetricFamily(
            "deeplens_broker_oldest_pending_age_seconds", "Age of the oldest undelivered event"
        )
        failed = GaugeMetricFamily("deeplens_failed_events", "Dead-lettered events awaiting replay")
        try:
            with self.db.pool.connection(timeout=2) as conn:
                state = platform_state(conn)
        except Exception:  # noqa: BLE001 - a scrape never fails on a database hiccup
            return []
        for (status, tier), n in state.tenants.items():
            tenants.add_metric([status, tier], n)
        for status, n in state.images.items():
            images.add_metric([status], n)
        for trigger in trigger_names() | set(state.pending):
            backlog.add_metric([trigger], state.pending.get(trigger, 0))
        oldest.add_metric([], state.oldest_pending_seconds)
        failed.add_metric([], state.failed_events)
        return [tenants, images, backlog, oldest, failed]


# --- the scrape --------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return metrics_multiprocess_dir()


def registry(db: Database | None = None) -> CollectorRegistry:
    """What one scrape reads: every process's samples in multiprocess mode (whichever process
    serves the scrape), this process's otherwise, plus the state gauges when a database is
    given."""
    sample_pools()
    if multiprocess_dir():
        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
    else:
        reg = CollectorRegistry(auto_describe=False)
        reg.register(_Forward(REGISTRY))
    if db is not None:
        reg.register(_state_collector(db))
    return reg


class _Forward(Collector):
    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


_collectors: weakref.WeakKeyDictionary[Any, StateCollector] = weakref.WeakKeyDictionary()


def _state_collector(db: Database) -> StateCollector:
    c = _collectors.get(db)
    if c is None:
        c = _collectors[db] = StateCollector(db)
    return c


def scrape(db: Database | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition of :func:`registry`."""
    return generate_latest(registry(db)), CONTENT_TYPE_LATEST
