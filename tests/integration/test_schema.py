"""The seed's schema: tables, column counts and indexes; migrations re-run as a no-op."""

from __future__ import annotations

import psycopg
import pytest

from shared.db import migrate, migration_files

pytestmark = pytest.mark.integration


def test_seed_tables_columns_and_indexes(database_url: str) -> None:
    assert len(migrate(database_url)) == len(migration_files())
    assert migrate(database_url) == []  # idempotent
    with psycopg.connect(database_url) as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                "SELECT table_name, count(*) FROM information_schema.columns"
                " WHERE table_schema = 'public' GROUP BY table_name"
            ).fetchall()
        )
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        }
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_users_tenant_email'"
        ).fetchone()
        assert row is not None
        unique = row[0]
    assert counts["tenants"] == 17 and counts["users"] == 16
    assert counts["refresh_tokens"] == 10 and counts["tenant_api_keys"] == 9
    assert {
        "idx_users_tenant_email",
        "idx_users_tenant_id",
        "idx_refresh_tokens_user_id",
        "idx_refresh_tokens_token",
        "idx_tenants_slug",
        "idx_tenant_api_keys_tenant_id",
    } <= indexes
    assert "UNIQUE" in unique and "deleted_at" in unique
