"""The whole platform as a user runs it: ``deeplens up`` in a subprocess, driven over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    def __init__(
        self, proc: subprocess.Popen[bytes], url: str, log: Path, database_url: str | None = None
    ):
        self.proc, self.url, self.log = proc, url, log
        self.database_url = database_url
        self.http = httpx.Client(base_url=url, timeout=60)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.http.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()


def start_platform(
    data_dir: Path,
    *,
    database_url: str | None,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 90,
    args: list[str] | None = None,
) -> Running:
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPLENS_")}
    env.update({"DEEPLENS_ENV": "test", "DEEPLENS_BCRYPT_ROUNDS": "4", "PYTHONUNBUFFERED": "1"})
    env["DEEPLENS_SIGNUPS_PER_ADDRESS_PER_HOUR"] = "100000"  # tests sign up many tenants
    if database_url:
        env["DEEPLENS_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    log = data_dir / f"platform-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shared.cli",
                "up",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                *(args or []),
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, log, timeout)
    return Running(proc, url, log, database_url)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    """Wait until the process at ``url`` answers its readiness probe; on an early exit or a
    timeout (the process is killed then) fail with the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args!r} exited early:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/health/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"not ready in {timeout}s:\n{log.read_text()[-4000:]}")


def create_admin(running: Running, email: str, password: str) -> None:
    """A system administrator, made the way an operator does: ``deeplens admin create``
    against the running platform's database."""
    assert running.database_url is not None
    env = {
        **os.environ,
        "DEEPLENS_DATA_DIR": str(running.log.parent),
        "DEEPLENS_DATABASE_URL": running.database_url,
    }
    subprocess.run(
        [sys.executable, "-m", "shared.cli", "admin", "create", "--email", email]
        + ["--password", password],
        check=True,
        env=env,
        cwd=ROOT,
    )


def signup(http: httpx.Client, name: str) -> dict[str, Any]:
    email = f"owner@{name.lower().replace(' ', '-')}.test"
    r = http.post(
        "/api/tenants",
        json={"name": name, "adminEmail": email, "adminPassword": "correct horse battery"},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    body["headers"] = {"Authorization": f"Bearer {body['accessToken']}"}
    key = http.post(
        f"/api/tenants/{body['tenant']['id']}/api-keys",
        headers=body["headers"],
        json={"name": "e2e"},
    )
    assert key.status_code == 201
    body["key_headers"] = {"X-API-Key": key.json()["key"]}
    return body


def wait_all(
    http: httpx.Client,
    headers: dict[str, str],
    ids: set[str],
    timeout: float = 180,
    log: Path | None = None,
) -> dict[str, str]:
    """Wait until every image in ``ids`` is indexed or failed; on a timeout fail with the
    count per status and (given the platform's ``log``) its last warnings and errors."""
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    while time.monotonic() < deadline:
        items = http.get("/api/images", params={"pageSize": 200}, headers=headers).json()["items"]
        status = {i["id"]: i["status"] for i in items if i["id"] in ids}
        if len(status) == len(ids) and all(s in ("indexed", "failed") for s in status.values()):
            return status
        time.sleep(0.2)
    counts = Counter(status.values())
    problems = ""
    if log is not None and log.exists():
        lines = log.read_text(errors="replace").splitlines()
        bad = [ln for ln in lines if any(w in ln.lower() for w in ("warning", "error"))]
        problems = "\n" + "\n".join(ln[:400] for ln in bad[-40:])
    raise AssertionError(f"not all indexed in {timeout}s: {dict(counts)} of {len(ids)}{problems}")
