"""Shared fixtures: a throw-away database on the real PostgreSQL, real images, a platform."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image

ADMIN_URL = os.environ.get(
    "DEEPLENS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _url_for(dbname: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh database per test, dropped afterwards."""
    name = f"deeplens_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _url_for(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def base_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "DEEPLENS_ENV": "test",
        "DEEPLENS_DATABASE_URL": database_url,
        "DEEPLENS_DATA_DIR": str(data_dir),
        "DEEPLENS_BCRYPT_ROUNDS": "4",
        "DEEPLENS_BROKER_AUTOSTART": "0",
        # Tests sign up many tenants from one address (tests/integration/test_security.py
        # checks the limit itself).
        "DEEPLENS_SIGNUPS_PER_ADDRESS_PER_HOUR": "100000",
    }
    env.update(extra)
    return env


class Platform:
    """A started function instance plus an HTTP client over its real ASGI handler."""

    def __init__(self, fn: Any, client: TestClient):
        self.fn, self.client = fn, client

    @property
    def container(self) -> Any:
        return self.fn.container

    @property
    def event_headers(self) -> dict[str, str]:
        """What the broker adds to every delivery (events/auth.py): event routes need it."""
        from events.auth import sender_headers

        return sender_headers(self.container.settings)

    def signup(
        self, name: str = "Acme", email: str | None = None, password: str = "correct horse battery"
    ) -> dict[str, Any]:
        email = email or f"owner-{uuid.uuid4().hex[:6]}@example.com"
        r = self.client.post(
            "/api/tenants", json={"name": name, "adminEmail": email, "adminPassword": password}
        )
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        body["email"], body["password"] = email, password
        body["headers"] = {"Authorization": f"Bearer {body['accessToken']}"}
        return body


def make_platform(
    database_url: str,
    data_dir: Path,
    *,
    only: list[str] | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Platform:
    from function import new

    fn = new(only=only, **overrides)
    fn.start(base_env(database_url, data_dir, **(env or {})))
    return Platform(fn, TestClient(fn.handle, raise_server_exceptions=False))


@pytest.fixture
def identity(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    """auth + tenants, as the identity tests need."""
    p = make_platform(database_url, tmp_path, only=["auth", "tenants"])
    try:
        yield p
    finally:
        p.fn.stop()


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One loaded model for the whole session (the container does not close what it is given)."""
    from shared.config import Settings
    from shared.features.embedder import LocalEmbedder

    data = tmp_path_factory.mktemp("embedder")
    emb = LocalEmbedder(Settings.from_env({"DEEPLENS_DATA_DIR": str(data)}))
    yield emb
    emb.close()


@pytest.fixture
def platform(database_url: str, tmp_path: Path, embedder: Any) -> Iterator[Platform]:
    """Every function in one instance; the broker is not running (tests drive events)."""
    p = make_platform(database_url, tmp_path, embedder=embedder)
    try:
        yield p
    finally:
        p.fn.stop()


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
