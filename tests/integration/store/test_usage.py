"""shared/store/usage.py: the one daily-usage upsert (API calls, searches, uploads), storage
used, and the sign-in failure and sign-up counters."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from shared.db import Database
from shared.store import usage
from tests.integration.store.conftest import add_tenant

pytestmark = pytest.mark.integration


def test_one_upsert_counts_every_kind_into_the_days_row(db: Database) -> None:
    t = add_tenant(db)
    with db.tx() as conn:
        today = usage.today(conn)
        assert usage.add(conn, tenant_id=t.id, api_calls=3) == 3
        assert usage.add(conn, tenant_id=t.id, searches=2) == 3
        assert usage.add(conn, tenant_id=t.id, uploads=1, api_calls=1) == 4
        assert usage.add(conn, tenant_id=t.id, day=today - timedelta(days=1), api_calls=5) == 5
        days = usage.last_days(conn, tenant_id=t.id)
    assert [(d.day, d.api_calls, d.searches, d.uploads) for d in days] == [
        (today - timedelta(days=1), 5, 0, 0),
        (today, 4, 2, 1),
    ]


def test_the_upsert_is_exact_under_concurrency(db: Database) -> None:
    t = add_tenant(db)

    def add_many(_: int) -> None:
        for _ in range(25):
            with db.one() as conn:
                usage.add(conn, tenant_id=t.id, api_calls=1)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(add_many, range(8)))
    with db.tx() as conn:
        assert usage.add(conn, tenant_id=t.id) == 200


def test_last_days_is_the_last_30_days(db: Database) -> None:
    t = add_tenant(db)
    with db.tx() as conn:
        today: date = usage.today(conn)
        for back in (0, 29, 30):
            usage.add(conn, tenant_id=t.id, day=today - timedelta(days=back), api_calls=1)
        days = [d.day for d in usage.last_days(conn, tenant_id=t.id, days=30)]
    assert days == [today - timedelta(days=29), today]


def test_storage_used_counts_unwritten_thumbnails_at_the_reserve(db: Database) -> None:
    t = add_tenant(db)
    with db.tx() as conn:
        for size, thumbs, status in (
            (1000, 0, "uploaded"),
            (2000, 300, "indexed"),
            (5, 0, "failed"),
        ):
            conn.execute(
                "INSERT INTO images (id, tenant_id, filename, content_type, size_bytes, sha256,"
                " original_key, thumbnails_bytes, status) VALUES (%s, %s, 'a.jpg', 'image/jpeg',"
                " %s, 'x', 'k', %s, %s)",
                (uuid.uuid4(), t.id, size, thumbs, status),
            )
        used = usage.storage_used(conn, tenant_id=t.id)
    assert used == 1000 + usage.THUMBNAIL_RESERVE + 2000 + 300


def test_failures_count_within_the_window_and_clear(db: Database) -> None:
    with db.tx() as conn:
        for _ in range(3):
            usage.record_failure(conn, scope="account", key="a@x")
        usage.record_failure(conn, scope="pair", key="a@x|1.2.3.4")
        recent = usage.recent_failures(conn, scope="account", key="a@x", window=60, limit=2)
        assert recent.n == 2 and recent.oldest is not None  # counted up to the limit
        assert usage.recent_failures(conn, scope="account", key="b@x", window=60, limit=5).n == 0
        usage.trim_failures(conn, older_than=60)  # nothing is that old
        assert usage.recent_failures(conn, scope="account", key="a@x", window=60, limit=9).n == 3
        usage.clear_failures(conn, account="a@x", pair="a@x|1.2.3.4")
        assert usage.recent_failures(conn, scope="account", key="a@x", window=60, limit=9).n == 0
        assert (
            usage.recent_failures(conn, scope="pair", key="a@x|1.2.3.4", window=60, limit=9).n == 0
        )


def test_signups_are_counted_per_address(db: Database) -> None:
    with db.tx() as conn:
        assert usage.lock_signups(conn, address="10.0.0.1", window=3600).n == 0
        usage.record_failure(conn, scope="signup", key="10.0.0.1")
        usage.record_failure(conn, scope="signup", key="10.0.0.1")
        assert usage.lock_signups(conn, address="10.0.0.1", window=3600).n == 2
        assert usage.lock_signups(conn, address="10.0.0.2", window=3600).n == 0

        # Old sign-in failures are trimmed; sign-ups (as old) are kept for their limiter.
        for scope in ("signup", "account"):
            conn.execute(
                "INSERT INTO login_failures (scope, key, failed_at)"
                " VALUES (%s, 'old', now() - interval '2 hours')",
                (scope,),
            )
        usage.trim_failures(conn, older_than=60)
        left = conn.execute("SELECT scope FROM login_failures WHERE key = 'old'").fetchall()
    assert left == [("signup",)]
