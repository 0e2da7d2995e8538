"""Tier enforcement: API calls per tenant per UTC day, storage and user limits, and sign-in
throttling. Limits are read from the tenant row on every check, so an operator's change to one
tenant's limit takes effect at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import psycopg

from shared import metrics
from shared.db import Database, execute, fetch_one
from shared.errors import Forbidden, NotFound, PayloadTooLarge, QuotaExceeded
from shared.models import TenantRow

# Thumbnails are written after the upload answers; until then their bytes are reserved at this
# upper bound (two WebP thumbnails of at most 256 and 128 px at quality 80 stay below it).
THUMBNAIL_RESERVE = 64 * 1024

COUNT_CALL: LiteralString = """
WITH t AS (SELECT status, max_api_calls_per_day FROM tenants
           WHERE id = %(t)s AND deleted_at IS NULL),
counted AS (
    INSERT INTO usage_daily (tenant_id, day, api_calls)
    SELECT %(t)s, (now() AT TIME ZONE 'UTC')::date, 1 FROM t WHERE t.status = 'Active'
    ON CONFLICT (tenant_id, day) DO UPDATE SET api_calls = usage_daily.api_calls + 1
    RETURNING api_calls)
SELECT t.status, t.max_api_calls_per_day, (SELECT api_calls FROM counted) AS api_calls FROM t
"""
LOCK_TENANT: LiteralString = """
SELECT * FROM tenants WHERE id = %(t)s AND deleted_at IS NULL FOR UPDATE
"""
STORAGE_USED: LiteralString = """
SELECT coalesce(sum(size_bytes + CASE WHEN thumbnails_bytes > 0 THEN thumbnails_bytes
                                      ELSE %(reserve)s END), 0)::bigint AS n
