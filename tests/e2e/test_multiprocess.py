"""`deeplens up` as a supervisor of function processes: the layout it reports is real (one
process per function group, each a func-python server on 127.0.0.1), the ingress never routes
the event endpoints, a SIGKILLed extract process is restarted and no accepted image is lost or
indexed twice, and SIGTERM leaves no process behind, the embedded PostgreSQL included."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from PIL import Image

from shared.config import VectorSettings
from shared.vectors import EdgeIndex
from tests.e2e.conftest import signup, start_platform, wait_all
from tests.photos import COLOUR, encode, photos

pytestmark = pytest.mark.e2e


def state(data_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((data_dir / "run" / "processes.json").read_text())
    return doc


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return text.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def listening_ports(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets pid listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
            hexaddr, hexport = cols[1].split(":")
            addr = ".".join(str(int(hexaddr[i : i + 2], 16)) for i in (6, 4, 2, 0))
            out.add((addr, int(hexport, 16)))
    return out


def wait_started(data_dir: Path, timeout: float = 60) -> dict[str, Any]:
    """The state once every process has started (the pipeline starts after the public ones)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = state(data_dir)
        if all(p["pid"] for p in doc["processes"]):
            return doc
        time.sleep(0.2)
    raise AssertionError(f"not all started: {state(data_dir)}")


