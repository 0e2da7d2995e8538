"""Bulk uploads never delay live ones: an upload may declare itself bulk
(``?priority=bulk``, what ``deeplens ingest`` sends); its pipeline events carry the ``priority``
extension through every stage, and the HTTP broker (the one ``deeplens up`` runs) serves live
work first. The real functions serve the deliveries over real HTTP, one at a time per function,
so the order the images are indexed in is the order the broker chose."""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from events.broker import HttpBroker, Replica
from shared.cli.client import cmd_ingest
from shared.db import Database
from tests.conftest import Platform, wait_for
from tests.e2e.conftest import free_port, signup
from tests.perf._common import photo_jpegs

pytestmark = pytest.mark.integration

BULK = 10
PIPELINE = ("process-image", "extract", "index-vector", "dead-letter", "sweeper")


@pytest.fixture
def served(platform: Platform) -> Iterator[str]:
    """The platform's functions behind a real HTTP server, as a function process is."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            platform.fn.handle,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def upload(p: Platform, t: dict[str, Any], blob: bytes, **params: str) -> str:
    r = p.client.post(
        "/api/images/upload",
        headers=t["headers"],
        params=params,
        files={"file": (f"{uuid.uuid4().hex[:8]}.jpg", blob)},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["imageId"])


def test_a_live_upload_overtakes_a_bulk_backlog(
    platform: Platform, served: str, database_url: str, tmp_path: Path
) -> None:
    p = platform
    with httpx.Client(base_url=served, timeout=30) as http:
        t = signup(http, "Importer")
    blobs = photo_jpegs(BULK + 1, size=(320, 240), seed=12)
    folder = tmp_path / "import"
    folder.mkdir()
    for i, blob in enumerate(blobs[:BULK]):
        (folder / f"{i:02d}.jpg").write_bytes(blob)
    # The backlog is queued before the broker starts, so the outcome does not depend on
    # how fast this machine is: only on the order deliveries are claimed in. `deeplens
    # ingest` uploads as bulk unless told --live.
    args = argparse.Namespace(
        directory=str(folder),
        url=served,
        api_key=t["key_headers"]["X-API-Key"],
        concurrency=2,
        wait=False,
        timeout=60,
    )
    assert cmd_ingest(args) == 0
    live = upload(p, t, blobs[BULK])
    with p.container.db.tx() as conn:
        bulk = [str(r[0]) for r in conn.execute("SELECT id FROM images WHERE id <> %s", (live,))]
    assert len(bulk) == BULK
    targets = {fn: [Replica(served, 1, ready=True)] for fn in PIPELINE}
    db = Database(database_url, min_size=1, max_size=3)
    db.open()
    broker = HttpBroker(db, p.container.settings, targets, sweep_every=3600)
    broker.start()
    try:
        wait_for(lambda: indexed(p, [*bulk, live]) == BULK + 1, timeout=120, interval=0.2)
    finally:
        broker.stop()
        db.close()
    with p.container.db.tx() as conn:
        order = [
            str(r[0])
            for r in conn.execute(
                "SELECT id FROM images WHERE status = 'indexed' ORDER BY indexed_at"
            ).fetchall()
        ]
        prio = dict(
            conn.execute(
                "SELECT event->>'subject', array_agg(DISTINCT priority ORDER BY priority)"
                " FROM broker_deliveries GROUP BY 1"
            ).fetchall()
        )
    # FIFO would index the live image last (it was uploaded last); by priority it goes
    # through every stage before the backlog's images (at most the one or two already in
    # a stage when it arrived there).
    assert order.index(live) <= 2, order.index(live)
    # Every stage's delivery kept its image's priority: live 0, bulk -1.
    tid = t["tenant"]["id"]
    assert prio[f"tenants/{tid}/images/{live}"] == [0]
    assert all(prio[f"tenants/{tid}/images/{i}"] == [-1] for i in bulk)


def indexed(p: Platform, ids: list[str]) -> int:
    with p.container.db.tx() as conn:
        row = conn.execute(
            "SELECT count(*) FROM images WHERE status = 'indexed' AND id = ANY(%s::uuid[])",
            (ids,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_an_unknown_priority_is_refused_before_anything_is_stored(platform: Platform) -> None:
    p = platform
    t = p.signup()
    [blob] = photo_jpegs(1, size=(64, 48), seed=5)
    for bad in ("urgent", "LIVE", "", "low"):
        r = p.client.post(
            "/api/images/upload",
            headers=t["headers"],
            params={"priority": bad},
            files={"file": ("a.jpg", blob)},
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_priority"
    assert p.client.get("/api/images", headers=t["headers"]).json()["total"] == 0
    # live is the default, and may be said explicitly.
    upload(p, t, blob, priority="live")
    schema = p.client.get("/openapi.json").json()["paths"]["/api/images/upload"]["post"]
    [param] = [x for x in schema["parameters"] if x["name"] == "priority"]
    assert param["in"] == "query" and param["schema"]["enum"] == ["live", "bulk"]


def test_the_sweeper_restarts_a_bulk_image_at_bulk_priority(platform: Platform) -> None:
    p = platform
    t = p.signup()
    [blob] = photo_jpegs(1, size=(64, 48), seed=6)
    image = upload(p, t, blob, priority="bulk")
    with p.container.db.tx() as conn:  # its event was lost: nothing pending, stuck for an hour
        conn.execute("UPDATE broker_deliveries SET status = 'done'")
        conn.execute("UPDATE images SET updated_at = now() - interval '1 hour'")
    assert p.container.pipeline.sweeper.sweep().restarted == 1
    with p.container.db.tx() as conn:
        rows = conn.execute(
            "SELECT priority, event->>'priority', event->>'type' FROM broker_deliveries"
            " WHERE status = 'pending' AND event->>'subject' LIKE %s",
            (f"%/images/{image}",),
        ).fetchall()
    assert rows == [(-1, "bulk", "io.deeplens.image.uploaded.v1")]


def test_the_last_free_slot_of_a_function_is_kept_for_live_work(database_url: str) -> None:
    from shared.db import migrate
    from shared.store import deliveries

    migrate(database_url)

    def queue(conn: Any, priority: int, n: int) -> None:
        for _ in range(n):
            eid = str(uuid.uuid4())
            deliveries.insert(
                conn,
                event_id=eid,
                event_type="t",
                trigger="t",
                subscriber="/events/x",
                event={"id": eid},
                priority=priority,
            )

    db = Database(database_url, min_size=1, max_size=2)
    db.open()
    try:
        with db.tx() as conn:
            queue(conn, -1, 5)
        group = ["/events/x"]
        with db.tx() as conn:  # 3 free slots, 1 kept for live: 2 bulk deliveries
            assert len(deliveries.claim_groups(conn, budgets=[(group, 3, 1)], lease=60)) == 2
            assert deliveries.claim_groups(conn, budgets=[(group, 1, 1)], lease=60) == []
            queue(conn, 0, 2)
            [live] = deliveries.claim_groups(conn, budgets=[(group, 1, 1)], lease=60)
            assert live.subscriber == "/events/x"
            # With no reserve, bulk fills every free slot (live first when there is some).
            got = deliveries.claim_groups(conn, budgets=[(group, 3, 0)], lease=60)
            assert len(got) == 3
        with db.tx() as conn:
            rows = conn.execute(
                "SELECT priority, count(*) FROM broker_deliveries WHERE attempts = 1"
                " GROUP BY 1 ORDER BY 1"
            ).fetchall()
        assert rows == [(-1, 4), (0, 2)]
    finally:
        db.close()


@pytest.mark.parametrize("at_once", [1, 0])
def test_bulk_uploads_are_let_in_a_few_at_a_time_and_live_ones_pass_them(
    platform: Platform, served: str, monkeypatch: pytest.MonkeyPatch, at_once: int
) -> None:
    """``bulk_uploads_at_once`` (default 2) bounds how many bulk uploads a process handles at
    once; a live upload never waits at that gate. With the gate off (0), every bulk upload
    is handled at once — what the gate is measured against."""
    c = platform.container
    monkeypatch.setattr(c.settings, "bulk_uploads_at_once", at_once)
    real_upload = c.images.upload
    lock = threading.Lock()
    inside: dict[str, int] = {"bulk": 0, "max_bulk": 0}

    def slow_upload(*args: Any, **kwargs: Any) -> Any:
        bulk = kwargs.get("priority") == "bulk"
        with lock:
            if bulk:
                inside["bulk"] += 1
                inside["max_bulk"] = max(inside["max_bulk"], inside["bulk"])
        try:
            time.sleep(0.3)
            return real_upload(*args, **kwargs)
        finally:
            with lock:
                if bulk:
                    inside["bulk"] -= 1

    monkeypatch.setattr(c.images, "upload", slow_upload)
    with httpx.Client(base_url=served, timeout=30) as http:
        t = signup(http, "Gate")
    blobs = photo_jpegs(5, size=(160, 120), seed=21)
    done: dict[str, float] = {}

    def send(i: int, priority: str) -> None:
        with httpx.Client(base_url=served, timeout=30) as http:
            r = http.post(
                "/api/images/upload",
                headers=t["key_headers"],
                params={"priority": priority},
                files={"file": (f"{i}.jpg", blobs[i])},
            )
        assert r.status_code == 202, r.text
        done[f"{priority}-{i}"] = time.monotonic()

    threads = [threading.Thread(target=send, args=(i, "bulk")) for i in range(4)]
    for th in threads:
        th.start()
    time.sleep(0.1)  # the bulk uploads are in (or at the gate) first
    live = threading.Thread(target=send, args=(4, "live"))
    live.start()
    for th in [*threads, live]:
        th.join(30)
    assert len(done) == 5
    last_bulk = max(v for k, v in done.items() if k.startswith("bulk"))
    if at_once:
        assert inside["max_bulk"] == at_once
        assert done["live-4"] < last_bulk  # the live upload did not queue behind the import
    else:
        assert inside["max_bulk"] == 4


def test_stalled_bulk_uploads_do_not_hold_the_gate(
    platform: Platform, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bulk uploads that send their headers and a little of their body, then stall, held
    both slots of the gate (it was taken before the body was read) until the body timeout:
    every other bulk upload of the process waited (adversarial review)."""
    import socket
    from urllib.parse import urlsplit

    monkeypatch.setattr(platform.container.settings, "bulk_uploads_at_once", 2)
    with httpx.Client(base_url=served, timeout=30) as http:
        t = signup(http, "Stall")
    u = urlsplit(served)
    (name, key), *_ = t["key_headers"].items()
    stalled = []
    for _ in range(2):
        s = socket.create_connection((u.hostname, u.port))
        s.sendall(
            b"POST /api/images/upload?priority=bulk HTTP/1.1\r\nHost: x\r\n"
            + f"{name}: {key}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
            + b"--b\r\n"
        )
        stalled.append(s)
    try:
        time.sleep(0.3)  # both are in the process, their bodies unfinished
        [blob] = photo_jpegs(1, size=(160, 120), seed=5)
        with httpx.Client(base_url=served, timeout=8) as http:
            r = http.post(
                "/api/images/upload",
                headers=t["key_headers"],
                params={"priority": "bulk"},
                files={"file": ("ok.jpg", blob)},
            )
        assert r.status_code == 202, r.text
    finally:
        for s in stalled:
            s.close()
