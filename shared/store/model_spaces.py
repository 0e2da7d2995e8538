"""Vector spaces as data: ``model_platform`` (the platform's active model and a running
migration's target or kept previous model), ``tenant_models`` (each tenant's active space and
its one other space), ``image_spaces`` (which spaces hold each image's vector) and
``model_calibrations`` (fitted similarity calibrations)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_dicts, fetch_one

Conn = psycopg.Connection[Any]


@dataclass
class PlatformRow:
    id: int
    active_model: str
    target_model: str | None
    previous_model: str | None
    updated_at: datetime


@dataclass
class TenantModels:
    tenant_id: uuid.UUID
    active_model: str
    active_space: str
    other_model: str | None
    other_space: str | None
    other_role: str | None  # target | previous
    started_at: datetime | None
    cutover_at: datetime | None
    updated_at: datetime

    @property
    def spaces(self) -> tuple[str, ...]:
        return (self.active_space,) + ((self.other_space,) if self.other_space else ())

    def model_of(self, space: str) -> str | None:
        """The model reference whose vectors ``space`` holds for this tenant (None: not one of
        its spaces)."""
        if space == self.active_space:
            return self.active_model
        return self.other_model if space == self.other_space else None


# --- model_platform -------------------------------------------------------------------------
ENSURE_PLATFORM: LiteralString = """
INSERT INTO model_platform (id, active_model) VALUES (1, %(m)s) ON CONFLICT (id) DO NOTHING
"""
PLATFORM: LiteralString = "SELECT * FROM model_platform WHERE id = 1"
SET_PLATFORM: LiteralString = """
UPDATE model_platform SET active_model = coalesce(%(a)s, active_model),
    target_model = %(t)s, previous_model = %(p)s, updated_at = now()
WHERE id = 1
"""


def platform(conn: Conn, *, default_model: str) -> PlatformRow:
    """The platform's row, created with ``default_model`` active on first use."""
    execute(conn, ENSURE_PLATFORM, {"m": default_model}, table="model_platform")
    row = fetch_one(conn, PLATFORM, table="model_platform", row=PlatformRow)
    assert row is not None
    return row


def set_platform(
    conn: Conn, *, active: str | None, target: str | None, previous: str | None
) -> None:
    """``active`` None keeps the active model; target and previous are set as given."""
    params = {"a": active, "t": target, "p": previous}
    execute(conn, SET_PLATFORM, params, table="model_platform")


# --- tenant_models --------------------------------------------------------------------------
STATE: LiteralString = "SELECT * FROM tenant_models WHERE tenant_id = %(t)s"
LOCK_STATE: LiteralString = "SELECT * FROM tenant_models WHERE tenant_id = %(t)s FOR UPDATE"
# A tenant without a row (created before spaces were data, or since the last migration) gets
# one from the platform: its current space is active; a running platform migration's target
# becomes its other space, so its uploads are dual-written from the first.
INIT_TENANT: LiteralString = """
INSERT INTO tenant_models (tenant_id, active_model, active_space, other_model, other_space,
                           other_role, started_at)
VALUES (%(t)s, %(m)s, %(s)s, %(om)s, %(os)s, %(role)s,
        CASE WHEN %(role)s::text IS NULL THEN NULL ELSE now() END)
ON CONFLICT (tenant_id) DO NOTHING
"""
START_TARGET: LiteralString = """
UPDATE tenant_models SET other_model = %(m)s, other_space = %(s)s, other_role = 'target',
    started_at = now(), updated_at = now()
WHERE tenant_id = %(t)s AND other_role IS NULL
"""
# Cutover and rollback: the other space becomes active, the active one the other (``role``).
SWAP: LiteralString = """
UPDATE tenant_models SET active_model = other_model, active_space = other_space,
    other_model = active_model, other_space = active_space, other_role = %(r)s,
    cutover_at = now(), updated_at = now()
WHERE tenant_id = %(t)s
"""
CLEAR_OTHER: LiteralString = """
UPDATE tenant_models SET other_model = NULL, other_space = NULL, other_role = NULL,
    updated_at = now()
WHERE tenant_id = %(t)s
"""
SPACE_USERS: LiteralString = """
SELECT count(*) AS n FROM tenant_models m JOIN tenants t ON t.id = m.tenant_id
WHERE (m.active_space = %(s)s OR m.other_space = %(s)s) AND t.deleted_at IS NULL
"""
MIGRATING: LiteralString = "SELECT count(*) AS n FROM tenant_models WHERE other_space = %(s)s"
OTHER_SPACES: LiteralString = """
SELECT other_space AS s FROM tenant_models WHERE tenant_id = %(t)s AND other_space IS NOT NULL
"""
IN_USE: LiteralString = """
SELECT 1 AS n FROM tenant_models WHERE active_model = %(r)s OR other_model = %(r)s
UNION ALL SELECT 1 FROM model_platform WHERE %(r)s IN (active_model, target_model, previous_model)
UNION ALL SELECT 1 FROM custom_models WHERE name = %(n)s LIMIT 1
"""


def state(conn: Conn, *, tenant_id: uuid.UUID, lock: bool = False) -> TenantModels | None:
    """The tenant's spaces (``lock``: FOR UPDATE, inside the caller's transaction)."""
    query = LOCK_STATE if lock else STATE
    return fetch_one(conn, query, {"t": tenant_id}, table="tenant_models", row=TenantModels)


