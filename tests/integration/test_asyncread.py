"""The hot GET read on the event loop (shared/hotpath/asyncread.py), on the real PostgreSQL
and the real ASGI handler served on one long-lived loop, as func-python's server does."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Platform
from tests.integration.test_pipeline import upload
from tests.photos import encode, photo

pytestmark = pytest.mark.integration


def test_get_reads_on_the_serving_loop_and_survives_a_lost_connection(
    platform: Platform, database_url: str
) -> None:
    p = platform
    t, other = p.signup(), p.signup("Other")
    image_id = upload(p, t, "coffee.jpg", encode(photo("coffee.png"))).json()["imageId"]
    theirs = upload(p, other, "cat.jpg", encode(photo("chelsea.png"))).json()["imageId"]
    # The in-process client runs each request on a loop of its own: the worker-thread path.
    expected = p.client.get(f"/api/images/{image_id}", headers=t["headers"])
    assert expected.status_code == 200
    reader = p.container.fast_reader
    assert reader is not None

    async def serve() -> list[Any]:
        transport = httpx.ASGITransport(app=p.fn.handle)
        async with httpx.AsyncClient(transport=transport, base_url="http://fn") as c:

            async def get(i: str, h: dict[str, str]) -> httpx.Response:
                return await c.get(f"/api/images/{i}", headers=h)

            loop = asyncio.get_running_loop()
            first = await get(image_id, t["headers"])
            # Bound to this loop now (no other loop asked first in this process's reader).
            served_here = reader._loop is loop and reader._conn is not None
            many = await asyncio.gather(*(get(image_id, t["headers"]) for _ in range(20)))
            cross = await get(theirs, t["headers"])  # another tenant's id: not found
            # PostgreSQL drops the reader's connection: one 503, then a new connection.
            pid = reader._conn.info.backend_pid if reader._conn else None
            with psycopg.connect(database_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            lost = await get(image_id, t["headers"])
            again = await get(image_id, t["headers"])
            return [first, served_here, many, cross, lost, again]

    # The reader binds to the first loop that asks; the test client's loops came first here,
    # so start from a reader no loop has claimed (as a fresh function process does).
    reader.close()
    reader._loop = None
    first, served_here, many, cross, lost, again = asyncio.run(serve())
    assert served_here
    assert first.status_code == 200 and first.json() == expected.json()
    assert all(r.status_code == 200 and r.json() == expected.json() for r in many)
    assert cross.status_code == 404 and cross.json()["error"]["code"] == "image_not_found"
    assert lost.status_code in (200, 503)  # 503 when the read hit the dead connection
    if lost.status_code == 503:
        assert lost.json()["error"]["code"] == "unavailable"
    assert again.status_code == 200 and again.json() == expected.json()
    # Requests on other loops still answer (the worker-thread path).
    assert p.client.get(f"/api/images/{image_id}", headers=t["headers"]).json() == expected.json()
