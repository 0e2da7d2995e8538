"""The authenticated hot path: who is calling, may they, and count the call — from memory.

Each process keeps
- an identity cache: API keys by prefix, users (role, active, tenant) and tenants (status,
  daily call limit). Entries are dropped the moment PostgreSQL NOTIFYs ``deeplens_identity``
  (migration 0007: triggers on every change that can take rights away), so a deactivated or
  demoted user, a revoked key or a suspended tenant loses its rights at once in every process
  (the NOTIFY's delivery time, milliseconds), not when a token expires. While the LISTEN
  connection is down nothing is cached: every request reads the database.
- an API-call meter per tenant and UTC day. Calls are counted in memory and flushed atomically
  (``api_calls = api_calls + n``, one statement per tenant) every ``FLUSH_SECONDS`` or when
  ``BATCH`` calls are pending. Near the limit (``EXACT_MARGIN`` calls left, as last seen) and
  on a process's first call of a tenant each call is counted in the database synchronously.
  A process never holds more than ``MAX_PENDING`` uncounted calls of a tenant, so the daily
  limit is exceeded by at most ``MAX_PENDING`` x (processes serving the data plane) calls
  (``deeplens up``: one process, so at most 32). Once a tenant is over, its calls are refused
  from memory — no database write, no body parsing — until UTC midnight or until its limit or
  status changes (NOTIFY).

Only the data plane (``/api/images/*``, search included) is metered: a tenant that used up its
calls can still sign in and read its usage and analytics. ``QuotaGate`` runs the check before
the application reads the request body.

The package: ``identity`` (the identity cache and its LISTEN), ``meter`` (``Gate``: the cache
plus the API-call meter), ``middleware`` (``QuotaGate`` and the credentials of a request),
``fastread`` (``FastRead``: ``GET /api/images/{id}`` answered in front of FastAPI).
"""

from shared.hotpath.identity import CHANNEL, NeedsDatabase
from shared.hotpath.meter import BATCH, EXACT_MARGIN, FLUSH_SECONDS, MAX_PENDING, Gate
from shared.hotpath.middleware import (
    CONTROL_PLANE,
    DATA_PLANE,
    METERED,
    SAFE_METHODS,
    QuotaGate,
    credentials,
)

__all__ = [
    "BATCH",
    "CHANNEL",
    "CONTROL_PLANE",
    "DATA_PLANE",
    "EXACT_MARGIN",
    "FLUSH_SECONDS",
    "MAX_PENDING",
    "METERED",
    "SAFE_METHODS",
    "Gate",
    "NeedsDatabase",
    "QuotaGate",
    "credentials",
]
