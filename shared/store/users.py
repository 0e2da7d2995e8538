"""The ``users`` table: its row type and every statement that reads or writes it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_all, fetch_dicts, fetch_one


@dataclass
class UserRow:
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    email: str
    password_hash: str
    first_name: str | None
    last_name: str | None
    role: str
    is_active: bool
    email_verified: bool
    last_login_at: datetime | None
    failed_login_attempts: int
    locked_until: datetime | None
    profile_image_url: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


@dataclass
class UserIdentity:
    """What the hot path keeps of a user (never the password hash)."""

    tenant_id: uuid.UUID | None
    role: str
    is_active: bool


INSERT: LiteralString = """
INSERT INTO users (id, tenant_id, email, password_hash, first_name, last_name, role)
VALUES (%(id)s, %(tenant_id)s, %(email)s, %(hash)s, %(first)s, %(last)s, %(role)s)
RETURNING *
"""
BY_ID: LiteralString = "SELECT * FROM users WHERE id = %(id)s AND deleted_at IS NULL"
IDENTITY: LiteralString = (
    "SELECT tenant_id, role, is_active FROM users WHERE id = %(id)s AND deleted_at IS NULL"
)
IN_TENANT: LiteralString = """
SELECT * FROM users WHERE id = %(id)s AND tenant_id = %(t)s AND deleted_at IS NULL
"""
LIST: LiteralString = """
SELECT * FROM users WHERE tenant_id = %(t)s AND deleted_at IS NULL
ORDER BY created_at LIMIT %(limit)s OFFSET %(offset)s
"""
BY_EMAIL: LiteralString = """
SELECT u.* FROM users u LEFT JOIN tenants t ON t.id = u.tenant_id
WHERE lower(u.email) = lower(%(email)s) AND u.deleted_at IS NULL
  AND (t.id IS NULL OR t.deleted_at IS NULL)
  AND (%(slug)s::text IS NULL OR t.slug = %(slug)s)
ORDER BY u.created_at
LIMIT 20
"""
TOUCH_LOGIN: LiteralString = """
UPDATE users SET last_login_at = now(), failed_login_attempts = 0, updated_at = now()
WHERE id = %(id)s
"""
COUNT_FAILED: LiteralString = """
UPDATE users SET failed_login_attempts = failed_login_attempts + 1 WHERE id = ANY(%(ids)s)
"""
SET_ROLE: LiteralString = """
UPDATE users SET role = %(r)s, updated_at = now() WHERE id = %(id)s AND tenant_id = %(t)s
"""
SET_ACTIVE: LiteralString = """
UPDATE users SET is_active = %(a)s, updated_at = now() WHERE id = %(id)s AND tenant_id = %(t)s
"""
ACTIVE_IN_TENANT: LiteralString = """
SELECT count(*) AS n FROM users WHERE tenant_id = %(t)s AND deleted_at IS NULL AND is_active
"""

Conn = psycopg.Connection[Any]


def insert(
    conn: Conn,
    *,
    tenant_id: uuid.UUID | None,
    email: str,
    password_hash: str,
    role: str,
    first_name: str | None = None,
    last_name: str | None = None,
    user_id: uuid.UUID | None = None,
) -> UserRow:
    """A new user (``tenant_id`` None: a system admin)."""
    params = {
        "id": user_id or uuid.uuid4(),
        "tenant_id": tenant_id,
        "email": email.strip(),
        "hash": password_hash,
        "first": first_name,
        "last": last_name,
        "role": role,
    }
    row = fetch_one(conn, INSERT, params, table="users", row=UserRow)
    assert row is not None
    return row


def get(conn: Conn, *, user_id: uuid.UUID) -> UserRow | None:
    """A user by id, whatever its tenant: only for an id taken from a verified credential."""
    return fetch_one(conn, BY_ID, {"id": user_id}, table="users", row=UserRow)


def identity(conn: Conn, *, user_id: uuid.UUID) -> UserIdentity | None:
    """A user's tenant, role and state (the rights of a verified access token)."""
    return fetch_one(conn, IDENTITY, {"id": user_id}, table="users", row=UserIdentity)


def in_tenant(conn: Conn, *, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserRow | None:
    return fetch_one(conn, IN_TENANT, {"id": user_id, "t": tenant_id}, table="users", row=UserRow)


def list_in_tenant(conn: Conn, *, tenant_id: uuid.UUID, limit: int, offset: int) -> list[UserRow]:
    params = {"t": tenant_id, "limit": limit, "offset": offset}
    return fetch_all(conn, LIST, params, table="users", row=UserRow)


def by_email(conn: Conn, *, email: str, slug: str | None) -> list[UserRow]:
    """Sign-in candidates: live users with this email (case-insensitive), in live tenants."""
    return fetch_all(conn, BY_EMAIL, {"email": email, "slug": slug}, table="users", row=UserRow)


def signed_in(conn: Conn, *, user_id: uuid.UUID) -> None:
    execute(conn, TOUCH_LOGIN, {"id": user_id}, table="users")


def count_failed(conn: Conn, *, user_ids: list[uuid.UUID]) -> None:
    execute(conn, COUNT_FAILED, {"ids": user_ids}, table="users")


def set_role(conn: Conn, *, tenant_id: uuid.UUID, user_id: uuid.UUID, role: str) -> None:
    execute(conn, SET_ROLE, {"r": role, "id": user_id, "t": tenant_id}, table="users")


def set_active(conn: Conn, *, tenant_id: uuid.UUID, user_id: uuid.UUID, active: bool) -> None:
    execute(conn, SET_ACTIVE, {"a": active, "id": user_id, "t": tenant_id}, table="users")


def count_active(conn: Conn, *, tenant_id: uuid.UUID) -> int:
    """Active users of a tenant (what its plan's user limit counts)."""
    [row] = fetch_dicts(conn, ACTIVE_IN_TENANT, {"t": tenant_id}, table="users")
    return int(row["n"])
