"""The standing attack suite, part 4: fault injection. ``deeplens up`` on embedded PostgreSQL,
uploads in flight, and at a random moment (seeded, so a failure replays) SIGKILL of the
platform, of PostgreSQL, or of both; repeated. After each fault the platform must start the
first time; at the end every acknowledged upload is indexed exactly once (one row, one point).

Bounded for CI: ``DEEPLENS_FAULT_ROUNDS`` rounds (default 3) of a few seconds each.
"""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from shared.config import VectorSettings
from shared.vectors import EdgeIndex
from tests.e2e.conftest import Running, signup, start_platform, wait_all

pytestmark = pytest.mark.e2e
ROUNDS = int(os.environ.get("DEEPLENS_FAULT_ROUNDS", "3"))
FAST = {
    "DEEPLENS_BROKER_LEASE_SECONDS": "2",
    "DEEPLENS_SWEEPER_STUCK_SECONDS": "2",
    "DEEPLENS_SWEEPER_INTERVAL_SECONDS": "1",
}
FAULTS = ["platform", "postgres", "both"]


def images(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        px = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def postmaster(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def uploader(
    run: Running, headers: dict[str, str], blobs: list[bytes], acked: dict[int, str]
) -> threading.Thread:
    def go() -> None:
        with httpx.Client(base_url=run.url, timeout=10) as c:
            for i, blob in enumerate(blobs):
                try:
                    r = c.post(
                        "/api/images/upload", headers=headers, files={"file": (f"{i}.jpg", blob)}
                    )
                except httpx.HTTPError:
                    return  # the platform is gone: later uploads are not acknowledged
                if r.status_code in (200, 202):
                    acked[i] = r.json()["imageId"]

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_sigkill_platform_and_postgres_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(1313)
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=None, extra_env=FAST, timeout=120)
    t = signup(run.http, "Faulty")
    headers = t["key_headers"]
    blobs = images(30 * ROUNDS, seed=13)
    acked: dict[int, str] = {}
    injected = []
    for r in range(ROUNDS):
        batch = blobs[r * 30 : (r + 1) * 30]
        offset = r * 30
        got: dict[int, str] = {}
        thread = uploader(run, headers, batch, got)
        time.sleep(rng.uniform(0.5, 3.0))
        fault = FAULTS[r % len(FAULTS)]
        injected.append(fault)
        if fault in ("postgres", "both"):
            os.kill(postmaster(data_dir), signal.SIGKILL)
        if fault in ("platform", "both"):
            run.kill()
        else:
            time.sleep(1.0)  # the platform runs on without its database for a moment
            run.stop()
        thread.join(timeout=30)
        acked.update({offset + i: image_id for i, image_id in got.items()})
        # Restart: must work the first time, right away.
        run = start_platform(data_dir, database_url=None, extra_env=FAST, timeout=90)
    try:
        # The client retries what was never acknowledged (same bytes: a duplicate is answered
        # with the existing image), as a real client would.
        for i, blob in enumerate(blobs):
            if i not in acked:
                res = run.http.post(
                    "/api/images/upload", headers=headers, files={"file": (f"{i}.jpg", blob)}
                )
                assert res.status_code in (200, 202), res.text
                acked[i] = res.json()["imageId"]
        status = wait_all(run.http, headers, set(acked.values()), timeout=240, log=run.log)
        assert set(status.values()) == {"indexed"}, status
        listed = run.http.get("/api/images", params={"pageSize": 200}, headers=headers).json()
    finally:
        run.stop()
    ids = set(acked.values())
    assert len(ids) == len(blobs)  # one image per upload, none merged, none lost
    assert listed["total"] == len(blobs)  # no extra rows either
    index = EdgeIndex(data_dir / "vectors", VectorSettings())
    try:
        tenant = uuid.UUID(t["tenant"]["id"])
        space = t["tenant"]["qdrantCollectionName"]
        assert index.count(space, tenant_id=tenant) == len(ids)
        for image_id in ids:
            assert index.get_vector(space, tenant_id=tenant, point_id=uuid.UUID(image_id))
    finally:
        index.close()
    print(f"\nfaults injected: {injected}; {len(ids)} uploads indexed exactly once")
