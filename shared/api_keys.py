"""Tenant API keys: ``dl_<prefix>_<secret>``; the prefix is stored visible, the key hashed.

The secret is 256 bits of randomness, so SHA-256 (not bcrypt) is the right hash: a lookup by
prefix plus a constant-time compare keeps every authenticated request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from shared.auth.principal import Principal
from shared.db import Database
from shared.errors import NotFound, Unauthorized
from shared.store import api_keys as store
from shared.store import tenants
from shared.store.api_keys import ApiKeyRow


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def verify(row: ApiKeyRow | None, key: str) -> Principal:
    """The principal of a key whose row was found by its prefix; 401 unless the row exists,
    is not revoked and holds this key's hash (compared in constant time)."""
    if (
        row is None
        or row.revoked_at is not None
        or not hmac.compare_digest(row.key_hash, _hash(key))
    ):
        raise Unauthorized("invalid API key", code="invalid_api_key")
    return Principal(tenant_id=row.tenant_id, role="User", api_key_id=row.id)


def split_key(key: str) -> str:
    # The secret is URL-safe base64, which may itself contain "_": split twice only.
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "dl" or len(parts[1]) != 8 or len(parts[2]) < 20:
        raise Unauthorized("invalid API key", code="invalid_api_key")
    return f"dl_{parts[1]}"


class ApiKeyService:
    def __init__(self, db: Database):
        self.db = db

    def create(
        self, principal: Principal, *, tenant_id: uuid.UUID, name: str
    ) -> tuple[ApiKeyRow, str]:
        """Returns the row and the full key; the key is shown once and never stored."""
        principal.scope(tenant_id)
        principal.require_role("Admin")
        prefix = "dl_" + secrets.token_hex(4)
        key = f"{prefix}_{secrets.token_urlsafe(32)}"
        with self.db.tenant_tx(tenant_id) as conn:
            # A system admin may name any tenant id: an unknown one is a 404, not a
            # foreign-key error.
            tenants.lock_active(conn, tenant_id=tenant_id)
            row = store.insert(
                conn,
                tenant_id=tenant_id,
                name=name,
                prefix=prefix,
                key_hash=_hash(key),
                created_by=principal.user_id,
            )
        return row, key

    def list(self, principal: Principal, *, tenant_id: uuid.UUID) -> list[ApiKeyRow]:
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with self.db.tenant_tx(tenant_id) as conn:
            return store.list_for(conn, tenant_id=tenant_id)

    def revoke(self, principal: Principal, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with self.db.tenant_tx(tenant_id) as conn:
            found = store.revoke(conn, tenant_id=tenant_id, key_id=key_id)
        if not found:
            raise NotFound("API key not found", code="api_key_not_found")

    def authenticate(self, key: str) -> Principal:
        """A key's principal, read from the database (the hot path caches it instead)."""
        prefix = split_key(key)
        with self.db.tx() as conn:
            row = store.by_prefix(conn, prefix=prefix)
            principal = verify(row, key)
            assert row is not None
            store.used(conn, key_ids=[row.id])
        return principal
