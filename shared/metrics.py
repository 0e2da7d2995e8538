"""Prometheus metrics: the instruments, the helpers shared/ calls, and the scrape.

Why prometheus-client and not the OpenTelemetry metrics SDK: the local runtime runs one
process per function, and the platform's ``/metrics`` must add them up whichever process
answers the scrape. prometheus-client's multiprocess mode does exactly that (each process
writes its samples to mmap files under ``PROMETHEUS_MULTIPROC_DIR``; any process reads them
all), while the OTel SDK would need a collector beside the platform. It is also the cheaper
hot path (a counter increment is a lock and an add; no attribute dicts per call). Traces stay
on OpenTelemetry (shared/telemetry.py).

Label rule (tested): label values come from small closed sets — route templates, methods,
status codes, event types, trigger names, stages, outcomes, table names, tenant status/tier.
Never a tenant id, user id, image id, email or event id: per-tenant figures belong to
analytics (``GET /api/tenants/{id}/analytics``), not to Prometheus.

The instruments are module-level, as Prometheus client libraries intend (one registry per
process); nothing here opens a resource at import.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("deeplens.pipeline")
P = ParamSpec("P")
R = TypeVar("R")

FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# --- HTTP (RED per route template) -------------------------------------------------------
HTTP_REQUESTS = Counter(
    "deeplens_http_requests_total", "HTTP requests", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "deeplens_http_request_duration_seconds",
    "HTTP request duration",
    ["route", "method", "status"],
    buckets=FAST,
)
# --- identity ----------------------------------------------------------------------------
LOGINS = Counter("deeplens_login_attempts_total", "Password sign-in attempts", ["result"])
REFRESHES = Counter("deeplens_token_refreshes_total", "Refresh-token rotations", ["result"])
REFRESH_REUSE = Counter(
    "deeplens_refresh_token_reuse_total", "Rotated refresh tokens presented again"
)
THROTTLED = Counter("deeplens_login_throttled_total", "Sign-ins refused by the throttle")
QUOTA_REFUSALS = Counter("deeplens_quota_refusals_total", "Requests refused by quota", ["kind"])
# --- database ----------------------------------------------------------------------------
DB_DURATION = Histogram(
    "deeplens_db_query_duration_seconds",
    "Database statement duration",
    ["table", "operation"],
    buckets=FAST,
)
POOL = Gauge(
    "deeplens_db_pool_connections",
    "Pool connections by state",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "deeplens_db_pool_waiting", "Requests waiting for a connection", multiprocess_mode="livesum"
)
# --- pipeline ----------------------------------------------------------------------------
STAGE_DURATION = Histogram(
    "deeplens_pipeline_stage_duration_seconds", "Pipeline stage duration", ["stage"], buckets=SLOW
)
STAGES = Counter(
    "deeplens_pipeline_stage_total", "Pipeline stage runs by outcome", ["stage", "outcome"]
)
UPLOAD_TO_INDEXED = Histogram(
    "deeplens_upload_to_indexed_seconds", "Upload to searchable latency", buckets=SLOW
)
# --- broker ------------------------------------------------------------------------------
PUBLISHED = Counter("deeplens_events_published_total", "Events published", ["type"])
DELIVERED = Counter(
    "deeplens_events_delivered_total", "Events delivered (2xx)", ["type", "trigger"]
)
RETRIED = Counter(
    "deeplens_events_retried_total", "Failed deliveries scheduled again", ["type", "trigger"]
)
DEAD = Counter(
    "deeplens_events_dead_lettered_total", "Deliveries that exhausted retries", ["type", "trigger"]
)
# --- extraction and search ---------------------------------------------------------------
EXTRACT_BATCH = Histogram(
    "deeplens_extract_batch_size", "Images per model call", buckets=(1, 2, 4, 8, 16, 32, 64)
)
EXTRACT_DURATION = Histogram(
    "deeplens_extract_model_duration_seconds", "Model call duration", ["model"], buckets=FAST
)
EXTRACTED = Counter("deeplens_extract_images_total", "Images embedded", ["model"])
SEARCH_DURATION = Histogram(
    "deeplens_search_duration_seconds", "Similarity search duration", ["kind"], buckets=FAST
)
SEARCH_RESULTS = Histogram(
    "deeplens_search_results", "Results per search", buckets=(0, 1, 2, 5, 10, 20, 50, 100)
)

# Login results by error code; anything else is "error".
LOGIN_RESULTS = {
    "invalid_credentials": "failure",
    "login_throttled": "throttled",
    "account_disabled": "disabled",
    "tenant_suspended": "disabled",
    "tenant_required": "ambiguous",
}
QUOTA_KINDS = {"quota_api_calls": "api_calls", "quota_storage": "storage", "quota_users": "users"}

STAGE_NAMES = ("process-image", "extract", "index-vector")
_state = {"on": True, "labels": False}


def enabled() -> bool:
    return _state["on"]


def configure(on: bool) -> None:
    """Metrics on or off for this process (``DEEPLENS_METRICS``; off only for benchmarks)."""
    _state["on"] = on
    if on and not _state.get("labels"):
        _state["labels"] = True
        init_labels()


def init_labels() -> None:
    """Create every child of the closed label sets at zero, so each series exists from the
    first scrape (rate() and absent-alerts need a zero to start from; the dashboards'
    queries always have something to read)."""
    from events import types
    from events.triggers import TRIGGERS

    for result in {"success", "error", *LOGIN_RESULTS.values()}:
        LOGINS.labels(result)
    for result in ("success", "failure", "reused"):
        REFRESHES.labels(result)
    for kind in QUOTA_KINDS.values():
        QUOTA_REFUSALS.labels(kind)
    for name in STAGE_NAMES:
        STAGE_DURATION.labels(name)
        for outcome in ("ok", "failed", "skipped", "error"):
            STAGES.labels(name, outcome)
    for event_type in types.ALL:
        PUBLISHED.labels(event_type)
    for t in TRIGGERS:
        for metric in (DELIVERED, RETRIED, DEAD):
            metric.labels(t.event_type, t.name)
    for kind in ("image", "vector"):
        SEARCH_DURATION.labels(kind)


# --- helpers shared/ calls (one line at each call site) ----------------------------------
def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None


def counts_logins(fn: Callable[P, R]) -> Callable[P, R]:
    """Count a sign-in method's outcome by result (success, failure, throttled, …)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            if _state["on"]:
                code = _code(exc)
                LOGINS.labels(LOGIN_RESULTS.get(code or "", "error")).inc()
                if code == "login_throttled":
                    THROTTLED.inc()
            raise
        if _state["on"]:
            LOGINS.labels("success").inc()
        return out

    return wrapper


