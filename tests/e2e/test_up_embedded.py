"""`deeplens up` with no DEEPLENS_DATABASE_URL: embedded PostgreSQL, ready within 10 s, and the
data survives a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.cli import build_parser
from tests.e2e.conftest import start_platform

pytestmark = pytest.mark.e2e


def test_default_port_is_8080() -> None:
    args = build_parser().parse_args(["up"])
    assert args.port == 8080 and args.host == "127.0.0.1"


def test_up_without_database_url_serves_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    t0 = time.monotonic()
    run = start_platform(data_dir, database_url=None, timeout=30)
    ready_in = time.monotonic() - t0
    print(f"\nready in {ready_in:.2f}s (embedded PostgreSQL, first start)")
    try:
        assert ready_in < 10
        r = run.http.post(
            "/api/tenants",
            json={
                "name": "Keep Me",
                "adminEmail": "k@keep.test",
                "adminPassword": "correct horse battery",
            },
        )
        assert r.status_code == 201
        assert run.http.get("/docs").status_code == 200
    finally:
        run.stop()
    assert (data_dir / "postgres").is_dir()
    t0 = time.monotonic()
    run = start_platform(data_dir, database_url=None, timeout=30)
    print(f"ready in {time.monotonic() - t0:.2f}s (restart)")
    try:
        r = run.http.post(
            "/api/auth/login", json={"email": "k@keep.test", "password": "correct horse battery"}
        )
        assert r.status_code == 200
        assert r.json()["user"]["email"] == "k@keep.test"
    finally:
        run.stop()
