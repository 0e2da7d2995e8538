"""shared/store/api_keys.py: keys by prefix (not for deleted tenants), revocation inside the
tenant, last use written at most once a minute."""

from __future__ import annotations

import pytest

from shared.db import Database
from shared.store import api_keys, tenants
from tests.integration.store.conftest import add_tenant

pytestmark = pytest.mark.integration


def test_keys_by_prefix_revocation_and_last_use(db: Database) -> None:
    a, b = add_tenant(db, "A"), add_tenant(db, "B")
    with db.tx() as conn:
        key = api_keys.insert(
            conn, tenant_id=a.id, name="k", prefix="dl_0000abcd", key_hash="h", created_by=None
        )
        assert api_keys.by_prefix(conn, prefix="dl_0000abcd") == key
        assert [k.id for k in api_keys.list_for(conn, tenant_id=a.id)] == [key.id]
        assert api_keys.list_for(conn, tenant_id=b.id) == []
        assert not api_keys.revoke(conn, tenant_id=b.id, key_id=key.id)  # not B's key
        api_keys.used(conn, key_ids=[key.id])
        first = api_keys.by_prefix(conn, prefix="dl_0000abcd")
        assert first is not None and first.last_used_at is not None
        conn.execute("UPDATE tenant_api_keys SET last_used_at = now() - interval '30 seconds'")
        api_keys.used(conn, key_ids=[key.id])  # within the minute: not written again
        second = api_keys.by_prefix(conn, prefix="dl_0000abcd")
        assert second is not None and second.last_used_at is not None
        assert second.last_used_at < first.last_used_at
        assert api_keys.revoke(conn, tenant_id=a.id, key_id=key.id)
        assert api_keys.revoke(conn, tenant_id=a.id, key_id=key.id)  # idempotent
        revoked = api_keys.by_prefix(conn, prefix="dl_0000abcd")
        assert revoked is not None and revoked.revoked_at is not None
        tenants.soft_delete(conn, tenant_id=a.id)
        assert api_keys.by_prefix(conn, prefix="dl_0000abcd") is None
