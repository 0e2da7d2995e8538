"""Tier enforcement: API calls per tenant per UTC day, storage and user limits, and sign-in
throttling. Limits are read from the tenant row on every check, so an operator's change to one
tenant's limit takes effect at once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from shared import metrics
from shared.db import Database
from shared.errors import Forbidden, PayloadTooLarge, QuotaExceeded
from shared.store import tenants, users
from shared.store import usage as store
from shared.store.tenants import TenantRow, check_active
from shared.store.usage import THUMBNAIL_RESERVE

__all__ = [
    "THUMBNAIL_RESERVE",
    "LoginThrottle",
    "SignupLimiter",
    "UsageService",
    "check_tenant_active",
    "over_quota",
    "seconds_to_utc_midnight",
]

# Transition: shared/images.py imports the check under this name (store.tenants.check_active).
check_tenant_active = check_active


def seconds_to_utc_midnight(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()) + 1)


def over_quota(limit: int) -> QuotaExceeded:
    """The 429 of a tenant past its daily API calls, retried at the next UTC midnight."""
    return QuotaExceeded(
        f"the daily API call limit ({limit}) is reached",
        code="quota_api_calls",
        headers={"Retry-After": str(seconds_to_utc_midnight())},
    )


def _retry_after(oldest: datetime | None, window: float) -> dict[str, str]:
    retry = ((oldest or datetime.now(UTC)) + timedelta(seconds=window)) - datetime.now(UTC)
    return {"Retry-After": str(max(1, int(retry.total_seconds()) + 1))}


class UsageService:
    def __init__(self, db: Database):
        self.db = db

    @metrics.counts_quota
    def count_call(self, tenant_id: uuid.UUID) -> None:
        """Count one API call (atomically, in PostgreSQL) and refuse it past the daily limit
        with 429 + Retry-After to the next UTC midnight; refuse suspended tenants (uncounted).
        The data plane counts in memory instead (shared/hotpath/); this is the exact path."""
        with self.db.tx() as conn:
            tenant = tenants.active(conn, tenant_id=tenant_id)
            calls = store.add(conn, tenant_id=tenant_id, api_calls=1)
        if calls > tenant.max_api_calls_per_day:
            raise over_quota(tenant.max_api_calls_per_day)

    @staticmethod
    def lock_tenant(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> TenantRow:
        """Inside the caller's transaction: lock the (active) tenant row, so uploads and user
        changes of one tenant serialise on their quota checks."""
        return tenants.lock_active(conn, tenant_id=tenant_id)

    @staticmethod
    @metrics.counts_quota
    def check_storage(conn: psycopg.Connection[Any], tenant: TenantRow, new_bytes: int) -> None:
        """Refuse with 413 quota_storage when an upload would pass the limit (call with the
        tenant row locked; the caller inserts the image row in the same transaction)."""
        used = store.storage_used(conn, tenant_id=tenant.id)
        if used + new_bytes + THUMBNAIL_RESERVE > tenant.max_storage_bytes:
            raise PayloadTooLarge(
                f"this upload would pass the storage limit of {tenant.max_storage_bytes} bytes",
                code="quota_storage",
            )

    @staticmethod
    @metrics.counts_quota
    def reserve_user(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> TenantRow:
        """Lock the tenant and refuse a user past its plan's limit (403 quota_users)."""
        return UsageService._users_within(conn, tenants.lock_active(conn, tenant_id=tenant_id))

    @staticmethod
    @metrics.counts_quota
    def check_users(conn: psycopg.Connection[Any], tenant_id: uuid.UUID) -> TenantRow:
        """The same refusal without the lock: a cheap check before a slow password hash."""
        tenant = tenants.check_active(tenants.get(conn, tenant_id=tenant_id))
        return UsageService._users_within(conn, tenant)

    @staticmethod
    def _users_within(conn: psycopg.Connection[Any], tenant: TenantRow) -> TenantRow:
        tenant_id = tenant.id
        if users.count_active(conn, tenant_id=tenant_id) >= tenant.max_users:
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

    def check(self, email: str, address: str | None) -> None:
        with self.db.tx() as conn:
            for scope, key, limit in self._keys(email, address):
                recent = store.recent_failures(
                    conn, scope=scope, key=key, window=self.window, limit=limit
                )
                if recent.n >= limit:
                    raise QuotaExceeded(
                        "too many failed sign-ins; try again later",
                        code="login_throttled",
                        headers=_retry_after(recent.oldest, self.window),
                    )

    def delay(self, email: str) -> float:
        """Seconds to wait before answering a sign-in for this account (0 when it is quiet)."""
        cap = self.per_account + 16
        with self.db.tx() as conn:
            recent = store.recent_failures(
                conn, scope="account", key=_account(email), window=self.window, limit=cap
            )
        if recent.n < self.per_account:
            return 0.0
        return float(min(self.max_delay, self.base_delay * 2 ** (recent.n - self.per_account)))

    def failed(self, email: str, address: str | None) -> None:
        with self.db.tx() as conn:
            keys = [(s, k) for s, k, _ in self._keys(email, address)]
            keys.append(("account", _account(email)))
            for scope, key in keys:
                store.record_failure(conn, scope=scope, key=key)
            # Old rows are useless; trimming here keeps the table small without a job.
            store.trim_failures(conn, older_than=self.window * 2)

    def succeeded(self, email: str, address: str | None = None) -> None:
        with self.db.tx() as conn:
            store.clear_failures(conn, account=_account(email), pair=_pair(email, address))

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
            recent = store.lock_signups(conn, address=address, window=self.window)
            if recent.n >= self.per_hour:
                raise QuotaExceeded(
                    "too many sign-ups from this address; try again later",
                    code="signup_throttled",
                    headers=_retry_after(recent.oldest, self.window),
                )
            store.record_failure(conn, scope="signup", key=address)
