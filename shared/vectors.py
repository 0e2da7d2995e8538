"""Vector index behind one interface: the embedded Qdrant Edge engine (in-process HNSW) or a
Qdrant server through qdrant-client (whose local mode is the test stand-in).

Layout: one space (collection) per model holding every tenant's points, with a keyword payload
index on ``tenantId`` marked ``is_tenant``; or a dedicated ``tenant_{id}_images`` space.
Every call takes keyword-only ``tenant_id`` and filters by it — there is no unscoped search.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared.config import Settings, VectorSettings
from shared.errors import Conflict, InvalidInput, NotFound, TransientError
from shared.telemetry import span

TENANT_KEY = "tenantId"
SPACE_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class Hit:
    id: uuid.UUID
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class SpaceInfo:
    name: str
    dim: int
    distance: str
    vectors: int


class VectorIndex(Protocol):
    def ensure_space(self, name: str, dim: int) -> None: ...
    def upsert(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        point_id: uuid.UUID,
        vector: list[float],
        payload: dict[str, Any],
    ) -> None: ...
    def delete(self, space: str, *, tenant_id: uuid.UUID, point_ids: list[uuid.UUID]) -> None: ...
    def delete_tenant(self, space: str, *, tenant_id: uuid.UUID) -> None: ...
    def search(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        vector: list[float],
        limit: int,
        threshold: float | None = None,
    ) -> list[Hit]: ...
    def get_vector(
        self, space: str, *, tenant_id: uuid.UUID, point_id: uuid.UUID
    ) -> list[float] | None: ...
    def count(self, space: str, *, tenant_id: uuid.UUID | None = None) -> int: ...
    def spaces(self) -> list[SpaceInfo]: ...
    def drop_space(self, name: str) -> None: ...
    def close(self) -> None: ...


def _check_space(name: str) -> None:
    if not SPACE_RE.match(name):
        raise InvalidInput("invalid collection name", code="invalid_collection")


def _check_dim(vector: list[float], dim: int) -> None:
    if len(vector) != dim:
        raise InvalidInput(
            f"vector has {len(vector)} dimensions; this space has {dim}",
            code="vector_dimension_mismatch",
        )


class EdgeIndex:
    """Qdrant Edge shards, one directory per space under ``root``. Updates go through the
    shard's write-ahead log, so an acknowledged upsert survives a killed process."""

    def __init__(self, root: Path, cfg: VectorSettings):
        import qdrant_edge as qe

        self.qe, self.root, self.cfg = qe, root, cfg
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, Any] = {}
        self._dims: dict[str, int] = {}
        self._lock = threading.RLock()

    def _tenant_filter(self, tenant_id: uuid.UUID) -> Any:
        qe = self.qe
        return qe.Filter(
            must=[qe.FieldCondition(key=TENANT_KEY, match=qe.MatchValue(str(tenant_id)))]
        )

    def _shard(self, name: str) -> Any:
        _check_space(name)
        shard = self._shards.get(name)
        if shard is not None:
            return shard
        with self._lock:
            if name in self._shards:
                return self._shards[name]
            path = self.root / name
            if not path.is_dir():
                raise NotFound(f"collection {name} does not exist", code="collection_not_found")
            shard = self.qe.EdgeShard.load(str(path))
            self._dims[name] = int((path / "dim").read_text())
            self._shards[name] = shard
            return shard

    def ensure_space(self, name: str, dim: int) -> None:
        _check_space(name)
        with self._lock:
            path = self.root / name
            if path.is_dir() and (path / "dim").exists():
                existing = int((path / "dim").read_text())
                if existing != dim:
                    raise Conflict(
                        f"collection {name} exists with dimension {existing}",
                        code="collection_dimension_conflict",
                    )
                return
            qe = self.qe
            hnsw = qe.HnswIndexConfig(
                m=self.cfg.hnsw_m,
                ef_construct=self.cfg.hnsw_ef_construct,
                full_scan_threshold=10_000,
                payload_m=self.cfg.hnsw_m,
            )
            config = qe.EdgeConfig(
                vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine), hnsw_config=hnsw
            )
            shutil.rmtree(path, ignore_errors=True)
            shard = qe.EdgeShard.create(str(path), config)
            shard.update(
                qe.UpdateOperation.create_field_index(
                    TENANT_KEY, qe.KeywordIndexParams(is_tenant=True)
                )
            )
            shard.flush()
            # Written last: a space without this file is an interrupted creation and is redone.
            (path / "dim").write_text(str(dim))
            self._shards[name], self._dims[name] = shard, dim

    def upsert(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        point_id: uuid.UUID,
        vector: list[float],
        payload: dict[str, Any],
    ) -> None:
        shard = self._shard(space)
        _check_dim(vector, self._dims[space])
        body = {**payload, TENANT_KEY: str(tenant_id)}
        with span("vectors.upsert", tenant_id=tenant_id, collection=space):
            # Upsert only where the id is new or already this tenant's: an id can never be
            # taken over by another tenant.
            existing = shard.retrieve([str(point_id)], with_payload=True, with_vector=False)
            if existing and (existing[0].payload or {}).get(TENANT_KEY) != str(tenant_id):
                raise Conflict("point id belongs to another tenant", code="point_conflict")
            shard.update(
                self.qe.UpdateOperation.upsert_points([self.qe.Point(str(point_id), vector, body)])
            )

    def delete(self, space: str, *, tenant_id: uuid.UUID, point_ids: list[uuid.UUID]) -> None:
        qe = self.qe
        shard = self._shard(space)
        flt = qe.Filter(
            must=[
                qe.FieldCondition(key=TENANT_KEY, match=qe.MatchValue(str(tenant_id))),
                qe.HasIdCondition({str(p) for p in point_ids}),
            ]
        )
        with span("vectors.delete", tenant_id=tenant_id, collection=space):
            shard.update(qe.UpdateOperation.delete_points_by_filter(flt))

    def delete_tenant(self, space: str, *, tenant_id: uuid.UUID) -> None:
        shard = self._shard(space)
        shard.update(
            self.qe.UpdateOperation.delete_points_by_filter(self._tenant_filter(tenant_id))
        )

    def search(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        vector: list[float],
        limit: int,
        threshold: float | None = None,
    ) -> list[Hit]:
        qe = self.qe
        shard = self._shard(space)
        _check_dim(vector, self._dims[space])
        with span("vectors.search", tenant_id=tenant_id, collection=space):
            points = shard.query(
                qe.QueryRequest(
                    limit=limit,
                    query=qe.Query.Nearest(vector),
                    filter=self._tenant_filter(tenant_id),
                    with_payload=True,
                    score_threshold=threshold,
                    params=qe.SearchParams(hnsw_ef=max(self.cfg.hnsw_ef, limit)),
                )
            )
        return [Hit(uuid.UUID(str(p.id)), float(p.score), dict(p.payload or {})) for p in points]

    def get_vector(
        self, space: str, *, tenant_id: uuid.UUID, point_id: uuid.UUID
    ) -> list[float] | None:
        shard = self._shard(space)
        recs = shard.retrieve([str(point_id)], with_payload=True, with_vector=True)
        if not recs or (recs[0].payload or {}).get(TENANT_KEY) != str(tenant_id):
            return None
        vec = recs[0].vector
        if isinstance(vec, dict):
            vec = vec.get("")
        return [float(x) for x in vec] if vec is not None else None

    def count(self, space: str, *, tenant_id: uuid.UUID | None = None) -> int:
        shard = self._shard(space)
        flt = self._tenant_filter(tenant_id) if tenant_id is not None else None
        return int(shard.count(self.qe.CountRequest(exact=True, filter=flt)))

    def spaces(self) -> list[SpaceInfo]:
        out = []
        for path in sorted(self.root.iterdir()):
            if (path / "dim").exists():
                out.append(
                    SpaceInfo(
                        path.name, int((path / "dim").read_text()), "Cosine", self.count(path.name)
                    )
                )
        return out

    def optimize(self, name: str) -> None:
        """Build HNSW segments after a bulk load (otherwise small segments are scanned)."""
        self._shard(name).optimize()

    def drop_space(self, name: str) -> None:
        _check_space(name)
        with self._lock:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            self._dims.pop(name, None)
            shutil.rmtree(self.root / name, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()


class QdrantIndex:
    """A Qdrant server (production) or qdrant-client's local mode (``:memory:`` / a path)."""

    def __init__(self, cfg: VectorSettings, *, location: str | None = None):
        from qdrant_client import QdrantClient

        target = location or cfg.url or ":memory:"
        if target == ":memory:" or not target.startswith(("http://", "https://")):
            self.client = (
                QdrantClient(location=target) if target == ":memory:" else QdrantClient(path=target)
            )
        else:
            self.client = QdrantClient(
                url=target,
                api_key=(cfg.api_key.get_secret_value() if cfg.api_key else None),
                timeout=10,
            )
        self.cfg = cfg
        self._dims: dict[str, int] = {}

    def _models(self) -> Any:
        from qdrant_client import models

        return models

    def _tenant_filter(self, tenant_id: uuid.UUID) -> Any:
        m = self._models()
        return m.Filter(
            must=[m.FieldCondition(key=TENANT_KEY, match=m.MatchValue(value=str(tenant_id)))]
        )

    def _dim(self, name: str) -> int:
        _check_space(name)
        if name not in self._dims:
            try:
                info = self._wrap(self.client.get_collection, name)
            except (ValueError, KeyError) as exc:
                raise NotFound(
                    f"collection {name} does not exist", code="collection_not_found"
                ) from exc
            self._dims[name] = int(info.config.params.vectors.size)
        return self._dims[name]

    def _wrap(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            return fn(*args, **kwargs)
        except UnexpectedResponse as exc:
            if exc.status_code == 404:
                raise NotFound("collection not found", code="collection_not_found") from exc
            raise TransientError("vector store error") from exc
        except ResponseHandlingException as exc:
            raise TransientError("vector store unreachable") from exc

    def ensure_space(self, name: str, dim: int) -> None:
        _check_space(name)
        m = self._models()
        if self._wrap(self.client.collection_exists, name):
            existing = self._dim(name)
            if existing != dim:
                raise Conflict(
                    f"collection {name} exists with dimension {existing}",
                    code="collection_dimension_conflict",
                )
            return
        self._wrap(
            self.client.create_collection,
            name,
            vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
            hnsw_config=m.HnswConfigDiff(
                m=self.cfg.hnsw_m,
                payload_m=self.cfg.hnsw_m,
                ef_construct=self.cfg.hnsw_ef_construct,
            ),
        )
        self._wrap(
            self.client.create_payload_index,
            name,
            TENANT_KEY,
            field_schema=m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True),
        )
        self._dims[name] = dim

    def upsert(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        point_id: uuid.UUID,
        vector: list[float],
        payload: dict[str, Any],
    ) -> None:
        m = self._models()
        _check_dim(vector, self._dim(space))
        with span("vectors.upsert", tenant_id=tenant_id, collection=space):
            existing = self._wrap(self.client.retrieve, space, [str(point_id)], with_payload=True)
            if existing and (existing[0].payload or {}).get(TENANT_KEY) != str(tenant_id):
                raise Conflict("point id belongs to another tenant", code="point_conflict")
            self._wrap(
                self.client.upsert,
                space,
                points=[
                    m.PointStruct(
                        id=str(point_id),
                        vector=vector,
                        payload={**payload, TENANT_KEY: str(tenant_id)},
                    )
                ],
                wait=True,
            )

    def delete(self, space: str, *, tenant_id: uuid.UUID, point_ids: list[uuid.UUID]) -> None:
        m = self._models()
        self._dim(space)
        flt = m.Filter(
            must=[
                m.FieldCondition(key=TENANT_KEY, match=m.MatchValue(value=str(tenant_id))),
                m.HasIdCondition(has_id=[str(p) for p in point_ids]),
            ]
        )
        self._wrap(
            self.client.delete, space, points_selector=m.FilterSelector(filter=flt), wait=True
        )

    def delete_tenant(self, space: str, *, tenant_id: uuid.UUID) -> None:
        m = self._models()
        self._dim(space)
        self._wrap(
            self.client.delete,
            space,
            points_selector=m.FilterSelector(filter=self._tenant_filter(tenant_id)),
            wait=True,
        )

    def search(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        vector: list[float],
        limit: int,
        threshold: float | None = None,
    ) -> list[Hit]:
        m = self._models()
        _check_dim(vector, self._dim(space))
        with span("vectors.search", tenant_id=tenant_id, collection=space):
            res = self._wrap(
                self.client.query_points,
                space,
                query=vector,
                query_filter=self._tenant_filter(tenant_id),
                limit=limit,
                score_threshold=threshold,
                with_payload=True,
                search_params=m.SearchParams(hnsw_ef=max(self.cfg.hnsw_ef, limit)),
            )
        return [
            Hit(uuid.UUID(str(p.id)), float(p.score), dict(p.payload or {})) for p in res.points
        ]

    def get_vector(
        self, space: str, *, tenant_id: uuid.UUID, point_id: uuid.UUID
    ) -> list[float] | None:
        self._dim(space)
        recs = self._wrap(
            self.client.retrieve, space, [str(point_id)], with_payload=True, with_vectors=True
        )
        if not recs or (recs[0].payload or {}).get(TENANT_KEY) != str(tenant_id):
            return None
        return [float(x) for x in recs[0].vector]

    def count(self, space: str, *, tenant_id: uuid.UUID | None = None) -> int:
        self._dim(space)
        flt = self._tenant_filter(tenant_id) if tenant_id is not None else None
        return int(self._wrap(self.client.count, space, count_filter=flt, exact=True).count)

    def spaces(self) -> list[SpaceInfo]:
        out = []
        for c in self._wrap(self.client.get_collections).collections:
            out.append(SpaceInfo(c.name, self._dim(c.name), "Cosine", self.count(c.name)))
        return out

    def drop_space(self, name: str) -> None:
        _check_space(name)
        self._wrap(self.client.delete_collection, name)
        self._dims.pop(name, None)

    def close(self) -> None:
        self.client.close()


def build_index(settings: Settings) -> VectorIndex:
    if settings.vectors.backend == "qdrant":
        return QdrantIndex(settings.vectors)
    return EdgeIndex(settings.data_dir / "vectors", settings.vectors)
