"""Model lifecycle on the real PostgreSQL with the real broker and models: migrate (dual-write,
backfill at low priority), cutover only once complete, rollback, cleanup, reindex, a tenant
of its own model (Enterprise) leaving others untouched, and bring-your-own ONNX models."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from events.broker import LocalBroker
from tests.conftest import Platform, wait_for
from tests.integration.test_pipeline import upload
from tests.integration.test_tiers import sysadmin
from tests.photos import COLOUR, GREY, edits, encode, photos

pytestmark = pytest.mark.integration
TARGET = "efficientnet-lite0:gem:320"


def blobs(n: int) -> list[bytes]:
    """n distinct small JPEGs (real photos and edits of them)."""
    out: list[bytes] = []
    for img in photos(COLOUR + GREY).values():
        img.thumbnail((320, 320))
        out += [encode(img)] + [encode(e) for e in edits(img).values()]
    assert len(out) >= n
    return out[:n]


def start_broker(p: Platform) -> LocalBroker:
    broker = LocalBroker(p.container.db, p.fn.handle, p.container.settings, sweep_every=3600)
    broker.wakeup = p.container.publisher.wakeup
    broker.start()
    return broker


def rows(p: Platform, sql: str, *args: Any) -> list[Any]:
    with p.container.db.tx() as conn:
        return conn.execute(sql, args).fetchall()


def ingest(p: Platform, t: dict[str, Any], data: list[bytes], prefix: str) -> list[str]:
    ids = []
    for i, blob in enumerate(data):
        r = upload(p, t, f"{prefix}-{i}.jpg", blob)
        assert r.status_code == 202, r.text
        ids.append(r.json()["imageId"])
    wait_for(lambda: all(status(p, t, i) == "indexed" for i in ids), timeout=120, interval=0.2)
    return ids


def status(p: Platform, t: dict[str, Any], image_id: str) -> str:
    return str(p.client.get(f"/api/images/{image_id}", headers=t["headers"]).json()["status"])


def search_all(p: Platform, t: dict[str, Any], query: bytes) -> tuple[str, list[str], Any]:
    r = p.client.post(
        "/api/images/search",
        headers=t["headers"],
        files={"file": ("q.jpg", query)},
        data={"limit": "100", "threshold": "-1"},
    )
    assert r.status_code == 200, r.text
    return r.headers["x-deeplens-space"], [x["imageId"] for x in r.json()], r


def progress(p: Platform, root: dict[str, str]) -> dict[str, Any]:
    r = p.client.get("/api/admin/models", headers=root)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def done(p: Platform, root: dict[str, str]) -> bool:
    return all(t.get("complete", True) for t in progress(p, root)["tenants"])


@pytest.fixture
def broker(platform: Platform) -> Iterator[LocalBroker]:
    b = start_broker(platform)
    yield b
    b.stop()


def test_migrate_cutover_rollback_cleanup_reindex(platform: Platform) -> None:
    p = platform
    broker = start_broker(p)
    try:
        _lifecycle(p, broker)
    finally:
        broker.stop()


def _lifecycle(p: Platform, broker: LocalBroker) -> None:
    root = sysadmin(p)
    a, b = p.signup("Alpha"), p.signup("Beta")
    data = blobs(14)
    ids_a = ingest(p, a, data[:10], "a")
    ids_b = ingest(p, b, data[10:13], "b")
    old_space = a["tenant"]["qdrantCollectionName"]

    # Operators only.
    r = p.client.post("/api/admin/models/migrate", headers=a["headers"], json={"to": TARGET})
    assert r.status_code == 403
    r = p.client.post("/api/admin/models/migrate", headers=root, json={"to": "nope:gem:1"})
    assert r.status_code == 400 and r.json()["error"]["code"] in (
        "unknown_model",
        "invalid_input_size",
    )

    # The broker is held back so cutover is seen refused while the target is incomplete.
    broker.stop()
    r = p.client.post("/api/admin/models/migrate", headers=root, json={"to": TARGET})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["platform"]["targetModel"] == TARGET
    [new_space] = {t["otherSpace"] for t in body["tenants"]}
    assert new_space != old_space and "320" in new_space
    r = p.client.post("/api/admin/models/cutover", headers=root, json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "target_incomplete"
    # Re-embeddings are queued below live priority.
    [(prio,)] = rows(
        p,
        "SELECT DISTINCT priority FROM broker_deliveries WHERE event_type = %s",
        "io.deeplens.image.reembed.v1",
    )
    assert prio < 0
    broker = start_broker(p)
    try:
        _after_start(p, root, a, b, data, ids_a, ids_b, old_space, new_space)
    finally:
        broker.stop()


def _after_start(
    p: Platform,
    root: dict[str, str],
    a: dict[str, Any],
    b: dict[str, Any],
    data: list[bytes],
    ids_a: list[str],
    ids_b: list[str],
    old_space: str,
    new_space: str,
) -> None:

    # An upload during the migration is written to both spaces.
    [live] = ingest(p, a, data[13:14], "live")
    wait_for(lambda: done(p, root), timeout=180, interval=0.3)
    held = rows(p, "SELECT image_id::text, space FROM image_spaces WHERE space = %s", new_space)
    assert sorted(i for i, _ in held) == sorted(ids_a + [live] + ids_b)  # each once (PK)
    assert rows(p, "SELECT count(*) FROM backfill_items WHERE failed_at IS NOT NULL") == [(0,)]
    space, found, r = search_all(p, a, data[0])
    assert space == old_space and sorted(found) == sorted(ids_a + [live])

    r = p.client.post("/api/admin/models/cutover", headers=root, json={})
    assert r.status_code == 200 and all(t["ok"] for t in r.json()["tenants"]), r.text
    space, found, r = search_all(p, a, data[0])
    assert space == new_space and sorted(found) == sorted(ids_a + [live])
    assert r.headers["x-deeplens-model"] == TARGET
    assert found[0] == ids_a[0]  # the query image itself comes first
    assert p.client.get(f"/api/images/{ids_a[0]}/vector", headers=a["headers"]).status_code == 200
    assert progress(p, root)["platform"]["activeModel"] == TARGET

    # After cutover the previous space is still written (so a rollback loses nothing).
    [after] = ingest(p, a, [encode(photos(["coffee.png"])["coffee"].rotate(90))], "after")
    wait_for(
        lambda: len(rows(p, "SELECT 1 FROM image_spaces WHERE image_id = %s", after)) == 2,
        timeout=60,
    )
    r = p.client.post("/api/admin/models/rollback", headers=root, json={})
    assert r.status_code == 200, r.text
    space, found, _ = search_all(p, a, data[0])
    assert space == old_space and after in found and len(found) == len(ids_a) + 2

    # Migrating again is refused until... no: after rollback the target is kept, so cutover
    # works again; cleanup abandons it and drops the space no tenant uses any more.
    r = p.client.delete(f"/api/collections/{new_space}?force=true", headers=root)
    assert r.status_code == 409 and r.json()["error"]["code"] == "collection_in_migration"
    r = p.client.post("/api/admin/models/cleanup", headers=root, json={})
    assert r.status_code == 200, r.text
    names = [c["name"] for c in p.client.get("/api/collections", headers=root).json()]
    assert new_space not in names and old_space in names
    assert rows(p, "SELECT count(*) FROM image_spaces WHERE space = %s", new_space) == [(0,)]
    st = progress(p, root)
    assert st["platform"] == {
        "activeModel": st["platform"]["activeModel"],
        "targetModel": None,
        "previousModel": None,
    }

    # Reindex rebuilds the active space after its points are lost.
    vectors = p.container.vectors
    tid = uuid.UUID(b["tenant"]["id"])
    vectors.delete_tenant(old_space, tenant_id=tid)
    assert vectors.count(old_space, tenant_id=tid) == 0
    r = p.client.post("/api/admin/models/reindex", headers=root, json={"tenantId": str(tid)})
    assert r.status_code == 202 and r.json() == {"tenantsQueued": 1}
    wait_for(lambda: vectors.count(old_space, tenant_id=tid) == len(ids_b), timeout=60)
    space, found, _ = search_all(p, b, data[10])
    assert sorted(found) == sorted(ids_b)
    # Tenant A was never touched by B's reindex.
    assert vectors.count(old_space, tenant_id=uuid.UUID(a["tenant"]["id"])) == len(ids_a) + 2


def test_enterprise_tenant_of_its_own_model_leaves_others_alone(
    platform: Platform, broker: LocalBroker
) -> None:
    p = platform
    root = sysadmin(p)
    ent, other = p.signup("Big Co"), p.signup("Small Co")
    data = blobs(8)
    ids_e = ingest(p, ent, data[:5], "e")
    ids_o = ingest(p, other, data[5:8], "o")
    tid = ent["tenant"]["id"]
    body = {"to": TARGET, "tenantId": tid}
    r = p.client.post("/api/admin/models/migrate", headers=root, json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "tier_required"
    assert p.client.put(f"/api/tenants/{tid}", headers=root, json={"tier": "Enterprise"}).is_success
    r = p.client.post("/api/admin/models/migrate", headers=root, json=body)
    assert r.status_code == 202, r.text
    assert r.json()["platform"]["targetModel"] is None
    wait_for(lambda: done(p, root), timeout=120, interval=0.3)
    r = p.client.post("/api/admin/models/cutover", headers=root, json={"tenantId": tid})
    assert r.status_code == 200, r.text
    space_e, found_e, _ = search_all(p, ent, data[0])
    space_o, found_o, _ = search_all(p, other, data[5])
    assert "320" in space_e and sorted(found_e) == sorted(ids_e)
    assert space_o == other["tenant"]["qdrantCollectionName"] and sorted(found_o) == sorted(ids_o)
    assert p.container.vectors.count(space_e, tenant_id=uuid.UUID(other["tenant"]["id"])) == 0


def tiny_onnx(path: Path, *, dim: int = 256, pooled: bool = True, seed: int = 0) -> Path:
    """A small random-weights image encoder: conv → relu → (global average pool → linear)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    channels = 16 if pooled else dim
    w = numpy_helper.from_array(rng.normal(0, 0.2, (channels, 3, 8, 8)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["pixels", "w"], ["c"], strides=[8, 8]),
        helper.make_node("Relu", ["c"], ["r"]),
    ]
    inits = [w]
    if pooled:
        fc = numpy_helper.from_array(rng.normal(0, 0.5, (channels, dim)).astype(np.float32), "fc")
        nodes += [
            helper.make_node("GlobalAveragePool", ["r"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("MatMul", ["f", "fc"], ["embedding"]),
        ]
        inits.append(fc)
        out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", dim])
    else:
        nodes.append(helper.make_node("Identity", ["r"], ["embedding"]))
        out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", dim, "h", "w"])
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, None, None])],
        [out],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_own_onnx_model_registers_migrates_and_serves(
    platform: Platform, broker: LocalBroker, tmp_path: Path
) -> None:
    p = platform
    root = sysadmin(p)
    t = p.signup("Own Model")
    data = blobs(6)
    ids = ingest(p, t, data, "m")
    good = tiny_onnx(tmp_path / "tiny.onnx")
    reg = {"name": "tiny256", "source": str(good), "inputSize": 128, "dimension": 256}

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(good.read_bytes()[:200])
    r = p.client.post(
        "/api/admin/models/custom", headers=root, json={**reg, "source": str(corrupt)}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_model_file"
    r = p.client.post("/api/admin/models/custom", headers=root, json={**reg, "dimension": 128})
    assert r.status_code == 422 and r.json()["error"]["code"] == "model_dimension_mismatch"
    assert "256" in r.json()["error"]["message"]
    r = p.client.post(
        "/api/admin/models/custom", headers=root, json={**reg, "source": str(tmp_path / "no")}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "model_file_not_found"
    r = p.client.post("/api/admin/models/custom", headers=t["headers"], json=reg)
    assert r.status_code == 403

    r = p.client.post("/api/admin/models/custom", headers=root, json=reg)
    assert r.status_code == 201, r.text
    ref = r.json()["ref"]
    assert ref == "tiny256:inside:128" and r.json()["similarity"] == "raw cosine"
    r = p.client.post("/api/admin/models/custom", headers=root, json=reg)
    assert r.status_code == 409
    # A feature-map model pooled by DeepLens registers too.
    fmap = tiny_onnx(tmp_path / "fmap.onnx", dim=64, pooled=False)
    r = p.client.post(
        "/api/admin/models/custom",
        headers=root,
        json={**reg, "name": "fmap64", "source": str(fmap), "dimension": 64, "pooling": "gem"},
    )
    assert r.status_code == 201, r.text

    r = p.client.post("/api/admin/models/migrate", headers=root, json={"to": "tiny256"})
    assert r.status_code == 202, r.text
    wait_for(lambda: done(p, root), timeout=120, interval=0.3)
    r = p.client.post("/api/admin/models/cutover", headers=root, json={})
    assert r.status_code == 200, r.text
    space, found, resp = search_all(p, t, data[2])
    assert sorted(found) == sorted(ids) and found[0] == ids[2]
    assert resp.headers["x-deeplens-model"] == ref
    assert resp.headers["x-deeplens-similarity"] == "raw"
    vec = p.client.get(f"/api/images/{ids[0]}/vector", headers=t["headers"])
    assert vec.status_code == 200 and len(vec.json()["vector"]) == 256

    # Calibration follows the model: `deeplens eval --model` fits one on the dev set.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DEEPLENS_")},
        "DEEPLENS_DATABASE_URL": p.container.database_url,
        "DEEPLENS_DATA_DIR": str(p.container.settings.data_dir),
        "DEEPLENS_ENV": "test",
    }
    root_dir = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-m", "shared.cli", "eval", "--model", ref, "--faces", "5"],
        env=env,
        cwd=root_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    fitted = float(run.stdout.strip().splitlines()[-1].split('"rawCosineAt0.7": ')[1].split(",")[0])
    assert 0.3 <= fitted <= 0.99
    p.container.models.forget()  # the platform re-reads calibrations within SPEC_TTL anyway
    _, _, resp = search_all(p, t, data[2])
    assert resp.headers["x-deeplens-similarity"] == "calibrated"
    top = resp.json()[0]
    assert top["imageId"] == ids[2] and abs(top["similarity"] - 1.0) < 1e-3
    models = {m["model"]: m for m in progress(p, root)["models"]}
    assert models[ref]["similarity"] == "calibrated"


def test_changing_the_model_setting_hides_nothing(
    database_url: str, tmp_path: Path, embedder: Any
) -> None:
    """The old failure: change the model setting, restart, and every image vanished from
    search. Now tenants keep searching the space their images are in until migrated."""
    from tests.conftest import make_platform

    p = make_platform(database_url, tmp_path, embedder=embedder)
    try:
        broker = start_broker(p)
        t = p.signup("Steady")
        data = blobs(4)
        ids = ingest(p, t, data, "s")
        broker.stop()
    finally:
        p.fn.stop()
    p = make_platform(database_url, tmp_path, env={"DEEPLENS_FEATURES__INPUT_SIZE": "320"})
    try:
        space, found, r = search_all(p, t, data[1])
        assert space == t["tenant"]["qdrantCollectionName"] and "224" in space
        assert r.headers["x-deeplens-model"] == "efficientnet-lite0:gem:224"
        assert sorted(found) == sorted(ids) and found[0] == ids[1]
    finally:
        p.fn.stop()
