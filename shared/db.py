"""PostgreSQL access: a psycopg 3 connection pool, traced statements, numbered migrations.

Every statement goes through :func:`execute`/:func:`fetch_one`/:func:`fetch_all`, which open a
span named ``db.<operation> <table>`` with the seed's tags (db.table, db.operation).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row
from psycopg_pool import ConnectionPool

from shared import metrics
from shared.errors import Conflict, TransientError
from shared.telemetry import tracer

log = logging.getLogger(__name__)
T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any] | None


class Database:
    """Owns the pool. Open in ``start()``, close in ``stop()``."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10):
        self.url = url
        self.rls = False
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            # Autocommit connections: tx() opens explicit transactions, and single reads
            # through one() cost one round trip instead of BEGIN + query + COMMIT.
            kwargs={"autocommit": True},
            name="deeplens",
        )

    def open(self, timeout: float = 10.0) -> None:
        self.pool.open(wait=True, timeout=timeout)
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'deeplens_tenant')"
                " AND pg_has_role(current_user, 'deeplens_tenant', 'MEMBER')"
            ).fetchone()
        self.rls = bool(row and row[0])
        if not self.rls:
            log.warning("row-level security is off: role deeplens_tenant is not available")

    def close(self) -> None:
        self.pool.close()

    def healthy(self) -> bool:
        try:
            with self.pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - readiness answers false on any failure
            return False

    @contextmanager
    def one(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection for one self-contained statement (autocommit: one round trip).
        Use tx() whenever two statements must see or change the same state."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(_conflict_message(exc), code="conflict") from exc
        except psycopg.OperationalError as exc:
            raise TransientError("database unavailable") from exc

    @contextmanager
    def tenant_tx(self, tenant_id: object) -> Iterator[psycopg.Connection[Any]]:
        """A transaction confined to one tenant: it runs as the role deeplens_tenant with
        deeplens.tenant_id set, so PostgreSQL's row-level security hides every other tenant's
        rows even from a query that forgot its tenant filter (the second wall)."""
        with self.tx() as conn:
            if self.rls:
                conn.execute(
                    "SELECT set_config('deeplens.tenant_id', %s, true),"
                    " set_config('role', 'deeplens_tenant', true)",
                    (str(tenant_id),),
                )
            yield conn

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction; driver errors are translated into the error taxonomy."""
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(_conflict_message(exc), code="conflict") from exc
        except psycopg.OperationalError as exc:
            raise TransientError("database unavailable") from exc


def _conflict_message(exc: psycopg.errors.UniqueViolation) -> str:
    constraint = getattr(exc.diag, "constraint_name", None) or ""
    if "slug" in constraint:
        return "a tenant with this slug already exists"
    if "email" in constraint:
        return "a user with this email already exists in this tenant"
    return "the resource already exists"


@contextmanager
def statement_span(query: LiteralString, table: str) -> Iterator[None]:
    """The span of one statement: ``db.<operation> <table>`` with the seed's tags; its
    duration also feeds deeplens_db_query_duration_seconds{table, operation}."""
    op = query.lstrip().split(None, 1)[0].upper()
    if op == "WITH":
        op = "SELECT"
    t0 = time.perf_counter()
    try:
        with tracer.start_as_current_span(
            f"db.{op.lower()} {table}",
            attributes={"db.system": "postgresql", "db.table": table, "db.operation": op},
        ):
            yield
    finally:
        metrics.db_statement(table, op, time.perf_counter() - t0)


def execute(
    conn: psycopg.Connection[Any], query: LiteralString, params: Params = None, *, table: str
) -> int:
    with statement_span(query, table):
        return conn.execute(query, params).rowcount


def fetch_one(
    conn: psycopg.Connection[Any],
    query: LiteralString,
    params: Params = None,
    *,
    table: str,
    row: type[T],
) -> T | None:
    with statement_span(query, table), conn.cursor(row_factory=class_row(row)) as cur:
        return cur.execute(query, params).fetchone()


def fetch_all(
    conn: psycopg.Connection[Any],
    query: LiteralString,
    params: Params = None,
    *,
    table: str,
    row: type[T],
) -> list[T]:
    with statement_span(query, table), conn.cursor(row_factory=class_row(row)) as cur:
        return cur.execute(query, params).fetchall()


def fetch_dicts(
    conn: psycopg.Connection[Any], query: LiteralString, params: Params = None, *, table: str
) -> list[dict[str, Any]]:
    with statement_span(query, table), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def fetch_composed(
    conn: psycopg.Connection[Any], query: sql.Composed, params: Params = None, *, table: str
) -> list[dict[str, Any]]:
    """For statements composed with sql.Identifier (dynamic column lists)."""
    with statement_span("SELECT", table), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


# --- migrations -------------------------------------------------------------------------

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every ``NNNN_name.sql`` shipped in shared/migrations."""
    out = []
    for entry in resources.files("shared.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text()))
    return sorted(out)


def migrate(url: str) -> list[str]:
    """Apply pending migrations in order; returns the names applied (empty when up to date).

    An advisory lock serialises concurrent starts (several pods or test workers).
    """
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(724001)")
        try:
            conn.execute(MIGRATIONS_TABLE)
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, text in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(text))  # type: ignore[arg-type,unused-ignore]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                applied.append(name)
                log.info("applied migration %s", name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(724001)")
    return applied
