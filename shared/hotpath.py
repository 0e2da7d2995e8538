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
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, LiteralString, TypeVar

import psycopg

from shared.api_keys import KEY_BY_PREFIX, _hash, split_key
from shared.auth.keys import Claims, TokenKeys
from shared.auth.principal import Principal
from shared.db import Database, execute, fetch_one
from shared.errors import (
    DeepLensError,
    Forbidden,
    NotFound,
    QuotaExceeded,
    TransientError,
    Unauthorized,
)
from shared.http import PRINCIPAL_KEY, Message, Receive, Scope, Send, send_error
from shared.models import ApiKeyRow
from shared.usage import seconds_to_utc_midnight

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "deeplens_identity"
DATA_PLANE = ("/api/images",)
# Counted against the daily quota too, though not gated before the body: a user's own calls to
# the extract function (its internal callers present the platform's secret and are not counted).
METERED = (*DATA_PLANE, "/extract")
CONTROL_PLANE = ("/api/tenants", "/api/admin")  # where tenants, users and keys change
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
FLUSH_SECONDS = 0.2
BATCH = 16  # pending calls that wake the flusher early
MAX_PENDING = 32  # at most this many uncounted calls per tenant per process
EXACT_MARGIN = 64  # within this many calls of the limit, every call is counted in the DB
VERIFIED_MAX = 10_000  # verified access tokens remembered per process

