"""The PostgreSQL broker of ``deeplens up`` on the wire: real HTTP servers stand in for the
function processes and record what arrives. Deliveries are binary-mode CloudEvents (ce-*
headers, JSON body) with the sender token of events/auth.py; a reply event in the response is
routed to the next trigger's subscriber; a subscriber that keeps failing gets its event
retried with backoff up to the budget, then the dead-letter function receives it with
Knative's error extensions; deliveries for a function with no ready replica wait."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from events import types
from events.auth import event_token
from events.broker import HttpBroker, Replica
from events.codec import Event, encode_binary
from events.publisher import LocalPublisher
from shared.config import Settings
from shared.db import Database, migrate
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.integration


class Recorder:
    """An ASGI app recording every request; answers by path."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes, float]] = []
        self.fail: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        self.requests.append((path, headers, body, time.monotonic()))
        status, out_headers, out = 202, [], b""
        if path in self.fail:
            status, out = 500, b'{"error":{"code":"boom","message":"boom"}}'
        elif path == "/events/process-image":  # reply with the next event, binary mode
            data = json.loads(body)
            reply = Event(
                type=types.IMAGE_VALIDATED,
                source="/deeplens/process-image",
                data={**data, "replied": True},
                extensions={"tenantid": headers.get("ce-tenantid", "")},
            )
            h, out = encode_binary(reply)
            status, out_headers = 200, [(k.encode(), v.encode()) for k, v in h.items()]
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": out})

    def to(self, path: str) -> list[tuple[dict[str, str], bytes, float]]:
        return [(h, b, t) for p, h, b, t in self.requests if p == path]


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, str]]:
    app = Recorder()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


def wait_for(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_binary_mode_reply_routing_retries_and_dead_letter(
    database_url: str, tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    app, url = recorder
    app.fail.add("/events/extract")
    migrate(database_url)
    settings = Settings.from_env(
        {
            "DEEPLENS_ENV": "test",
            "DEEPLENS_DATA_DIR": str(tmp_path),
            "DEEPLENS_BROKER_MAX_ATTEMPTS": "3",
            "DEEPLENS_BROKER_BACKOFF_SECONDS": "0.2",
        }
    )
    targets = {fn: [Replica(url, 4, ready=True)] for fn in ("process-image", "dead-letter")}
    targets["extract"] = [Replica(url, 4, ready=True)]
    targets["sweeper"] = [Replica(url, 1, ready=True)]
    db = Database(database_url, min_size=1, max_size=3)
    db.open()
    broker = HttpBroker(db, settings, targets, sweep_every=3600)
    broker.start()
    try:
        tenant, image = str(uuid.uuid4()), str(uuid.uuid4())
        event = Event(
            type=types.IMAGE_UPLOADED,
            source="/deeplens/images",
            data={"imageId": image, "tenantId": tenant},
            subject=f"tenants/{tenant}/images/{image}",
            extensions={"tenantid": tenant},
        )
        LocalPublisher(db).publish(event)  # another process's publish: wakes via NOTIFY
        wait_for(lambda: len(app.to("/events/dead-letter")) == 1)

        # 1. Binary mode on the wire, with the sender token.
        (headers, body, _), *_ = app.to("/events/process-image")
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-type"] == types.IMAGE_UPLOADED
        assert headers["ce-id"] == event.id
        assert headers["ce-source"] == "/deeplens/images"
        assert headers["ce-subject"] == f"tenants/{tenant}/images/{image}"
        assert headers["ce-tenantid"] == tenant
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body) == {"imageId": image, "tenantId": tenant}
        assert headers["authorization"] == f"Bearer {event_token(settings)}"

        # 2. The reply was routed to the next trigger's subscriber (extract), 3 attempts.
        attempts = app.to("/events/extract")
        assert len(attempts) == 3
        for h, b, _ in attempts:
            assert h["ce-type"] == types.IMAGE_VALIDATED
            assert json.loads(b)["replied"] is True
            assert h["authorization"] == f"Bearer {event_token(settings)}"
        gaps = [attempts[i + 1][2] - attempts[i][2] for i in range(2)]
        assert gaps[0] >= 0.15 and gaps[1] >= 0.35, gaps  # 0.2 s, then 0.4 s backoff

        # 3. Dead-letter after the budget, with Knative's error extensions.
        (dh, db_body, _), *_ = app.to("/events/dead-letter")
        assert dh["ce-type"] == types.IMAGE_VALIDATED
        assert dh["ce-knativeerrordest"] == "/events/extract"
        assert dh["ce-knativeerrorcode"] == "500"
        assert dh["ce-deeplensattempts"] == "3"
        assert dh["authorization"] == f"Bearer {event_token(settings)}"
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT subscriber, status, attempts FROM broker_deliveries ORDER BY id"
            ).fetchall()
        assert rows == [("/events/process-image", "done", 1), ("/events/extract", "dead", 3)]
    finally:
        broker.stop()
        db.close()


def test_deliveries_wait_while_no_replica_is_ready(
    database_url: str, tmp_path: Path, recorder: tuple[Recorder, str]
) -> None:
    app, url = recorder
    migrate(database_url)
    settings = Settings.from_env({"DEEPLENS_ENV": "test", "DEEPLENS_DATA_DIR": str(tmp_path)})
    replica = Replica(url, 2, ready=False)  # process-image is (re)starting
    targets = {"process-image": [replica], "extract": [Replica(url, 2, ready=True)]}
    db = Database(database_url, min_size=1, max_size=3)
    db.open()
    broker = HttpBroker(db, settings, targets, sweep_every=3600)
    broker.start()
    try:
        tenant, image = str(uuid.uuid4()), str(uuid.uuid4())
        LocalPublisher(db).publish(
            Event(
                type=types.IMAGE_UPLOADED,
                source="/deeplens/images",
                data={"imageId": image, "tenantId": tenant},
            )
        )
        time.sleep(1.0)
        assert app.to("/events/process-image") == []
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT attempts FROM broker_deliveries").fetchone() == (0,)
        replica.ready = True
        wait_for(lambda: len(app.to("/events/process-image")) == 1)
    finally:
        broker.stop()
        db.close()
