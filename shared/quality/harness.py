"""The in-process platform the evaluation runs against, and its report.

Shipped code (``deeplens eval``) must not import the test suite, so this is the little of it the
evaluation needs: every function in one instance over its real ASGI handler, on a throw-away
database of the PostgreSQL named by ``DEEPLENS_TEST_ADMIN_URL``; the pipeline's events driven
by hand (the broker is not started), each delivered over HTTP as the broker would.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import psycopg

from shared.quality.report import OUT as OUT
from shared.quality.report import machine as machine
from shared.quality.report import report as report
from shared.store import deliveries, tenants

# Where report() writes NAME.json (the benchmarks' folder, as `deeplens bench` does).
PIPELINE = ("/events/process-image", "/events/extract", "/events/index-vector")


def admin_url() -> str:
    return os.environ.get(
        "DEEPLENS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )


class Platform:
    """A started function instance and an HTTP client over its ASGI handler."""

    def __init__(self, db_url: str, data_dir: Path, **overrides: Any) -> None:
        from fastapi.testclient import TestClient

        from function import new

        self.fn = new(**overrides)
        self.fn.start(
            {
                "DEEPLENS_ENV": "test",
                "DEEPLENS_DATABASE_URL": db_url,
                "DEEPLENS_DATA_DIR": str(data_dir),
                "DEEPLENS_BCRYPT_ROUNDS": "4",
                "DEEPLENS_BROKER_AUTOSTART": "0",
                "DEEPLENS_SIGNUPS_PER_ADDRESS_PER_HOUR": "100000",
                # The model and search switches, from the environment: A/B runs of the eval.
                **{k: v for k, v in os.environ.items() if k.startswith("DEEPLENS_FEATURES__")},
            }
        )
        self.client = TestClient(self.fn.handle, raise_server_exceptions=False)

    @property
    def container(self) -> Any:
        return self.fn.container

    def signup(self, name: str) -> dict[str, str]:
        """A tenant without the Free tier's daily limits; returns its auth headers."""
        r = self.client.post(
            "/api/tenants",
            json={
                "name": name,
                "adminEmail": f"owner-{uuid.uuid4().hex[:6]}@example.com",
                "adminPassword": "correct horse battery",
            },
        )
        assert r.status_code == 201, r.text
        tenant_id = uuid.UUID(r.json()["tenant"]["id"])
        with self.container.db.tx() as conn:
            tenants.update(conn, tenant_id=tenant_id, column="max_api_calls_per_day", value=10**7)
            tenants.update(conn, tenant_id=tenant_id, column="max_storage_bytes", value=10**11)
        return {"Authorization": f"Bearer {r.json()['accessToken']}"}

    def run_pipeline(self) -> None:
        """Deliver every pending upload event through process-image → extract → index-vector."""
        from events.auth import sender_headers
        from events.codec import decode, encode_binary, from_json

        auth = sender_headers(self.container.settings)
        with self.container.db.tx() as conn:
            rows = deliveries.pending_events(conn)
        for raw in rows:
            ev = from_json(raw)
            for path in PIPELINE:
                headers, body = encode_binary(ev)
                r = self.client.post(path, headers={**headers, **auth}, content=body)
                assert r.status_code == 200, (path, r.text)
                ev = decode(dict(r.headers), r.content)
        with self.container.db.tx() as conn:
            deliveries.all_pending_done(conn)


@contextmanager
def platform_on_scratch_db(**overrides: Any) -> Iterator[Platform]:
    """A platform on a database made for it, dropped afterwards."""
    name = f"deeplens_eval_{uuid.uuid4().hex[:10]}"
    admin = admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    p = None
    try:
        p = Platform(
            f"{admin.rpartition('/')[0]}/{name}",
            Path(mkdtemp(prefix="deeplens-eval-")),
            **overrides,
        )
        yield p
    finally:
        if p is not None:
            p.fn.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