def counts_refreshes(fn: Callable[P, R]) -> Callable[P, R]:
    """Count refresh-token rotations; a reused token is counted apart (a leak signal)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            if _state["on"]:
                reused = _code(exc) == "refresh_token_reused"
                REFRESHES.labels("reused" if reused else "failure").inc()
                if reused:
                    REFRESH_REUSE.inc()
            raise
        if _state["on"]:
            REFRESHES.labels("success").inc()
        return out

    return wrapper


def counts_quota(fn: Callable[P, R]) -> Callable[P, R]:
    """Count quota refusals (api_calls, storage, users) raised by the wrapped check."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            kind = QUOTA_KINDS.get(_code(exc) or "")
            if kind is not None and _state["on"]:
                QUOTA_REFUSALS.labels(kind).inc()
            raise

    return wrapper


def stage(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Time a pipeline stage and count its outcome: ok (replied with the next event),
    failed (replied image.failed), skipped (nothing to do: a redelivery or a deleted image),
    error (raised; the broker retries)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            t0 = time.perf_counter()
            outcome = "error"
            try:
                out = fn(*args, **kwargs)
                event_type = getattr(out, "type", None)
                if out is None:
                    outcome = "skipped"
                elif isinstance(event_type, str) and event_type.endswith(".image.failed.v1"):
                    outcome = "failed"
                else:
                    outcome = "ok"
                return out
            finally:
                seconds = time.perf_counter() - t0
                if _state["on"]:
                    STAGE_DURATION.labels(name).observe(seconds)
                    STAGES.labels(name, outcome).inc()
                # One line per stage run; the event and tenant ids come from the log context.
                log.info("%s %s in %.1f ms", name, outcome, seconds * 1000)

        return wrapper

    return decorate


def timed_search(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Search latency by kind (image: embed + query; vector: query); result counts."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _state["on"]:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            SEARCH_DURATION.labels(kind).observe(time.perf_counter() - t0)
            results = out[0] if isinstance(out, tuple) else out  # (results, which space)
            if isinstance(results, list):
                SEARCH_RESULTS.observe(len(results))
            return out

        return wrapper

    return decorate


def db_statement(table: str, operation: str, seconds: float) -> None:
    if _state["on"]:
        DB_DURATION.labels(table, operation).observe(seconds)


def extracted(model: str, images: int, seconds: float) -> None:
    if _state["on"]:
        EXTRACT_BATCH.observe(images)
        EXTRACT_DURATION.labels(model).observe(seconds)
        EXTRACTED.labels(model).inc(images)


def indexed_after(seconds: float) -> None:
    if _state["on"]:
        UPLOAD_TO_INDEXED.observe(max(0.0, seconds))


def _trigger(subscriber: str) -> str:
    from events.triggers import TRIGGERS

    for t in TRIGGERS:
        if t.path == subscriber:
            return t.name
    return subscriber.rsplit("/", 1)[-1] or "unknown"


def trigger_names() -> set[str]:
    from events.triggers import TRIGGERS

    return {t.name for t in TRIGGERS}


def published(event_type: str) -> None:
    if _state["on"]:
        PUBLISHED.labels(event_type).inc()


def delivery(outcome: str, event_type: str, subscriber: str) -> None:
    """A broker delivery's fate: delivered, retried or dead (by event type and trigger)."""
    if _state["on"]:
        metric = {"delivered": DELIVERED, "retried": RETRIED, "dead": DEAD}[outcome]
        metric.labels(event_type, _trigger(subscriber)).inc()