FROM images WHERE tenant_id = %(t)s AND deleted_at IS NULL AND status <> 'failed'
"""
USERS_USED: LiteralString = """
SELECT count(*) AS n FROM users WHERE tenant_id = %(t)s AND deleted_at IS NULL AND is_active
"""


@dataclass
class Count:
    n: int


@dataclass
class Calls:
    status: str
    max_api_calls_per_day: int
    api_calls: int | None


def seconds_to_utc_midnight(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()) + 1)


def check_tenant_active(tenant: TenantRow | None) -> TenantRow:
    if tenant is None:
        raise NotFound("tenant not found", code="tenant_not_found")
    if tenant.status == "Suspended":
        raise Forbidden("this tenant is suspended", code="tenant_suspended")
    if tenant.status != "Active":
        raise Forbidden("this tenant is not active", code="tenant_inactive")
    return tenant


class UsageService:
    def __init__(self, db: Database):
        self.db = db

    @metrics.counts_quota
    def count_call(self, tenant_id: uuid.UUID) -> None:
        """Count one API call (atomically, in PostgreSQL) and refuse it past the daily limit
        with 429 + Retry-After to the next UTC midnight; refuse suspended tenants."""
        # One statement, one round trip (this runs on every authenticated request): the
        # upsert is atomic, and suspended tenants are not counted.
        with self.db.one() as conn:
            row = fetch_one(conn, COUNT_CALL, {"t": tenant_id}, table="usage_daily", row=Calls)
        if row is None:
            raise NotFound("tenant not found", code="tenant_not_found")
        if row.status == "Suspended":
            raise Forbidden("this tenant is suspended", code="tenant_suspended")
        if row.status != "Active":
            raise Forbidden("this tenant is not active", code="tenant_inactive")
        assert row.api_calls is not None
        if row.api_calls > row.max_api_calls_per_day:
            raise QuotaExceeded(
                f"the daily API call limit ({row.max_api_calls_per_day}) is reached",
                code="quota_api_calls",
                headers={"Retry-After": str(seconds_to_utc_midnight())},
            )

    @staticmethod
    def lock_tenant(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> TenantRow:
        """Inside the caller's transaction: lock the (active) tenant row, so uploads and user
        changes of one tenant serialise on their quota checks."""
        return check_tenant_active(
            fetch_one(conn, LOCK_TENANT, {"t": tenant_id}, table="tenants", row=TenantRow)
        )

    @staticmethod
    @metrics.counts_quota
    def check_storage(conn: psycopg.Connection[Any], tenant: TenantRow, new_bytes: int) -> None:
        """Refuse with 413 quota_storage when an upload would pass the limit (call with the
        tenant row locked; the caller inserts the image row in the same transaction)."""
        used = fetch_one(
            conn,
            STORAGE_USED,
            {"t": tenant.id, "reserve": THUMBNAIL_RESERVE},
            table="images",
            row=Count,
        )
        total = (used.n if used else 0) + new_bytes + THUMBNAIL_RESERVE
        if total > tenant.max_storage_bytes:
            raise PayloadTooLarge(
                f"this upload would pass the storage limit of {tenant.max_storage_bytes} bytes",
                code="quota_storage",
            )

    @staticmethod
    @metrics.counts_quota
    def reserve_user(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> TenantRow:
        tenant = UsageService.lock_tenant(conn, tenant_id)
        used = fetch_one(conn, USERS_USED, {"t": tenant_id}, table="users", row=Count)
        if used is not None and used.n >= tenant.max_users:
            raise Forbidden(
                f"this tenant's plan allows {tenant.max_users} users", code="quota_users"
            )
        return tenant


class LoginThrottle:
    """Failed sign-ins within a sliding window, counted three ways:

    - per account AND client address (``pair``): past ``per_account`` the pair is refused
      (429). Only the address that failed is refused, so nobody elsewhere can lock the real
      owner out of an account;
    - per client address: past ``per_address`` (any accounts) the address is refused;
    - per account, from any address: no refusal, a progressive delay instead (doubling per
      failure past ``per_account``, capped), so a distributed guesser is slowed to a crawl
      while the owner, with the right password, still gets in.

    The account key is the email as typed, whether or not such an account exists, so a 429 or
    a delay says nothing about which emails are registered. Addresses come from
    shared/clientip.py (forwarded headers only from trusted proxies).
    """

    base_delay = 0.25
    max_delay = 4.0

    def __init__(self, db: Database, *, per_account: int, per_address: int, window: float):
        self.db, self.per_account, self.per_address = db, per_account, per_address
        self.window = window

    def _count(self, conn: psycopg.Connection[Any], scope: str, key: str, limit: int) -> Any:
        return conn.execute(
            "SELECT count(*), min(failed_at) FROM (SELECT failed_at FROM login_failures"
            " WHERE scope = %(s)s AND key = %(k)s"
            " AND failed_at > now() - make_interval(secs => %(w)s)"
            " ORDER BY failed_at DESC LIMIT %(l)s) recent",
            {"s": scope, "k": key, "w": self.window, "l": limit},
        ).fetchone()

    def check(self, email: str, address: str | None) -> None:
        with self.db.tx() as conn:
            for scope, key, limit in self._keys(email, address):
                row = self._count(conn, scope, key, limit)
                if row is not None and row[0] >= limit:
                    oldest: datetime = row[1]
                    retry = (oldest + timedelta(seconds=self.window)) - datetime.now(UTC)
                    raise QuotaExceeded(
                        "too many failed sign-ins; try again later",
                        code="login_throttled",
                        headers={"Retry-After": str(max(1, int(retry.total_seconds()) + 1))},
                    )

    def delay(self, email: str) -> float:
        """Seconds to wait before answering a sign-in for this account (0 when it is quiet)."""
        cap = self.per_account + 16
        with self.db.tx() as conn:
            row = self._count(conn, "account", _account(email), cap)
        failures = int(row[0]) if row else 0
        if failures < self.per_account:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (failures - self.per_account)))

    def failed(self, email: str, address: str | None) -> None:
        with self.db.tx() as conn:
            keys = [(s, k) for s, k, _ in self._keys(email, address)]
            keys.append(("account", _account(email)))
            for scope, key in keys:
                execute(
                    conn,
                    "INSERT INTO login_failures (scope, key) VALUES (%(s)s, %(k)s)",
                    {"s": scope, "k": key},
                    table="login_failures",
                )
            # Old rows are useless; trimming here keeps the table small without a job.
            execute(
                conn,
                "DELETE FROM login_failures WHERE failed_at < now() - make_interval("
                "secs => %(w)s) AND scope <> 'signup' AND id IN (SELECT id FROM login_failures"
                " ORDER BY id LIMIT 100)",
                {"w": self.window * 2},
                table="login_failures",
            )

    def succeeded(self, email: str, address: str | None = None) -> None:
        with self.db.tx() as conn:
            execute(
                conn,
                "DELETE FROM login_failures WHERE (scope = 'account' AND key = %(k)s)"
                " OR (scope = 'pair' AND key = %(p)s)",
                {"k": _account(email), "p": _pair(email, address)},
                table="login_failures",
            )

    def _keys(self, email: str, address: str | None) -> list[tuple[str, str, int]]:
        keys = [("pair", _pair(email, address), self.per_account)]
        if address:
            keys.append(("address", address, self.per_address))
        return keys


def _account(email: str) -> str:
    return email.strip().lower()


def _pair(email: str, address: str | None) -> str:
    return f"{_account(email)}|{address or '-'}"


class SignupLimiter:
    """Public sign-ups per client address per hour (429 ``signup_throttled`` past it)."""

    window = 3600.0

    def __init__(self, db: Database, *, per_hour: int):
        self.db, self.per_hour = db, per_hour

    def take(self, address: str | None) -> None:
        if not address or self.per_hour <= 0:
            return
        with self.db.tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(724002, hashtext(%(k)s))", {"k": address})
            row = conn.execute(
                "SELECT count(*), min(failed_at) FROM login_failures WHERE scope = 'signup'"
                " AND key = %(k)s AND failed_at > now() - make_interval(secs => %(w)s)",
                {"k": address, "w": self.window},
            ).fetchone()
            if row is not None and row[0] >= self.per_hour:
                retry = (row[1] + timedelta(seconds=self.window)) - datetime.now(UTC)
                raise QuotaExceeded(
                    "too many sign-ups from this address; try again later",
                    code="signup_throttled",
                    headers={"Retry-After": str(max(1, int(retry.total_seconds()) + 1))},
                )
            execute(
                conn,
                "INSERT INTO login_failures (scope, key) VALUES ('signup', %(k)s)",
                {"k": address},
                table="login_failures",
            )
