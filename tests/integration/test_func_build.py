"""What func's Python host builder does, reproduced: install the project (distribution
``function``) into a target directory beside func-python, run the scaffolding's entry
(``from function import new``; ``func_python.http.serve(new)``) with FUNCTION_TARGET set for
each function, and drive each over real HTTP: health endpoints, a real route, or a CloudEvent
in binary mode with its reply event checked. Also checks that only extract loads torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from events.codec import decode, encode_binary, from_json
from tests.e2e.conftest import free_port
from tests.photos import encode, photo

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

# The glue func writes at build time (templates/python/scaffolding/instanced-http/service).
SCAFFOLD_MAIN = """
import logging
from func_python.http import serve

logging.basicConfig(level=logging.INFO)
from function import new

if __name__ == "__main__":
    serve(new)
"""


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("func-build")
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (root / "service").mkdir()
    (root / "service" / "main.py").write_text(SCAFFOLD_MAIN)
    return root


@contextmanager
def serve(
    build: Path, target: str, env: dict[str, str]
) -> Iterator[tuple[httpx.Client, int, float]]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("DEEPLENS_")}
    full.update(
        env,
        FUNCTION_TARGET=target,
        LISTEN_ADDRESS=f"127.0.0.1:{port}",
        PYTHONPATH=str(build / "site"),
    )
    log = build / f"{target}.log"
    t0 = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "service/main.py"],
            cwd=build,
            env=full,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/health/readiness").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log.read_text()[-3000:])
            time.sleep(0.05)
        ready = time.monotonic() - t0
        assert client.get("/health/liveness").status_code == 200
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        yield client, proc.pid, ready
        if target != "extract":
            assert "libtorch" not in maps, f"{target} loaded torch"
        # the module came from the installed copy, not the source tree
        assert str(ROOT / "function") not in maps
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)


EVENTS_TOKEN = "func-build-test-event-token"
SENDER = {"authorization": f"Bearer {EVENTS_TOKEN}"}


def ce_post(client: httpx.Client, path: str, event: Any) -> Any:
    headers, body = encode_binary(event)
    assert client.post(path, headers=headers, content=body).status_code == 401  # no token
    r = client.post(path, headers={**headers, **SENDER}, content=body)
    assert r.status_code == 200, r.text
    assert "ce-type" in r.headers  # the reply event, in binary mode
    return decode(dict(r.headers), r.content)


def test_every_function_served_by_func_python(
    build: Path, database_url: str, tmp_path: Path
) -> None:
    env = {
        "DEEPLENS_ENV": "test",
        "DEEPLENS_DATABASE_URL": database_url,
        "DEEPLENS_DATA_DIR": str(tmp_path / "data"),
        "DEEPLENS_BCRYPT_ROUNDS": "4",
        "DEEPLENS_EVENTS_TOKEN": EVENTS_TOKEN,
    }
    ready: dict[str, float] = {}
    with serve(build, "tenants", env) as (c, _, ready["tenants"]):
        r = c.post(
            "/api/tenants",
            json={
                "name": "Func",
                "adminEmail": "o@func.test",
                "adminPassword": "correct horse battery",
            },
        )
        assert r.status_code == 201
        tenant = r.json()
    with serve(build, "auth", env) as (c, _, ready["auth"]):
        r = c.post(
            "/api/auth/login", json={"email": "o@func.test", "password": "correct horse battery"}
        )
        assert r.status_code == 200
        headers = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        assert c.get("/.well-known/jwks.json").json()["keys"][0]["alg"] == "EdDSA"
        assert c.get("/docs").status_code == 200
    with serve(build, "images", env) as (c, _, ready["images"]):
        r = c.post(
            "/api/images/upload",
            headers=headers,
            files={"file": ("coffee.jpg", encode(photo("coffee.png")))},
        )
        assert r.status_code == 202
        image_id = r.json()["imageId"]
        assert c.get("/api/images").json()["error"]["code"] == "missing_credentials"
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT event FROM broker_deliveries").fetchone()
    assert row is not None
    doc = row[0]
    event = from_json(doc)
    with serve(build, "process-image", env) as (c, _, ready["process-image"]):
        event = ce_post(c, "/events/process-image", event)
        assert event.type == "io.deeplens.image.validated.v1"
    with serve(build, "extract", env) as (c, _, ready["extract"]):
        event = ce_post(c, "/events/extract", event)
        assert event.type == "io.deeplens.features.extracted.v1"
        r = c.post("/extract", files={"file": ("x.jpg", encode(photo("rocket.jpg")))})
        assert r.status_code == 401
        r = c.post(
            "/extract", headers=headers, files={"file": ("x.jpg", encode(photo("rocket.jpg")))}
        )
        assert r.status_code == 200 and r.json()["shape"] == [1280]
        assert c.get("/health").json()["status"] == "healthy"
    with serve(build, "index-vector", env) as (c, _, ready["index-vector"]):
        event = ce_post(c, "/events/index-vector", event)
        assert event.type == "io.deeplens.image.indexed.v1"
    with serve(build, "search", env) as (c, _, ready["search"]):
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT status FROM images").fetchone()
        assert row is not None
        status = row[0]
        assert status == "indexed"
        # Threshold -1: any vector of the right size must find the tenant's only image.
        r = c.post(
            "/api/images/search", headers=headers, json={"vector": [0.03] * 1280, "threshold": -1}
        )
        assert r.status_code == 200 and r.json()[0]["imageId"] == image_id
    with serve(build, "sweeper", env) as (c, _, ready["sweeper"]):
        tick = from_json(
            {
                "specversion": "1.0",
                "id": "t1",
                "source": "/ping",
                "type": "dev.knative.sources.ping",
                "data": {},
            }
        )
        h, b = encode_binary(tick)
        assert c.post("/events/sweeper", headers=h, content=b).status_code == 401
        assert c.post("/events/sweeper", headers={**h, **SENDER}, content=b).status_code == 202
    with serve(build, "dead-letter", env) as (c, _, ready["dead-letter"]):
        h, b = encode_binary(tick)
        assert c.post("/events/dead-letter", headers=h, content=b).status_code == 401
        assert c.post("/events/dead-letter", headers={**h, **SENDER}, content=b).status_code == 202
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM failed_events").fetchone() == (1,)
    with serve(build, "admin", env) as (c, _, ready["admin"]):
        assert c.get("/api/collections").json()["error"]["code"] == "missing_credentials"
        r = c.get(f"/api/tenants/{tenant['tenant']['id']}/analytics", headers=headers)
        assert r.status_code == 200 and r.json()["imageCount"] == 1
    with serve(build, "web", env) as (c, _, ready["web"]):
        page = c.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert c.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    from functions import FUNCTIONS

    assert set(ready) == set(FUNCTIONS)  # every function was served by func-python
    print(
        "\nready after process start (s):", json.dumps({k: round(v, 2) for k, v in ready.items()})
    )
    assert tenant["tenant"]["slug"] == "func"