def init_state(
    conn: Conn,
    *,
    tenant_id: uuid.UUID,
    model: str,
    space: str,
    other_model: str | None,
    other_space: str | None,
) -> None:
    """The tenant's first row (no-op when it has one); an other space is a target."""
    params = {
        "t": tenant_id,
        "m": model,
        "s": space,
        "om": other_model,
        "os": other_space,
        "role": "target" if other_model else None,
    }
    execute(conn, INIT_TENANT, params, table="tenant_models")


def start_target(conn: Conn, *, tenant_id: uuid.UUID, model: str, space: str) -> None:
    """A migration's target becomes the tenant's other space (unless it has one)."""
    params = {"m": model, "s": space, "t": tenant_id}
    execute(conn, START_TARGET, params, table="tenant_models")


def swap(conn: Conn, *, tenant_id: uuid.UUID, role: str) -> None:
    execute(conn, SWAP, {"r": role, "t": tenant_id}, table="tenant_models")


def clear_other(conn: Conn, *, tenant_id: uuid.UUID) -> None:
    execute(conn, CLEAR_OTHER, {"t": tenant_id}, table="tenant_models")


def space_users(conn: Conn, *, space: str) -> int:
    """How many live tenants use a space (active or other)."""
    [row] = fetch_dicts(conn, SPACE_USERS, {"s": space}, table="tenant_models")
    return int(row["n"])


def migrating(conn: Conn, *, space: str) -> int:
    """How many tenants hold a space as a migration's target or a kept previous space."""
    [row] = fetch_dicts(conn, MIGRATING, {"s": space}, table="tenant_models")
    return int(row["n"])


def other_spaces(conn: Conn, *, tenant_id: uuid.UUID) -> list[str]:
    rows = fetch_dicts(conn, OTHER_SPACES, {"t": tenant_id}, table="tenant_models")
    return [str(r["s"]) for r in rows]


def in_use(conn: Conn, *, ref: str, name: str) -> bool:
    """Whether some tenant or the platform uses model ``ref``, or ``name`` is registered."""
    return bool(fetch_dicts(conn, IN_USE, {"r": ref, "n": name}, table="tenant_models"))


# --- image_spaces ---------------------------------------------------------------------------
RECORD: LiteralString = """
INSERT INTO image_spaces (image_id, space, tenant_id, model)
VALUES (%(i)s, %(s)s, %(t)s, %(m)s) ON CONFLICT (image_id, space) DO NOTHING
"""
HOLDS: LiteralString = "SELECT 1 AS n FROM image_spaces WHERE image_id = %(i)s AND space = %(s)s"
# Every space that holds the image, and the tenant's other space (a copy may be in flight).
SPACES_OF_IMAGE: LiteralString = """
SELECT space FROM image_spaces WHERE image_id = %(id)s
UNION SELECT other_space FROM tenant_models WHERE tenant_id = %(t)s AND other_space IS NOT NULL
"""
FORGET_SPACE: LiteralString = "DELETE FROM image_spaces WHERE tenant_id = %(t)s AND space = %(s)s"


def record(
    conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID, space: str, model: str
) -> None:
    """Note that ``space`` holds the image's vector. Raises ForeignKeyViolation when the image
    row is gone."""
    params = {"i": image_id, "s": space, "t": tenant_id, "m": model}
    execute(conn, RECORD, params, table="image_spaces")


def holds(conn: Conn, *, image_id: uuid.UUID, space: str) -> bool:
    return bool(fetch_dicts(conn, HOLDS, {"i": image_id, "s": space}, table="image_spaces"))


def spaces_of_image(conn: Conn, *, tenant_id: uuid.UUID, image_id: uuid.UUID) -> list[str]:
    """The spaces an image's vector may be in: those that hold it, and the tenant's other
    space (for deleting an image everywhere)."""
    rows = fetch_dicts(
        conn, SPACES_OF_IMAGE, {"id": image_id, "t": tenant_id}, table="image_spaces"
    )
    return [str(r["space"]) for r in rows]


def forget_space(conn: Conn, *, tenant_id: uuid.UUID, space: str) -> None:
    """The tenant's images are no longer held by ``space`` (a reindex, a cleanup)."""
    execute(conn, FORGET_SPACE, {"t": tenant_id, "s": space}, table="image_spaces")


# --- model_calibrations ---------------------------------------------------------------------
CALIBRATION: LiteralString = "SELECT raw_at_threshold FROM model_calibrations WHERE model = %(m)s"
SAVE_CALIBRATION: LiteralString = """
INSERT INTO model_calibrations (model, raw_at_threshold, samples) VALUES (%(m)s, %(r)s, %(n)s)
ON CONFLICT (model) DO UPDATE SET raw_at_threshold = excluded.raw_at_threshold,
    samples = excluded.samples, fitted_at = now()
"""


def calibration(conn: Conn, *, model: str) -> float | None:
    """The raw cosine fitted to map to 0.7 for ``model``, or None."""
    rows = fetch_dicts(conn, CALIBRATION, {"m": model}, table="model_calibrations")
    return float(rows[0]["raw_at_threshold"]) if rows else None


def save_calibration(conn: Conn, *, model: str, raw: float, samples: int) -> None:
    params = {"m": model, "r": raw, "n": samples}
    execute(conn, SAVE_CALIBRATION, params, table="model_calibrations")
