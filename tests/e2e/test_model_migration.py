"""Change the model without downtime, over HTTP against ``deeplens up``, driven by the real
``deeplens models`` CLI: 60 images indexed with efficientnet-lite0 (GeM 224) migrate to GeM 320
while clients search continuously; the platform is SIGKILLed mid-backfill and restarted;
cutover, rollback and cleanup. Every search succeeds and is answered by one complete space;
uploads during the migration are searchable before and after cutover; each image ends up in
the target exactly once; the other tenant's searches never change."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import ROOT, Running, signup, start_platform, wait_all
from tests.photos import COLOUR, GREY, edits, encode, photos

pytestmark = pytest.mark.e2e
TARGET = "efficientnet-lite0:gem:320"
ADMIN = ("root@deeplens.test", "root-password-1")
FAST = {
    "DEEPLENS_BROKER_LEASE_SECONDS": "2",
    "DEEPLENS_SWEEPER_STUCK_SECONDS": "2",
    "DEEPLENS_SWEEPER_INTERVAL_SECONDS": "1",
    # Small batches: the backfill is still running when the test kills the platform.
    "DEEPLENS_MODELS_BACKFILL_BATCH": "2",
}


def images(n: int) -> list[bytes]:
    out: list[bytes] = []
    for img in photos(COLOUR + GREY).values():
        img.thumbnail((256, 256))
        out += [encode(img)] + [encode(e) for e in edits(img).values()]
    assert len(out) >= n
    return out[:n]


def cli(run: Running, data_dir: Path, *args: str, check: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPLENS_")}
    env.update(
        {
            "DEEPLENS_ENV": "test",
            "DEEPLENS_DATABASE_URL": run.database_url or "",
            "DEEPLENS_DATA_DIR": str(data_dir),
            "DEEPLENS_URL": run.url,
            "DEEPLENS_ADMIN_EMAIL": ADMIN[0],
            "DEEPLENS_ADMIN_PASSWORD": ADMIN[1],
        }
    )
    p = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout + p.stderr


@dataclass
class Searcher:
    """A client searching in a loop; pausable around a deliberate crash."""

    url: str
    headers: dict[str, str]
    query: bytes
    answers: list[tuple[float, str, list[str]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    running: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    idle: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.running.set()
        threading.Thread(target=self._loop, daemon=True).start()

    def pause(self) -> None:
        self.running.clear()
        self.idle.wait(30)

    def resume(self, url: str) -> None:
        self.url = url
        self.running.set()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            if not self.running.is_set():
                self.idle.set()
                time.sleep(0.05)
                continue
            self.idle.clear()
            t0 = time.monotonic()
            try:
                r = httpx.post(
                    self.url + "/api/images/search",
                    headers=self.headers,
                    files={"file": ("q.jpg", self.query)},
                    data={"limit": "100", "threshold": "-1"},
                    timeout=60,
                )
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code}: {r.text[:200]}")
                else:
                    ids = [x["imageId"] for x in r.json()]
                    self.answers.append((t0, r.headers["x-deeplens-space"], ids))
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            time.sleep(0.1)


def status(http: httpx.Client, headers: dict[str, str]) -> dict[str, Any]:
    r = http.get("/api/admin/models", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_migration_with_continuous_search_crash_cutover_rollback_cleanup(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=database_url, extra_env=FAST)
    searchers: list[Searcher] = []
    try:
        out = cli(run, data_dir, "admin", "create", "--email", ADMIN[0], "--password", ADMIN[1])
        login = run.http.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        root = {"Authorization": f"Bearer {login.json()['accessToken']}"}
        a, b = signup(run.http, "Moving Co"), signup(run.http, "Staying Co")
        blobs = images(70)
        ids_a: list[str] = []
        for i, blob in enumerate(blobs[:60]):
            r = run.http.post(
                "/api/images/upload", headers=a["key_headers"], files={"file": (f"{i}.jpg", blob)}
            )
            assert r.status_code == 202, r.text
            ids_a.append(r.json()["imageId"])
        ids_b = []
        for i, blob in enumerate(blobs[60:65]):
            r = run.http.post(
                "/api/images/upload", headers=b["key_headers"], files={"file": (f"b{i}.jpg", blob)}
            )
            ids_b.append(r.json()["imageId"])
        assert set(wait_all(run.http, a["key_headers"], set(ids_a)).values()) == {"indexed"}
        assert set(wait_all(run.http, b["key_headers"], set(ids_b)).values()) == {"indexed"}
        old_space = a["tenant"]["qdrantCollectionName"]

        searchers = [
            Searcher(run.url, a["key_headers"], blobs[0]),
            Searcher(run.url, b["key_headers"], blobs[60]),
        ]
        for s in searchers:
            s.start()
        out = cli(run, data_dir, "models", "migrate", "--to", TARGET)
        assert "migrating to" in out
        new_space = next(t["otherSpace"] for t in status(run.http, root)["tenants"])

        # Uploads during the migration.
        live = []
        for i, blob in enumerate(blobs[65:68]):
            r = run.http.post(
                "/api/images/upload", headers=a["key_headers"], files={"file": (f"l{i}.jpg", blob)}
            )
            live.append(r.json()["imageId"])
        wait_all(run.http, a["key_headers"], set(live))
        live_indexed_at = time.monotonic()

        # SIGKILL mid-backfill, then restart on the same data.
        deadline = time.monotonic() + 180
        while True:
            mine = next(t for t in status(run.http, root)["tenants"] if t["slug"] == "moving-co")
            if mine["progress"]["done"] >= 8:
                break
            assert time.monotonic() < deadline, mine
            time.sleep(0.1)
        for s in searchers:
            s.pause()
        run.kill()
        assert 0 < mine["progress"]["remaining"], "the backfill finished before the kill"
        killed_at = mine["progress"]
        run = start_platform(data_dir, database_url=database_url, extra_env=FAST)
        for s in searchers:
            s.resume(run.url)
        out = cli(run, data_dir, "models", "status", "--watch", "0.5")
        assert "0 remaining" in out, out
        st = status(run.http, root)
        assert all(t["complete"] for t in st["tenants"]), st
        assert st["totals"]["failures"] == 0

        # Every image of A (60 + 3 live) is in the target exactly once.
        with psycopg.connect(database_url) as conn:
            held = conn.execute(
                "SELECT image_id::text FROM image_spaces WHERE space = %s AND tenant_id = %s",
                (new_space, a["tenant"]["id"]),
            ).fetchall()
        assert sorted(h[0] for h in held) == sorted(ids_a + live)
        # ... and the vector index agrees: one point per image of both tenants, no repeats.
        spaces = {c["name"]: c for c in run.http.get("/api/collections", headers=root).json()}
        assert spaces[new_space]["vectors"] == len(ids_a) + len(live) + len(ids_b)
        assert spaces[new_space]["dimension"] == 1280

        time.sleep(1.0)  # searches keep running on the complete target, still not active
        out = cli(run, data_dir, "models", "cutover")
        cutover_at = time.monotonic()
        time.sleep(2.0)
        rollback_started = time.monotonic()
        out = cli(run, data_dir, "models", "rollback")
        rollback_at = time.monotonic()
        time.sleep(1.5)
        for s in searchers:
            s.pause()
            s.stopped.set()

        # The searching clients: zero failures, every answer from one complete space.
        sa, sb = searchers
        assert not sa.failures and not sb.failures, (sa.failures[:3], sb.failures[:3])
        every_a = set(ids_a + live)
        spaces_seen = set()
        for t0, space, ids in sa.answers:
            spaces_seen.add(space)
            assert space in (old_space, new_space)
            assert set(ids) <= every_a and set(ids_a) <= set(ids), (space, len(ids))
            if t0 > live_indexed_at:
                assert set(live) <= set(ids)
            if cutover_at < t0 < rollback_started:
                assert space == new_space
            if t0 > rollback_at:
                assert space == old_space
        assert spaces_seen == {old_space, new_space}
        assert any(cutover_at < t0 < rollback_started for t0, _, _ in sa.answers)
        for _, _, ids in sb.answers:  # the other tenant: always exactly its own images
            assert sorted(ids) == sorted(ids_b)
        assert len(sa.answers) > 20 and len(sb.answers) > 20

        out = cli(run, data_dir, "models", "cleanup")
        names = [c["name"] for c in run.http.get("/api/collections", headers=root).json()]
        assert new_space not in names and old_space in names
        r = run.http.post(
            "/api/images/search",
            headers=a["key_headers"],
            files={"file": ("q.jpg", blobs[1])},
            data={"limit": "100", "threshold": "-1"},
        )
        assert r.headers["x-deeplens-space"] == old_space and len(r.json()) == len(every_a)
        # `deeplens reindex` rebuilds the other tenant's active space from its originals.
        out = cli(run, data_dir, "reindex", "--tenant", "staying-co")
        assert "1 tenant" in out, out
        with psycopg.connect(database_url) as conn:
            deadline = time.monotonic() + 120
            while True:
                [(state,)] = conn.execute(
                    "SELECT state FROM backfills WHERE kind = 'reindex' AND tenant_id = %s",
                    (b["tenant"]["id"],),
                ).fetchall()
                if state == "done":
                    break
                assert time.monotonic() < deadline
                time.sleep(0.3)
            [(n,)] = conn.execute(
                "SELECT count(*) FROM image_spaces WHERE tenant_id = %s AND space = %s",
                (b["tenant"]["id"], old_space),
            ).fetchall()
        assert n == len(ids_b)
        r = run.http.post(
            "/api/images/search",
            headers=b["key_headers"],
            files={"file": ("q.jpg", blobs[61])},
            data={"limit": "100", "threshold": "-1"},
        )
        assert sorted(x["imageId"] for x in r.json()) == sorted(ids_b)
        print(f"\nkilled at {killed_at}; {len(sa.answers)} + {len(sb.answers)} searches, 0 failed")
    finally:
        for s in searchers:
            s.stopped.set()
        run.stop()
