"""One process per function, as the local runtime and Knative run them (func-python's server
around ``function.new()`` with FUNCTION_TARGET), the broker delivering over real HTTP:

- one image is one trace across four processes (upload → process-image → extract →
  index-vector), every stage linked to its parent through the events' traceparent;
- with ``PROMETHEUS_MULTIPROC_DIR`` shared, the ``/metrics`` of any one process adds up the
  samples of all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.auth import sender_headers
from events.broker import LocalBroker
from shared.config import Settings
from shared.db import Database
from tests.e2e.conftest import ROOT, free_port, wait_ready
from tests.metrics_scrape import Scrape
from tests.photos import encode, photos

pytestmark = pytest.mark.e2e

SCAFFOLD = """
import logging
from func_python.http import serve
logging.basicConfig(level=logging.INFO)
from function import new
serve(new)
"""


@contextmanager
def function_process(target: str, env: dict[str, str], logs: Path) -> Iterator[str]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("DEEPLENS_")}
    full.update(env, FUNCTION_TARGET=target, LISTEN_ADDRESS=f"127.0.0.1:{port}")
    log = logs / f"{target}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCAFFOLD], cwd=ROOT, env=full, stdout=fh, stderr=fh
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log, 120)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class HttpFanout:
    """The broker's view of the cluster: /events/<function> goes to that function's process
    over HTTP, with the sender credentials a broker presents."""

    def __init__(self, urls: dict[str, str], settings: Settings):
        self.urls = urls
        self.client = httpx.AsyncClient(timeout=120)
        self.auth = sender_headers(settings)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = scope["path"].split("/")[2]
        if target not in self.urls:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        headers.update(self.auth)
        r = await self.client.post(self.urls[target] + scope["path"], headers=headers, content=body)
        await send(
            {
                "type": "http.response.start",
                "status": r.status_code,
                "headers": [
                    (k.encode(), v.encode())
                    for k, v in r.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding")
                ],
            }
        )
        await send({"type": "http.response.body", "body": r.content})


def test_one_trace_per_image_and_summed_metrics_across_processes(
    database_url: str, tmp_path: Path
) -> None:
    prom, traces, logs = tmp_path / "prom", tmp_path / "spans.jsonl", tmp_path / "logs"
    prom.mkdir()
    logs.mkdir()
    env = {
        "DEEPLENS_ENV": "test",
        "DEEPLENS_DATABASE_URL": database_url,
        "DEEPLENS_DATA_DIR": str(tmp_path / "data"),
        "DEEPLENS_BCRYPT_ROUNDS": "4",
        "DEEPLENS_TRACES_FILE": str(traces),
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
        "PYTHONUNBUFFERED": "1",
        # The embedded engine has one owner process (the local runtime's); here each process
        # keeps its own in-memory store, and index-vector creates the space it writes to.
        "DEEPLENS_VECTORS__BACKEND": "qdrant",
        "DEEPLENS_VECTORS__URL": ":memory:",
    }
    settings = Settings.from_env(env)
    targets = ["tenants", "images", "process-image", "extract", "index-vector"]
    with ExitStack() as stack:
        urls = {t: stack.enter_context(function_process(t, env, logs)) for t in targets}
        db = Database(database_url, max_size=4)
        db.open()
        stack.callback(db.close)
        broker = LocalBroker(db, HttpFanout(urls, settings), settings, sweep_every=3600)
        broker.start()
        stack.callback(broker.stop)

        http = httpx.Client(timeout=60)
        r = http.post(
            urls["tenants"] + "/api/tenants",
            json={"name": "Procs", "adminEmail": "o@procs.test", "adminPassword": "pw pw pw pw"},
        )
        assert r.status_code == 201, r.text
        body = r.json()
        key = http.post(
            urls["tenants"] + f"/api/tenants/{body['tenant']['id']}/api-keys",
            headers={"Authorization": f"Bearer {body['accessToken']}"},
            json={"name": "procs"},
        ).json()["key"]
        ids = []
        for name, img in list(photos().items())[:2]:
            r = http.post(
                urls["images"] + "/api/images/upload",
                headers={"X-API-Key": key},
                files={"file": (f"{name}.jpg", encode(img))},
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["imageId"])
        deadline = time.monotonic() + 120
        while True:
            with db.one() as conn:  # not through the API: polling would spend its quota
                states = [
                    r[0]
                    for r in conn.execute(
                        "SELECT status FROM images WHERE id = ANY(%s::uuid[])", (ids,)
                    )
                ]
            if states == ["indexed", "indexed"]:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)

        # Any one process answers for all of them. A stage counts itself when its handler
        # returns, a moment after the row is marked (index-vector still groups duplicates).
        while True:
            m = Scrape(http.get(urls["tenants"] + "/metrics").text)
            done = [
                m.value("deeplens_pipeline_stage_total", stage=s, outcome="ok")
                for s in ("process-image", "extract", "index-vector")
            ]
            if done == [2, 2, 2] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for stage in ("process-image", "extract", "index-vector"):
            assert m.value("deeplens_pipeline_stage_total", stage=stage, outcome="ok") == 2
        assert m.value("deeplens_upload_to_indexed_seconds_count") == 2
        assert (
            m.value("deeplens_http_requests_total", route="/api/images/upload", status="202") == 2
        )
        assert m.value("deeplens_http_requests_total", route="/api/tenants", status="201") == 1
        assert m.value("deeplens_images", status="indexed") == 2
        same = Scrape(http.get(urls["extract"] + "/metrics").text)
        assert same.value("deeplens_extract_images_total") == m.value(
            "deeplens_extract_images_total"
        )

    spans = [json.loads(line) for line in traces.read_text().splitlines()]
    by_id = {s["span_id"]: s for s in spans}
    for image_id in ids:
        stages = {
            s["name"]: s
            for s in spans
            if s["attributes"].get("image.id") == image_id
            and s["name"] in ("image.process", "image.extract", "image.index")
        }
        assert set(stages) == {"image.process", "image.extract", "image.index"}
        assert len({s["trace_id"] for s in stages.values()}) == 1
        assert len({s["pid"] for s in stages.values()}) == 3  # three processes
        for stage in stages.values():
            # stage → its event endpoint's server span (same process) → the upload request
            # (the images process): parent links all the way to the trace's root.
            chain = [stage]
            while chain[-1]["parent_id"]:
                parent = by_id.get(chain[-1]["parent_id"])
                assert parent is not None, (stage["name"], chain[-1])
                chain.append(parent)
            assert chain[-1]["name"] == "POST /api/images/upload"
            assert chain[-1]["service"] == "deeplens-images"
            assert any(c["name"].startswith("POST /events/") for c in chain)
            assert chain[-1]["pid"] != stage["pid"]
