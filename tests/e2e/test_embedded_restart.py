"""Embedded PostgreSQL after crashes: SIGKILL of the platform and of PostgreSQL itself, then an
immediate restart that works the first time, and a clean stop that stops PostgreSQL again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from shared.embedded import HANDLES, prune_dead_handles
from tests.e2e.conftest import start_platform

pytestmark = pytest.mark.e2e


def _postmaster(data_dir: Path) -> int | None:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped) is not running.
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_prune_dead_handles(tmp_path: Path) -> None:
    (tmp_path / HANDLES).write_text(f"[{os.getpid()}, 999999999]")
    assert prune_dead_handles(tmp_path) == [999999999]
    assert (tmp_path / HANDLES).read_text() == f"[{os.getpid()}]"


def test_restart_after_sigkill_of_platform_and_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run = start_platform(data_dir, database_url=None, timeout=60)
    body = {"name": "Crash", "adminEmail": "c@crash.test", "adminPassword": "correct horse battery"}
    assert run.http.post("/api/tenants", json=body).status_code == 201
    # 1. SIGKILL the platform only: the next start works, and a clean stop stops PostgreSQL.
    run.kill()
    run = start_platform(data_dir, database_url=None, timeout=60)
    login = {"email": "c@crash.test", "password": "correct horse battery"}
    assert run.http.post("/api/auth/login", json=login).status_code == 200
    pg = _postmaster(data_dir)
    assert _running(pg)
    run.stop()
    deadline = time.monotonic() + 20
    while _running(pg) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(pg), "a clean stop left embedded PostgreSQL running"
    # 2. SIGKILL the platform and PostgreSQL at once, restart within a second: first time.
    run = start_platform(data_dir, database_url=None, timeout=60)
    pg = _postmaster(data_dir)
    assert pg is not None
    os.kill(pg, signal.SIGKILL)
    run.kill()
    time.sleep(0.5)
    t0 = time.monotonic()
    run = start_platform(data_dir, database_url=None, timeout=90)
    print(f"\nrestarted in {time.monotonic() - t0:.2f}s after SIGKILL of platform + PostgreSQL")
    try:
        assert run.http.post("/api/auth/login", json=login).status_code == 200
    finally:
        run.stop()
