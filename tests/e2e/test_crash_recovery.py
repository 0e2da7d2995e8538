"""SIGKILL the platform while images are in every stage; after a restart every image ends up
indexed exactly once (one point per image, no duplicates, none lost)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from shared.config import VectorSettings
from shared.vectors import EdgeIndex
from tests.e2e.conftest import signup, start_platform, wait_all
from tests.photos import COLOUR, GREY, edits, encode, photos

pytestmark = pytest.mark.e2e
FAST = {
    "DEEPLENS_BROKER_LEASE_SECONDS": "2",
    "DEEPLENS_SWEEPER_STUCK_SECONDS": "2",
    "DEEPLENS_SWEEPER_INTERVAL_SECONDS": "1",
}


def test_sigkill_mid_pipeline_then_restart(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=database_url, extra_env=FAST)
    t = signup(run.http, "Crashy")
    blobs = []
    for img in photos(COLOUR + GREY).values():
        blobs += [encode(img)] + [encode(e) for e in list(edits(img).values())[:2]]
    # The pipeline is running before the loop (on a fresh data dir the extract process first
    # exports the model): the kill must find images both indexed and still in flight.
    warm = run.http.post(
        "/api/images/upload", headers=t["key_headers"], files={"file": ("warm.jpg", blobs[-1])}
    )
    assert warm.status_code == 202
    wait_all(run.http, t["key_headers"], {warm.json()["imageId"]})
    blobs = blobs[:-1]
    ids: list[str] = [warm.json()["imageId"]]
    seen_stages: set[str] = set()
    for i, blob in enumerate(blobs):
        r = run.http.post(
            "/api/images/upload", headers=t["key_headers"], files={"file": (f"img-{i}.jpg", blob)}
        )
        assert r.status_code == 202
        ids.append(r.json()["imageId"])
        if i % 6 == 5:
            items = run.http.get(
                "/api/images", params={"pageSize": 200}, headers=t["key_headers"]
            ).json()["items"]
            seen_stages |= {x["status"] for x in items}
        if {"uploaded", "indexed"} <= seen_stages and i > len(blobs) // 2:
            break
    items = run.http.get("/api/images", params={"pageSize": 200}, headers=t["key_headers"]).json()[
        "items"
    ]
    at_kill = {x["status"] for x in items}
    run.kill()
    print(f"\nkilled with {len(ids)} images, stages seen: {sorted(seen_stages | at_kill)}")
    assert "indexed" in seen_stages | at_kill and len(at_kill - {"indexed"}) >= 1

    run = start_platform(data_dir, database_url=database_url, extra_env=FAST)
    try:
        t0 = time.monotonic()
        status = wait_all(run.http, t["key_headers"], set(ids), timeout=240, log=run.log)
        print(f"recovered in {time.monotonic() - t0:.1f}s")
        assert set(status.values()) == {"indexed"}, status
        space = t["tenant"]["qdrantCollectionName"]
    finally:
        run.stop()
    index = EdgeIndex(data_dir / "vectors", VectorSettings())
    try:
        tenant = uuid.UUID(t["tenant"]["id"])
        assert index.count(space, tenant_id=tenant) == len(ids)
        for image_id in ids:
            assert index.get_vector(space, tenant_id=tenant, point_id=uuid.UUID(image_id))
    finally:
        index.close()