ADD_CALLS: LiteralString = """
INSERT INTO usage_daily (tenant_id, day, api_calls) VALUES (%(t)s, %(day)s, %(n)s)
ON CONFLICT (tenant_id, day) DO UPDATE SET api_calls = usage_daily.api_calls + EXCLUDED.api_calls
RETURNING api_calls
"""
TENANT: LiteralString = """
SELECT status, max_api_calls_per_day FROM tenants WHERE id = %(t)s AND deleted_at IS NULL
"""
USER: LiteralString = """
SELECT tenant_id, role, is_active FROM users WHERE id = %(u)s AND deleted_at IS NULL
"""
KEYS_USED: LiteralString = """
UPDATE tenant_api_keys SET last_used_at = now() WHERE id = ANY(%(ids)s)
AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""


class NeedsDatabase(Exception):
    """The fast path cannot answer from memory; call again with ``db=True``."""


@dataclass
class TenantState:
    status: str
    max_api_calls_per_day: int


@dataclass
class UserState:
    tenant_id: uuid.UUID | None
    role: str
    is_active: bool


@dataclass
class Meter:
    day: date
    known: int | None = None  # the day's total in the database as of this process's last flush
    pending: int = 0
    over: bool = False
    flushing: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)


_MISSING = object()


class Gate:
    def __init__(self, db: Database, keys: Callable[[], TokenKeys], *, listen: bool = True):
        self.db, self._keys = db, keys
        self.lock = threading.Lock()
        self.tenants: dict[uuid.UUID, TenantState | None] = {}
        self.users: dict[uuid.UUID, UserState | None] = {}
        self.api_keys: dict[str, ApiKeyRow | None] = {}
        self.meters: dict[tuple[uuid.UUID, date], Meter] = {}
        self.keys_used: dict[uuid.UUID, float] = {}  # key id -> when last_used_at was written
        self.keys_to_touch: set[uuid.UUID] = set()
        self.verified: dict[str, Claims] = {}  # access token -> its verified claims
        self.epoch = 0
        self.listening = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._listen = listen
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

    def wait_listening(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.listening and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.listening

    # --- the identity cache -----------------------------------------------------------------
    def _cached(self, table: dict[Any, Any], key: Any, load: Callable[[], T], db: bool) -> T:
        with self.lock:
            if self.listening:
                hit = table.get(key, _MISSING)
                if hit is not _MISSING:
                    return hit  # type: ignore[no-any-return]
            epoch = self.epoch
        if not db:
            raise NeedsDatabase
        value = load()
        with self.lock:
            # A change committed while we read would have bumped the epoch: do not keep a
            # value that may predate it.
            if self.listening and self.epoch == epoch:
                table[key] = value
        return value

    def tenant(self, tenant_id: uuid.UUID, *, db: bool = True) -> TenantState:
        def load() -> TenantState | None:
            with self.db.one() as conn:
                return fetch_one(conn, TENANT, {"t": tenant_id}, table="tenants", row=TenantState)

        state = self._cached(self.tenants, tenant_id, load, db)
        if state is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        if state.status == "Suspended":
            raise Forbidden("this tenant is suspended", code="tenant_suspended")
        if state.status != "Active":
            raise Forbidden("this tenant is not active", code="tenant_inactive")
        return state

    def principal(self, api_key: str | None, token: str | None, *, db: bool = True) -> Principal:
        """Resolve credentials to a principal with current rights (raises 401)."""
        if api_key is not None:
            return self._api_key(api_key, db)
        assert token is not None
        claims = self.verified.get(token)
        if claims is None or claims.exp <= time.time():
            # Signature, algorithm, issuer, audience and expiry; a token seen before skips
            # the signature (same bytes, same answer) until it expires.
            claims = self._keys().verify(token)
            if len(self.verified) >= VERIFIED_MAX:
                self.verified.clear()
            self.verified[token] = claims
        user_id = uuid.UUID(claims.sub)

        def load() -> UserState | None:
            with self.db.one() as conn:
                return fetch_one(conn, USER, {"u": user_id}, table="users", row=UserState)

        user = self._cached(self.users, user_id, load, db)
        if user is None or not user.is_active:
            raise Unauthorized("this account is disabled", code="account_disabled")
        if str(user.tenant_id) != str(claims.tid) and not (
            user.tenant_id is None and not claims.tid
        ):
            raise Unauthorized("this token no longer matches its account", code="invalid_token")
        # The role is the account's current one, not the one the token was issued with.
        return Principal(tenant_id=user.tenant_id, role=user.role, user_id=user_id)

    def _api_key(self, key: str, db: bool) -> Principal:
        prefix = split_key(key)

        def load() -> ApiKeyRow | None:
            with self.db.one() as conn:
                return fetch_one(
                    conn, KEY_BY_PREFIX, {"prefix": prefix}, table="tenant_api_keys", row=ApiKeyRow
                )

        row = self._cached(self.api_keys, prefix, load, db)
        if (
            row is None
            or row.revoked_at is not None
            or not hmac.compare_digest(row.key_hash, _hash(key))
        ):
            raise Unauthorized("invalid API key", code="invalid_api_key")
        now = time.monotonic()
        if now - self.keys_used.get(row.id, -1e9) > 60:  # last_used_at: once a minute
            with self.lock:
                self.keys_used[row.id] = now
                self.keys_to_touch.add(row.id)
        return Principal(tenant_id=row.tenant_id, role="User", api_key_id=row.id)

    def _invalidate(self, payload: str) -> None:
        kind, _, key = payload.partition(":")
        with self.lock:
            self.epoch += 1
            try:
                if kind == "tenant":
                    tid = uuid.UUID(key)
                    self.tenants.pop(tid, None)
                    for (t, _), meter in self.meters.items():
                        if t == tid:
                            meter.over = False  # a raised limit applies at once
                elif kind == "user":
                    self.users.pop(uuid.UUID(key), None)
                elif kind == "apikey":
                    self.api_keys.pop(key, None)
                else:
                    self._clear()
            except ValueError:
                self._clear()

    def local_change(self) -> None:
        """A control-plane write just committed in this process: forget what may be stale."""
        with self.lock:
            self.epoch += 1
            self._clear()

    def _clear(self) -> None:
        self.tenants.clear()
        self.users.clear()
        self.api_keys.clear()
        for meter in self.meters.values():
            meter.over = False

    def _listener(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.db.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    with self.lock:
                        self.epoch += 1
                        self._clear()
                        self.listening = True
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self._invalidate(n.payload)
            except Exception:  # noqa: BLE001 - fall back to reading the database
                pass
            with self.lock:
                self.listening = False
                self.epoch += 1
                self._clear()
            if not self._stop.is_set():
                log.warning(
                    "identity LISTEN connection lost; reading the database until it is back"
                )
                self._stop.wait(1.0)

    # --- the API-call meter -----------------------------------------------------------------
    def admit(self, tenant_id: uuid.UUID, *, db: bool = True) -> None:
        """Count one data-plane call of an active tenant, or refuse it (403/404/429)."""
        state = self.tenant(tenant_id, db=db)
        limit = state.max_api_calls_per_day
        today = datetime.now(UTC).date()
        with self.lock:
            meter = self.meters.get((tenant_id, today))
            if meter is None:
                meter = self.meters[(tenant_id, today)] = Meter(today)
            if meter.over:
                raise _over(limit)
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
            raise _over(limit)

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
                    row = conn.execute(
                        ADD_CALLS, {"t": tenant_id, "day": meter.day, "n": n}
                    ).fetchone()
            except psycopg.errors.ForeignKeyViolation:
                return 0  # the tenant was purged
            except (psycopg.Error, DeepLensError) as exc:
                with self.lock:
                    meter.pending += n - extra  # counted next time
                raise TransientError("usage counter unavailable") from exc
            self.db_writes += 1
            total = int(row[0]) if row else 0
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
            meters = [m for (t, _), m in self.meters.items() if t == tenant_id and m.pending]
        for meter in meters:
            self._flush_meter(tenant_id, meter)

    def flush(self) -> None:
        """Write every pending count now (the flusher's job; tests and close call it)."""
        with self.lock:
            meters = [(k, m) for k, m in self.meters.items() if m.pending]
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
                execute(conn, KEYS_USED, {"ids": touch}, table="tenant_api_keys")

    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - retried on the next round
                log.warning("API-call flush failed; retrying", exc_info=True)


def _over(limit: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"the daily API call limit ({limit}) is reached",
        code="quota_api_calls",
        headers={"Retry-After": str(seconds_to_utc_midnight())},
    )


def credentials(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(API key, bearer token) from request headers (lower-case names)."""
    api_key = headers.get("x-api-key")
    auth = headers.get("authorization")
    token = auth[7:].strip() if auth and auth[:7].lower() == "bearer " else None
    if api_key is None and token is not None and token.startswith("dl_"):
        api_key, token = token, None
    return api_key, token


class QuotaGate:
    """ASGI middleware for the data plane: authenticate, check the tenant and count the call
    before the application (or its body parsing) runs. The principal is left in the request
    scope, where ``shared.http.authenticated`` finds it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], gate: Callable[[], Gate]):
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith(DATA_PLANE):
            if scope["method"] in SAFE_METHODS or not scope["path"].startswith(CONTROL_PLANE):
                await self.app(scope, receive, send)
                return
            # A change of rights made here applies to this process's next request even
            # before its NOTIFY comes back: drop the cache before the answer leaves.
            gate = self.gate()

            async def send_after_change(message: Message) -> None:
                if message["type"] == "http.response.start":
                    gate.local_change()
                await send(message)

            await self.app(scope, receive, send_after_change)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        api_key, token = credentials(headers)
        if api_key is None and token is None:
            await self.app(scope, receive, send)  # the route answers 401
            return
        gate = self.gate()
        try:
            try:
                principal = gate.principal(api_key, token, db=False)
                if principal.tenant_id is not None:
                    gate.admit(principal.tenant_id, db=False)
            except NeedsDatabase:
                from starlette.concurrency import run_in_threadpool

                principal = await run_in_threadpool(self._slow, gate, api_key, token)
        except DeepLensError as exc:
            await send_error(send, exc)
            return
        scope[PRINCIPAL_KEY] = principal  # never scope["state"]: hypercorn shares it
        await self.app(scope, receive, send)

    @staticmethod
    def _slow(gate: Gate, api_key: str | None, token: str | None) -> Principal:
        principal = gate.principal(api_key, token)
        if principal.tenant_id is not None:
            gate.admit(principal.tenant_id)
        return principal
