"""``LoopReader``: the hot GET's one statement on psycopg's async driver, on the event loop.

A function process serves HTTP on one asyncio loop (func-python's hypercorn). Handing the
read of ``GET /api/images/{id}`` to a worker thread (``asyncio.to_thread``) cost about half
the CPU of the whole request: the hop, and the two threads taking the interpreter lock in
turn. Awaiting the statement on the loop costs neither, and the loop keeps serving other
requests while PostgreSQL answers.

One connection, bound to the first loop that asks (autocommit: one round trip per read;
psycopg serialises concurrent statements on it). A request on another loop — the in-process
test client runs each request on a loop of its own — takes the thread path instead, and a
broken connection is dropped (503 ``TransientError`` once) and made again on the next read.
"""

from __future__ import annotations

import asyncio
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.rows import class_row

from shared.db import Params, statement_span
from shared.errors import TransientError

T = TypeVar("T")


class LoopReader:
    def __init__(self, url: str):
        self.url = url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._connecting: asyncio.Lock | None = None

    def serves(self) -> bool:
        """Whether this request's loop is the reader's (the first loop that asked)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop, self._connecting = loop, asyncio.Lock()
        return self._loop is loop

    async def fetch_one(
        self, query: LiteralString, params: Params, *, table: str, row: type[T]
    ) -> T | None:
        conn = await self._connection()
        try:
            with statement_span(query, table):
                async with conn.cursor(row_factory=class_row(row)) as cur:
                    await cur.execute(query, params)
                    return await cur.fetchone()
        except psycopg.OperationalError as exc:
            self.close()
            raise TransientError("database unavailable") from exc

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        assert self._connecting is not None, "serves() first"
        async with self._connecting:  # one connect at a time
            if self._conn is None or self._conn.closed:
                try:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, connect_timeout=5
                    )
                except psycopg.OperationalError as exc:
                    raise TransientError("database unavailable") from exc
            return self._conn

    def close(self) -> None:
        """Close the connection from any thread (the loop may be gone): libpq's own close."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()
