"""The instruments (module-level, one registry per process, as Prometheus client libraries
intend), the closed label sets, and metrics on/off for this process (shared/metrics/ says why
prometheus-client and which labels are allowed)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
