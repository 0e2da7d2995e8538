"""/extract/batch over HTTP against the same extraction in-process, in the same run.

The extract function runs as `deeplens up` runs it: func-python's server around
``function.new()`` with FUNCTION_TARGET=extract (shared/local/funcserve.py), one worker per
core. Clients POST batches of ~1 MP JPEGs (multipart) and get the vectors back as JSON; the
baseline embeds the same bytes in this process with the same fast path and worker count.

    deeplens bench extracthttp [--images 256] [--batch 32] [--clients 2]
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import mkdtemp

import httpx
import psycopg

from shared.features.onnx_backend import OnnxExtractor
from shared.features.registry import model_spec
from tests.e2e.conftest import ROOT, free_port, wait_ready
from tests.perf._common import add_admin_url, photo_jpegs, report


def run(images: int, batch: int, clients: int, admin_url: str) -> dict:  # type: ignore[type-arg]
    blobs = photo_jpegs(images, seed=5)
    data_dir = Path(mkdtemp())
    fast = OnnxExtractor(model_spec("efficientnet-lite0"), cache_dir=data_dir / "models")
    fast.warm_up()
    fast.embed_bytes(blobs[: min(8, images)])
    t0 = time.perf_counter()
    fast.embed_bytes(blobs)
    inproc = images / (time.perf_counter() - t0)
    fast.close()

    db = f"deeplens_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    port = free_port()
    # Called as another platform function calls it (search by image): with the shared secret.
    token = secrets.token_urlsafe(16)
    auth = {"Authorization": f"Bearer {token}"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPLENS_")}
    env.update(
        {
            "FUNCTION_TARGET": "extract",
            "LISTEN_ADDRESS": f"127.0.0.1:{port}",
            "DEEPLENS_ENV": "test",
            "DEEPLENS_DATA_DIR": str(data_dir),
            "DEEPLENS_DATABASE_URL": admin_url.rsplit("/", 1)[0] + "/" + db,
            "DEEPLENS_EVENTS_TOKEN": token,
        }
    )
    log = data_dir / "extract.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.local.funcserve"],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url, log, 120)
        batches = [blobs[i : i + batch] for i in range(0, images, batch)]

        def post(client: httpx.Client, group: list[bytes]) -> int:
            files = [("files", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(group)]
            r = client.post("/extract/batch", files=files)
            assert r.status_code == 200, r.text[:300]
            return int(r.json()["count"])

        with httpx.Client(base_url=url, timeout=300, headers=auth) as warm:
            post(warm, blobs[: min(8, images)])
        http_clients = [
            httpx.Client(base_url=url, timeout=300, headers=auth) for _ in range(clients)
        ]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            done = sum(
                pool.map(lambda ib: post(http_clients[ib[0] % clients], ib[1]), enumerate(batches))
            )
        over_http = done / (time.perf_counter() - t0)
        for c in http_clients:
            c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    rows = [
        {"path": "in-process embed_bytes (baseline)", "img/s": inproc, "vs baseline": 1.0},
        {
            "path": f"POST /extract/batch over HTTP ({batch}/request, {clients} clients)",
            "img/s": over_http,
            "vs baseline": over_http / inproc,
        },
    ]
    return report(
        "extracthttp",
        rows,
        images=images,
        image_size="1280x800 JPEG q90",
        server="func-python (hypercorn) around function.new(), FUNCTION_TARGET=extract",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--clients", type=int, default=2)
    add_admin_url(p)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        run(8, 4, 1, a.admin_url)
    else:
        run(a.images, a.batch, a.clients, a.admin_url)


if __name__ == "__main__":
    main()
