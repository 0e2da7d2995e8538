"""Prometheus metrics: the instruments (instruments.py), the decorators (decorators.py) and
recorders (record.py) shared/ calls; the scrape is shared/scrape.py.

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

from shared.metrics.decorators import (
    counts_logins,
    counts_quota,
    counts_refreshes,
    stage,
    timed_search,
)
from shared.metrics.instruments import (
    DB_DURATION,
    DEAD,
    DELIVERED,
    EXTRACT_BATCH,
    EXTRACT_DURATION,
    EXTRACTED,
    FAST,
    HTTP_DURATION,
    HTTP_REQUESTS,
    LOGIN_RESULTS,
    LOGINS,
    POOL,
    POOL_WAITING,
    PUBLISHED,
    QUOTA_KINDS,
    QUOTA_REFUSALS,
    REFRESH_REUSE,
    REFRESHES,
    RETRIED,
    SEARCH_DURATION,
    SEARCH_RESULTS,
    SLOW,
    STAGE_DURATION,
    STAGE_NAMES,
    STAGES,
    THROTTLED,
    UPLOAD_TO_INDEXED,
    configure,
    enabled,
    init_labels,
)
from shared.metrics.record import (
    db_statement,
    delivery,
    extracted,
    indexed_after,
    published,
    trigger_names,
)

__all__ = [
    "configure",
    "counts_logins",
    "counts_quota",
    "counts_refreshes",
    "db_statement",
    "delivery",
    "enabled",
    "extracted",
    "indexed_after",
    "init_labels",
    "published",
    "stage",
    "timed_search",
    "trigger_names",
    "DB_DURATION",
    "DEAD",
    "DELIVERED",
    "EXTRACTED",
    "EXTRACT_BATCH",
    "EXTRACT_DURATION",
    "FAST",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "LOGINS",
    "LOGIN_RESULTS",
    "POOL",
    "POOL_WAITING",
    "PUBLISHED",
    "QUOTA_KINDS",
    "QUOTA_REFUSALS",
    "REFRESHES",
    "REFRESH_REUSE",
    "RETRIED",
    "SEARCH_DURATION",
    "SEARCH_RESULTS",
    "SLOW",
    "STAGES",
    "STAGE_DURATION",
    "STAGE_NAMES",
    "THROTTLED",
    "UPLOAD_TO_INDEXED",
]
