"""Vector index behind one interface (``protocol``): the embedded Qdrant Edge engine
(``edge``, in-process HNSW, the default) or a Qdrant server through qdrant-client
(``qdrant``, whose local mode is the test stand-in)."""

from __future__ import annotations

from shared.config import Settings
from shared.vectors.edge import EdgeIndex
from shared.vectors.protocol import TENANT_KEY, Hit, SpaceInfo, VectorIndex, tenant_filter
from shared.vectors.qdrant import QdrantIndex

__all__ = [
    "TENANT_KEY",
    "EdgeIndex",
    "Hit",
    "QdrantIndex",
    "SpaceInfo",
    "VectorIndex",
    "build_index",
    "tenant_filter",
]


def build_index(settings: Settings) -> VectorIndex:
    """The configured adapter; cheap (nothing opens until its first call)."""
    if settings.vectors.backend == "qdrant":
        return QdrantIndex(settings.vectors)
    return EdgeIndex(settings.data_dir / "vectors", settings.vectors)
