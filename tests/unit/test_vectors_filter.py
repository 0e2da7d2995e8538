"""The one tenant filter (shared/vectors/protocol.py) builds a valid filter for both adapters'
model modules, and adapters open nothing until their first call."""

from __future__ import annotations

import uuid
from pathlib import Path

import qdrant_edge
from qdrant_client import models

from shared.config import VectorSettings
from shared.vectors import TENANT_KEY, EdgeIndex, QdrantIndex, tenant_filter


def test_the_same_helper_builds_both_adapters_filters() -> None:
    t = uuid.uuid4()
    client = tenant_filter(models, t, models.HasIdCondition(has_id=[str(uuid.uuid4())]))
    assert isinstance(client, models.Filter) and isinstance(client.must, list)
    first = client.must[0]
    assert isinstance(first, models.FieldCondition)
    assert first.key == TENANT_KEY and first.match == models.MatchValue(value=str(t))
    assert len(client.must) == 2
    edge = tenant_filter(qdrant_edge, t)
    assert isinstance(edge, qdrant_edge.Filter)


def test_adapters_open_on_first_use(tmp_path: Path) -> None:
    root = tmp_path / "vectors"
    edge = EdgeIndex(root, VectorSettings())
    assert not root.exists() and edge.spaces() == []
    edge.close()  # closing an adapter never opened is a no-op
    edge.ensure_space("images_x", 4)
    assert [s.name for s in edge.spaces()] == ["images_x"]
    edge.close()
    local = QdrantIndex(VectorSettings(), location=str(tmp_path / "qdrant"))
    assert not (tmp_path / "qdrant").exists()
    local.close()
