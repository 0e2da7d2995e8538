"""Fixtures shared by the integration tests of the authenticated hot path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.db import Database
from shared.hotpath import Gate
from tests.conftest import Platform, make_platform


@pytest.fixture
def data_plane(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    """The functions a signed-in user meets: auth, tenants, admin and images in one process."""
    p = make_platform(database_url, tmp_path, only=["auth", "tenants", "admin", "images"])
    try:
        yield p
    finally:
        p.fn.stop()


@pytest.fixture
def other_gate(data_plane: Platform, database_url: str) -> Iterator[Gate]:
    """A second process's gate: its own pool, cache, meter and LISTEN connection."""
    db = Database(database_url, min_size=1, max_size=4)
    db.open()
    gate = Gate(db, lambda: data_plane.container.keys)
    gate.start()
    assert gate.wait_listening()
    yield gate
    gate.close()
    db.close()
