"""The platform's live status for system administrators, read from the same metrics a scrape
exposes (shared/metrics/): backlog, throughput, failures in the last hour and per-stage
latency. Rates need history, so the process serving the admin function samples the counters
every ``SAMPLE_EVERY`` seconds and keeps an hour of samples; a window shorter than asked for
(a process started minutes ago) is reported as such, never stretched.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shared import metrics
from shared.scrape import registry

if TYPE_CHECKING:
    from shared.db import Database

SAMPLE_EVERY = 15.0
HOUR = 3600.0
Key = tuple[str, tuple[tuple[str, str], ...]]
COUNTERS = (
    "deeplens_pipeline_stage_total",
    "deeplens_pipeline_stage_duration_seconds_bucket",
    "deeplens_upload_to_indexed_seconds_count",
    "deeplens_http_requests_total",
    "deeplens_events_delivered_total",
    "deeplens_events_dead_lettered_total",
    "deeplens_events_retried_total",
)
GAUGES = (
    "deeplens_broker_backlog_events",
    "deeplens_broker_oldest_pending_age_seconds",
    "deeplens_images",
    "deeplens_failed_events",
    "deeplens_tenants",
)


def read(db: Database | None) -> dict[Key, float]:
    """The samples the status needs, from one collection of the scrape registry."""
    out: dict[Key, float] = {}
    wanted = set(COUNTERS) | set(GAUGES)
    for family in registry(db).collect():
        for s in family.samples:
            if s.name in wanted:
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def total(samples: dict[Key, float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lab), v in samples.items()
        if n == name and all(dict(lab).get(k) == want for k, want in labels.items())
    )


def _by(samples: dict[Key, float], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, lab), v in samples.items():
        if n == name:
            key = dict(lab).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def quantile(buckets: Iterable[tuple[float, float]], q: float) -> float | None:
    """histogram_quantile over cumulative (upper bound, count) pairs, as Prometheus does."""
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            frac = (rank - lower_count) / width if width else 0.0
            return lower_bound + (bound - lower_bound) * frac
        lower_bound, lower_count = bound, count
    return lower_bound


class StatusService:
    def __init__(self, db: Database | None):
        self.db = db
        self.started = time.time()
        self.history: deque[tuple[float, dict[Key, float]]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Sample in the background so "the last hour" is an hour even when nobody looked."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="status-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            if self.db is not None and self.db.pool.closed:
                return  # the function stopped
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - the next tick tries again
                continue

    def sample(self) -> tuple[float, dict[Key, float]]:
        now, samples = time.time(), read(self.db)
        with self._lock:
            self.history.append((now, samples))
            while self.history and self.history[0][0] < now - HOUR - 2 * SAMPLE_EVERY:
                self.history.popleft()
        return now, samples

    def _before(self, now: float, seconds: float) -> tuple[float, dict[Key, float]]:
        """The newest sample at least ``seconds`` old, else the process start (all zero)."""
        with self._lock:
            older = [h for h in self.history if h[0] <= now - seconds]
        if older:
            return older[-1]
        return self.started, {}

    def status(self) -> dict[str, Any]:
        now, cur = self.sample()
        t_min, minute = self._before(now, 60)
        t_hour, hour = self._before(now, HOUR)
        window_min = max(1.0, now - t_min)

        def delta(old: dict[Key, float], name: str, **labels: str) -> float:
            return max(0.0, total(cur, name, **labels) - total(old, name, **labels))

        stages = []
        for stage in metrics.STAGE_NAMES:
            buckets = []
            for (n, lab), v in cur.items():
                d = dict(lab)
                if n == "deeplens_pipeline_stage_duration_seconds_bucket" and d["stage"] == stage:
                    before = hour.get((n, lab), 0.0)
                    buckets.append((float(d["le"]), v - before))
            p50, p95 = quantile(buckets, 0.5), quantile(buckets, 0.95)
            stages.append(
                {
                    "stage": stage,
                    "runs": delta(hour, "deeplens_pipeline_stage_total", stage=stage),
                    "failed": delta(
                        hour, "deeplens_pipeline_stage_total", stage=stage, outcome="failed"
                    )
                    + delta(hour, "deeplens_pipeline_stage_total", stage=stage, outcome="error"),
                    "p50Ms": None if p50 is None else round(p50 * 1000, 1),
                    "p95Ms": None if p95 is None else round(p95 * 1000, 1),
                }
            )
        http_5xx = sum(
            max(0.0, v - hour.get((n, lab), 0.0))
            for (n, lab), v in cur.items()
            if n == "deeplens_http_requests_total" and dict(lab)["status"].startswith("5")
        )
        return {
            "backlog": {
                "events": total(cur, "deeplens_broker_backlog_events"),
                "oldestSeconds": total(cur, "deeplens_broker_oldest_pending_age_seconds"),
                "byTrigger": _by(cur, "deeplens_broker_backlog_events", "trigger"),
            },
            "throughput": {
                "windowSeconds": round(window_min, 1),
                "indexedPerMinute": round(
                    delta(minute, "deeplens_upload_to_indexed_seconds_count") * 60 / window_min, 2
                ),
                "requestsPerSecond": round(
                    delta(minute, "deeplens_http_requests_total") / window_min, 2
                ),
                "deliveriesPerSecond": round(
                    delta(minute, "deeplens_events_delivered_total") / window_min, 2
                ),
            },
            "lastHour": {
                "windowSeconds": round(now - t_hour, 1),
                "pipelineFailures": sum(s["failed"] for s in stages),
                "deadLettered": delta(hour, "deeplens_events_dead_lettered_total"),
                "retried": delta(hour, "deeplens_events_retried_total"),
                "serverErrors": http_5xx,
                "indexed": delta(hour, "deeplens_upload_to_indexed_seconds_count"),
            },
            "stages": stages,
            "images": _by(cur, "deeplens_images", "status"),
            "failedEvents": total(cur, "deeplens_failed_events"),
            "tenants": _by(cur, "deeplens_tenants", "status"),
        }


_services: dict[int, StatusService] = {}


def service_for(db: Database) -> StatusService:
    """One status service (and sampler) per database pool of this process."""
    svc = _services.get(id(db))
    if svc is None or svc.db is not db:
        svc = _services[id(db)] = StatusService(db)
    return svc
