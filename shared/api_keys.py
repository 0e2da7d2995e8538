"""Tenant API keys: ``dl_<prefix>_<secret>``; the prefix is stored visible, the key hashed.

The secret is 256 bits of randomness, so SHA-256 (not bcrypt) is the right hash: a lookup by
prefix plus a constant-time compare keeps every authenticated request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import LiteralString

from shared.auth.principal import Principal
from shared.db import Database, execute, fetch_all, fetch_one
from shared.errors import NotFound, Unauthorized
from shared.models import ApiKeyRow
from shared.usage import UsageService

KEY_BY_PREFIX: LiteralString = """
SELECT k.* FROM tenant_api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_prefix = %(prefix)s AND t.deleted_at IS NULL
"""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


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
            UsageService.lock_tenant(conn, tenant_id)
            row = fetch_one(
                conn,
                "INSERT INTO tenant_api_keys (id, tenant_id, name, key_prefix,"
                " key_hash, created_by) VALUES (%(id)s, %(t)s, %(n)s, %(p)s, %(h)s,"
                " %(by)s) RETURNING *",
                {
                    "id": uuid.uuid4(),
                    "t": tenant_id,
                    "n": name,
                    "p": prefix,
                    "h": _hash(key),
                    "by": principal.user_id,
                },
                table="tenant_api_keys",
                row=ApiKeyRow,
            )
        assert row is not None
        return row, key

    def list(self, principal: Principal, *, tenant_id: uuid.UUID) -> list[ApiKeyRow]:
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with self.db.tenant_tx(tenant_id) as conn:
            return fetch_all(
                conn,
                "SELECT * FROM tenant_api_keys WHERE tenant_id = %(t)s ORDER BY created_at",
                {"t": tenant_id},
                table="tenant_api_keys",
                row=ApiKeyRow,
            )

    def revoke(self, principal: Principal, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        principal.scope(tenant_id)
        principal.require_role("Admin")
        with self.db.tenant_tx(tenant_id) as conn:
            n = execute(
                conn,
                "UPDATE tenant_api_keys SET revoked_at = coalesce(revoked_at, now())"
                " WHERE id = %(id)s AND tenant_id = %(t)s",
                {"id": key_id, "t": tenant_id},
                table="tenant_api_keys",
            )
        if n == 0:
            raise NotFound("API key not found", code="api_key_not_found")

    def authenticate(self, key: str) -> Principal:
        prefix = split_key(key)
        with self.db.tx() as conn:
            row = fetch_one(
                conn, KEY_BY_PREFIX, {"prefix": prefix}, table="tenant_api_keys", row=ApiKeyRow
            )
            if (
                row is None
                or row.revoked_at is not None
                or not hmac.compare_digest(row.key_hash, _hash(key))
            ):
                raise Unauthorized("invalid API key", code="invalid_api_key")
            # last_used_at at minute precision: one write a minute per key, not one per call.
            execute(
                conn,
                "UPDATE tenant_api_keys SET last_used_at = now() WHERE id = %(id)s"
                " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                {"id": row.id},
                table="tenant_api_keys",
            )
        return Principal(tenant_id=row.tenant_id, role="User", api_key_id=row.id)