def wait_ready_again(data_dir: Path, names: list[str], old: dict[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = {p["name"]: p for p in state(data_dir)["processes"]}
        if all(procs[n]["pid"] != old[n] and procs[n]["restarts"] >= 1 for n in names):
            return
        time.sleep(0.2)
    raise AssertionError(f"not restarted: {state(data_dir)}")


def noise_images(n: int, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    base = list(photos(COLOUR).values())
    out = []
    for i in range(n):
        img = base[i % len(base)].resize((192, 144))
        arr = np.asarray(img, dtype=np.int16)
        arr = arr + rng.integers(-40, 40, size=arr.shape)
        out.append(encode(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), quality=85))
    return out


def test_layout_processes_and_event_endpoints_not_routed(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=database_url)
    try:
        doc = wait_started(data_dir)
        procs = {p["name"]: p for p in doc["processes"]}
        assert doc["supervisor"] == run.proc.pid
        from functions import FUNCTIONS

        groups = {tuple(p["functions"]) for p in doc["processes"] if p["functions"]}
        served = [f for g in groups for f in g]
        assert sorted(served) == sorted(FUNCTIONS)  # every function in exactly one group
        for p in doc["processes"]:
            if p["functions"]:
                assert alive(p["pid"]), p
                # a function process listens on 127.0.0.1 only, on its own port
                deadline = time.monotonic() + 60
                while not listening_ports(p["pid"]) and time.monotonic() < deadline:
                    time.sleep(0.2)  # the pipeline's processes are still importing
                assert listening_ports(p["pid"]) == {("127.0.0.1", p["port"])}
                env = Path(f"/proc/{p['pid']}/environ").read_bytes().split(b"\0")
                assert f"FUNCTION_TARGET={','.join(p['functions'])}".encode() in env
                cmd = Path(f"/proc/{p['pid']}/cmdline").read_bytes()
                assert b"shared.local.funcserve" in cmd
        assert "core" in procs and "search" in procs["core"]["functions"]
        # The event endpoints answer the broker only: the ingress does not route them.
        for path in ("/events/extract", "/events/process-image", "/events/dead-letter"):
            r = run.http.post(path, content=b"{}", headers={"content-type": "application/json"})
            assert r.status_code == 404, (path, r.status_code)
            assert r.json()["error"]["code"] == "not_found"
        assert run.http.get("/openapi.json").json()["paths"]
        assert not any(
            p.startswith("/events") for p in run.http.get("/openapi.json").json()["paths"]
        )
    finally:
        run.stop()


def test_sigkill_extract_mid_ingest_every_image_indexed_once(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=database_url)
    try:
        t = signup(run.http, "Killed Extract")
        blobs = noise_images(200)
        ids: list[str] = []
        killed: dict[str, int] = {}
        for i, blob in enumerate(blobs):
            r = run.http.post(
                "/api/images/upload",
                headers=t["key_headers"],
                files={"file": (f"n-{i}.jpg", blob, "image/jpeg")},
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["imageId"])
            if i == 60:
                for p in wait_started(data_dir)["processes"]:
                    if p["functions"] == ["extract"]:
                        os.kill(p["pid"], signal.SIGKILL)
                        killed[p["name"]] = p["pid"]
        assert killed
        wait_ready_again(data_dir, list(killed), killed, timeout=120)
        status = wait_all(run.http, t["key_headers"], set(ids), timeout=300, log=run.log)
        assert set(status.values()) == {"indexed"}, status
        space = t["tenant"]["qdrantCollectionName"]
        with psycopg.connect(database_url) as conn:
            dead = conn.execute(
                "SELECT count(*) FROM broker_deliveries WHERE status = 'dead'"
            ).fetchone()
        assert dead == (0,)
        log = run.log.read_text()
        assert "restarting in" in log
    finally:
        run.stop()
    index = EdgeIndex(data_dir / "vectors", VectorSettings())
    try:
        tenant = uuid.UUID(t["tenant"]["id"])
        assert index.count(space, tenant_id=tenant) == len(ids)  # once each, none lost
        for image_id in ids[::10]:
            assert index.get_vector(space, tenant_id=tenant, point_id=uuid.UUID(image_id))
    finally:
        index.close()


def test_sigterm_stops_every_process_and_embedded_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=None, timeout=60)
    pids = [p["pid"] for p in wait_started(data_dir)["processes"]]
    postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    everything = [run.proc.pid, postmaster, *pids]
    assert all(alive(p) for p in everything)
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    run.proc.wait(timeout=10)
    while time.monotonic() - t0 < 10 and any(alive(p) for p in everything):
        time.sleep(0.1)
    left = [p for p in everything if alive(p)]
    print(f"\nstopped {len(everything)} processes in {time.monotonic() - t0:.2f}s")
    assert left == [], left
    run.http.close()


def test_single_process_mode_still_serves_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=None, args=["--single-process"], timeout=60)
    postmaster = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    try:
        t = signup(run.http, "Single")
        r = run.http.post(
            "/api/images/upload",
            headers=t["key_headers"],
            files={"file": ("one.jpg", noise_images(1)[0], "image/jpeg")},
        )
        assert r.status_code == 202
        assert set(wait_all(run.http, t["key_headers"], {r.json()["imageId"]}).values()) == {
            "indexed"
        }
        assert not (data_dir / "run" / "processes.json").exists()  # no supervisor here
    finally:
        run.stop()
    deadline = time.monotonic() + 10
    while alive(postmaster) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(postmaster)  # SIGTERM stops the embedded PostgreSQL in this mode too


def test_functions_see_the_client_address_behind_the_ingress(
    database_url: str, tmp_path: Path
) -> None:
    """Sign-in throttling per address counts each client, not the ingress (one trusted hop;
    a client's own X-Forwarded-For is replaced)."""
    import httpx

    run = start_platform(
        tmp_path / "data",
        database_url=database_url,
        extra_env={"DEEPLENS_LOGIN_MAX_FAILURES_PER_ADDRESS": "3"},
    )

    def client(address: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=run.url, transport=transport, timeout=30)

    try:
        with client("127.0.0.2") as a, client("127.0.0.3") as b:
            for i in range(3):
                r = a.post(
                    "/api/auth/login",
                    json={"email": f"nobody{i}@x.test", "password": "wrong-password"},
                    headers={"X-Forwarded-For": "10.9.9.9"},  # spoofed: ignored
                )
                assert r.status_code == 401
            r = a.post("/api/auth/login", json={"email": "n3@x.test", "password": "wrong"})
            assert r.status_code == 429 and r.json()["error"]["code"] == "login_throttled"
            r = b.post("/api/auth/login", json={"email": "n4@x.test", "password": "wrong"})
            assert r.status_code == 401  # another address is not throttled
    finally:
        run.stop()
