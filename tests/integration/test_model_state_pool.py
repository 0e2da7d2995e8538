"""A tenant's first model state is resolved without holding one pooled connection while
asking for another: concurrent first calls on a 2-connection pool (the extract process's, in
``deeplens up``) finish at once instead of exhausting the pool until its timeout (every first
ingest used to stall 30 s)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_platform

pytestmark = pytest.mark.integration


def test_concurrent_first_states_on_a_two_connection_pool(
    database_url: str, tmp_path: Path, embedder: Any
) -> None:
    p = make_platform(database_url, tmp_path, env={"DEEPLENS_DB_POOL_MAX": "2"}, embedder=embedder)
    try:
        tenant = uuid.UUID(p.signup()["tenant"]["id"])
        models = p.container.models
        with p.container.db.tx() as conn:
            conn.execute("DELETE FROM tenant_models WHERE tenant_id = %s", (tenant,))
        models.forget()  # nothing cached: every call resolves its specs
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            states = list(pool.map(lambda _: models.state(tenant), range(4)))
        assert time.monotonic() - t0 < 10
        assert len({s.active_space for s in states}) == 1
    finally:
        p.fn.stop()
