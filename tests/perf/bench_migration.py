"""Model migration through the whole platform (`deeplens up`, real PostgreSQL): ingest a folder
of ~1 MP photos with efficientnet-lite0 GeM 224 (the baseline rate), then migrate to GeM 320 and
time the backfill from `migrate` to complete; upload→searchable latency of single live uploads
on the idle platform and during the backfill (same run, same files).

    deeplens bench migration [--images 300] [--singles 15] [--batch 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import httpx
import psycopg

from shared.cli.client import cmd_ingest
from tests.e2e.conftest import ROOT, Running, signup, start_platform
from tests.perf._common import add_admin_url, percentile, photo_jpegs, report

TARGET = "efficientnet-lite0:gem:320"
ADMIN = ("bench@deeplens.test", "bench-password-1")


def _single(plat: Running, headers: dict[str, str], blob: bytes) -> float:
    t1 = time.perf_counter()
    r = plat.http.post("/api/images/upload", headers=headers, files={"file": ("one.jpg", blob)})
    image_id = r.json()["imageId"]
    while plat.http.get(f"/api/images/{image_id}", headers=headers).json()["status"] != "indexed":
        time.sleep(0.005)
    return 1000 * (time.perf_counter() - t1)


def _remaining(http: httpx.Client, root: dict[str, str]) -> int:
    return int(http.get("/api/admin/models", headers=root).json()["totals"]["remaining"])


def run(images: int, singles: int, admin_url: str, batch: int) -> dict[str, Any]:
    folder = Path(mkdtemp())
    blobs = photo_jpegs(images + 2 * singles, seed=5)
    for i, blob in enumerate(blobs[:images]):
        (folder / f"photo-{i:05d}.jpg").write_bytes(blob)
    db = f"deeplens_bench_{uuid.uuid4().hex[:8]}"
    db_url = admin_url.rsplit("/", 1)[0] + "/" + db
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    data_dir = Path(mkdtemp())
    plat = start_platform(
        data_dir,
        database_url=db_url,
        extra_env={"DEEPLENS_MODELS_BACKFILL_BATCH": str(batch)},
    )
    try:
        env = {**os.environ, "DEEPLENS_DATABASE_URL": db_url, "DEEPLENS_DATA_DIR": str(data_dir)}
        subprocess.run(
            [sys.executable, "-m", "shared.cli", "admin", "create", "--email", ADMIN[0]]
            + ["--password", ADMIN[1]],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        token = plat.http.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        root = {"Authorization": f"Bearer {token.json()['accessToken']}"}
        t = signup(plat.http, "Migrating")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE tenants SET max_storage_bytes = 10^12, max_api_calls_per_day = 10^8"
            )
        key = t["key_headers"]["X-API-Key"]
        args = argparse.Namespace(
            directory=str(folder), url=plat.url, api_key=key, concurrency=4, wait=True, timeout=3600
        )
        t0 = time.perf_counter()
        assert cmd_ingest(args) == 0
        ingest_rate = images / (time.perf_counter() - t0)
        idle = []
        for blob in blobs[images : images + singles]:
            idle.append(_single(plat, t["key_headers"], blob))
            time.sleep(0.2)

        t0 = time.perf_counter()
        r = plat.http.post("/api/admin/models/migrate", headers=root, json={"to": TARGET})
        assert r.status_code == 202, r.text
        busy = []
        for blob in blobs[images + singles :]:
            if _remaining(plat.http, root) == 0:
                break
            busy.append(_single(plat, t["key_headers"], blob))
            time.sleep(0.2)
        while _remaining(plat.http, root) > 0:
            time.sleep(0.1)
        backfill_seconds = time.perf_counter() - t0
        backfilled = images + singles  # the live uploads of the busy phase were dual-written
        backfill_rate = backfilled / backfill_seconds
        r = plat.http.post("/api/admin/models/cutover", headers=root, json={})
        assert r.status_code == 200, r.text
    finally:
        plat.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    p50_idle, p50_busy = percentile(idle, 50), percentile(busy, 50)
    rows = [
        {"measure": "ingest, GeM 224 (baseline)", "value": ingest_rate, "unit": "img/s"},
        {"measure": "backfill to GeM 320", "value": backfill_rate, "unit": "img/s"},
        {"measure": "backfill / ingest", "value": backfill_rate / ingest_rate, "unit": "ratio"},
        {"measure": "live upload→searchable p50, idle", "value": p50_idle, "unit": "ms"},
        {"measure": "live upload→searchable p50, backfill", "value": p50_busy, "unit": "ms"},
        {"measure": "p50 backfill / idle", "value": p50_busy / p50_idle, "unit": "ratio"},
    ]
    return report(
        "migration",
        rows,
        images=images,
        backfill_batch=batch,
        singles_idle=len(idle),
        singles_during_backfill=len(busy),
        image_size="1280x800 JPEG q90",
        note="live uploads during a migration are embedded with both models (dual-write)",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--singles", type=int, default=15)
    p.add_argument("--batch", type=int, default=4, help="re-embeddings in flight")
    add_admin_url(p)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    run(8 if a.smoke else a.images, 2 if a.smoke else a.singles, a.admin_url, a.batch)


if __name__ == "__main__":
    main()
