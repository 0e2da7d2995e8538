"""The ``custom_models`` table: operators' own ONNX encoders (name, source, stored file, hash,
shape, normalisation, pooling). Rows are plain dicts: ``shared.model_spaces.custom_spec``
turns one into a ModelSpec."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

from shared.db import execute, fetch_dicts

Conn = psycopg.Connection[Any]

BY_NAME: LiteralString = "SELECT * FROM custom_models WHERE name = %(n)s"
NAMES: LiteralString = "SELECT name FROM custom_models ORDER BY name"
INSERT: LiteralString = """
INSERT INTO custom_models (name, source, path, sha256, dim, input_size, mean, std, pooling)
VALUES (%(n)s, %(src)s, %(p)s, %(sha)s, %(d)s, %(s)s, %(m)s, %(sd)s, %(pool)s)
"""


def get(conn: Conn, *, name: str) -> dict[str, Any] | None:
    rows = fetch_dicts(conn, BY_NAME, {"n": name}, table="custom_models")
    return rows[0] if rows else None


def names(conn: Conn) -> list[str]:
    return [str(r["name"]) for r in fetch_dicts(conn, NAMES, table="custom_models")]


def insert(
    conn: Conn,
    *,
    name: str,
    source: str,
    path: str,
    sha256: str,
    dim: int,
    input_size: int,
    mean: list[float],
    std: list[float],
    pooling: str,
) -> None:
    params = {
        "n": name,
        "src": source,
        "p": path,
        "sha": sha256,
        "d": dim,
        "s": input_size,
        "m": mean,
        "sd": std,
        "pool": pooling,
    }
    execute(conn, INSERT, params, table="custom_models")
