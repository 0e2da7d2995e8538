"""The ``refresh_tokens`` table: sign-in sessions, stored as SHA-256 hashes of the token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_one


@dataclass
class RefreshRow:
    id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID
    expires_at: datetime
    revoked_at: datetime | None


INSERT: LiteralString = """
INSERT INTO refresh_tokens (id, user_id, token_hash, family_id, expires_at, created_by_ip,
                            user_agent)
VALUES (%(id)s, %(user_id)s, %(hash)s, %(family)s, %(expires)s, %(ip)s, %(ua)s)
"""
BY_HASH_FOR_UPDATE: LiteralString = """
SELECT id, user_id, family_id, expires_at, revoked_at FROM refresh_tokens
WHERE token_hash = %(h)s FOR UPDATE
"""
REPLACED: LiteralString = """
UPDATE refresh_tokens SET revoked_at = now(), replaced_by = %(new)s WHERE id = %(old)s
"""
REVOKE_FAMILY: LiteralString = """
UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE family_id = %(f)s
"""
REVOKE_FAMILY_OF: LiteralString = """
UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = %(h)s)
"""
REVOKE_USER: LiteralString = """
UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = %(u)s AND revoked_at IS NULL
"""
REVOKE_TENANT: LiteralString = """
UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL
AND user_id IN (SELECT id FROM users WHERE tenant_id = %(t)s)
"""

Conn = psycopg.Connection[Any]


def insert(
    conn: Conn,
    *,
    token_id: uuid.UUID,
    user_id: uuid.UUID,
    token_hash: str,
    family_id: uuid.UUID,
    expires_at: datetime,
    ip: str | None,
    user_agent: str | None,
) -> None:
    params = {
        "id": token_id,
        "user_id": user_id,
        "hash": token_hash,
        "family": family_id,
        "expires": expires_at,
        "ip": ip,
        "ua": user_agent,
    }
    execute(conn, INSERT, params, table="refresh_tokens")


def lock_by_hash(conn: Conn, *, token_hash: str) -> RefreshRow | None:
    """The token's row, locked until the caller's transaction ends (rotation is serial)."""
    return fetch_one(
        conn, BY_HASH_FOR_UPDATE, {"h": token_hash}, table="refresh_tokens", row=RefreshRow
    )


def replaced(conn: Conn, *, token_id: uuid.UUID, by: uuid.UUID) -> None:
    execute(conn, REPLACED, {"new": by, "old": token_id}, table="refresh_tokens")


def revoke_family(conn: Conn, *, family_id: uuid.UUID) -> None:
    execute(conn, REVOKE_FAMILY, {"f": family_id}, table="refresh_tokens")


def revoke_family_of(conn: Conn, *, token_hash: str) -> None:
    """Revoke the family of the token with this hash (none: nothing happens)."""
    execute(conn, REVOKE_FAMILY_OF, {"h": token_hash}, table="refresh_tokens")


def revoke_user(conn: Conn, *, user_id: uuid.UUID) -> None:
    execute(conn, REVOKE_USER, {"u": user_id}, table="refresh_tokens")


def revoke_tenant(conn: Conn, *, tenant_id: uuid.UUID) -> None:
    """Every live session of every user of the tenant."""
    execute(conn, REVOKE_TENANT, {"t": tenant_id}, table="refresh_tokens")
