"""Qdrant through qdrant-client: a Qdrant server in production (``DEEPLENS_VECTORS__URL``),
or qdrant-client's local mode (``:memory:`` / a path: a brute-force reference, for tests).
The client is made on first use."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from shared.config import VectorSettings
from shared.errors import Conflict, NotFound, TransientError
from shared.telemetry import span
from shared.vectors import regions
from shared.vectors.protocol import (
    REGION_KEY,
    TENANT_KEY,
    Hit,
    SpaceInfo,
    check_dim,
    check_owner,
    check_space,
    matching,
    own_hits,
    owned_by,
    tenant_filter,
    tenant_payload,
)


class QdrantIndex(regions.RegionMethods):
    """A Qdrant server (production) or qdrant-client's local mode (``:memory:`` / a path)."""

    def __init__(self, cfg: VectorSettings, *, location: str | None = None):
        self.cfg, self.target = cfg, location or cfg.url or ":memory:"
        self._client: Any = None
        self._dims: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The qdrant-client, made (and, in local mode, its storage opened) on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        from qdrant_client import QdrantClient

        target = self.target
        if target == ":memory:":
            return QdrantClient(location=target)
        if not target.startswith(("http://", "https://")):
            return QdrantClient(path=target)
        key = self.cfg.api_key.get_secret_value() if self.cfg.api_key else None
        return QdrantClient(url=target, api_key=key, timeout=10)

    def _models(self) -> Any:
        from qdrant_client import models

        return models

    def _dim(self, name: str) -> int:
        check_space(name)
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

    def ensure_space(self, name: str, dim: int, *, half: bool = False) -> None:
        check_space(name)
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
            vectors_config=m.VectorParams(
                size=dim,
                distance=m.Distance.COSINE,
                datatype=m.Datatype.FLOAT16 if half else None,
            ),
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
        if regions.is_companion(name):  # searched one window (``region`` = k) at a time
            self._wrap(
                self.client.create_payload_index,
                name,
                REGION_KEY,
                field_schema=m.IntegerIndexParams(
                    type=m.IntegerIndexType.INTEGER, lookup=True, range=False
                ),
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
        check_dim(vector, self._dim(space))
        with span("vectors.upsert", tenant_id=tenant_id, collection=space):
            existing = self._wrap(self.client.retrieve, space, [str(point_id)], with_payload=True)
            check_owner(existing, tenant_id)
            self._wrap(
                self.client.upsert,
                space,
                points=[
                    m.PointStruct(
                        id=str(point_id),
                        vector=vector,
                        payload=tenant_payload(payload, tenant_id),
                    )
                ],
                wait=True,
            )

    def delete(self, space: str, *, tenant_id: uuid.UUID, point_ids: list[uuid.UUID]) -> None:
        m = self._models()
        self._dim(space)
        flt = tenant_filter(m, tenant_id, m.HasIdCondition(has_id=[str(p) for p in point_ids]))
        self._wrap(
            self.client.delete, space, points_selector=m.FilterSelector(filter=flt), wait=True
        )
        regions.cascade_delete(self, space, tenant_id=tenant_id, image_ids=point_ids)

    def delete_tenant(self, space: str, *, tenant_id: uuid.UUID) -> None:
        m = self._models()
        self._dim(space)
        self._wrap(
            self.client.delete,
            space,
            points_selector=m.FilterSelector(filter=tenant_filter(self._models(), tenant_id)),
            wait=True,
        )
        regions.cascade_delete_tenant(self, space, tenant_id=tenant_id)

    def search(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        vector: list[float],
        limit: int,
        threshold: float | None = None,
        match: dict[str, int | str] | None = None,
    ) -> list[Hit]:
        m = self._models()
        check_dim(vector, self._dim(space))
        with span("vectors.search", tenant_id=tenant_id, collection=space):
            res = self._wrap(
                self.client.query_points,
                space,
                query=vector,
                query_filter=tenant_filter(m, tenant_id, *matching(m, match)),
                limit=limit,
                score_threshold=threshold,
                with_payload=True,
                search_params=m.SearchParams(hnsw_ef=max(self.cfg.hnsw_ef, limit)),
            )
        return own_hits(
            [Hit(uuid.UUID(str(p.id)), float(p.score), dict(p.payload or {})) for p in res.points],
            tenant_id,
        )

    def get_vector(
        self, space: str, *, tenant_id: uuid.UUID, point_id: uuid.UUID
    ) -> list[float] | None:
        self._dim(space)
        recs = self._wrap(
            self.client.retrieve, space, [str(point_id)], with_payload=True, with_vectors=True
        )
        if not recs or not owned_by(recs[0].payload, tenant_id):
            return None
        return [float(x) for x in recs[0].vector]

    def count(self, space: str, *, tenant_id: uuid.UUID | None = None) -> int:
        self._dim(space)
        flt = tenant_filter(self._models(), tenant_id) if tenant_id is not None else None
        return int(self._wrap(self.client.count, space, count_filter=flt, exact=True).count)

    def spaces(self) -> list[SpaceInfo]:
        out = []
        for c in self._wrap(self.client.get_collections).collections:
            if regions.is_companion(c.name):
                continue
            out.append(SpaceInfo(c.name, self._dim(c.name), "Cosine", self.count(c.name)))
        return out

    def drop_space(self, name: str) -> None:
        check_space(name)
        self._wrap(self.client.delete_collection, name)
        self._dims.pop(name, None)
        regions.cascade_drop(self, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
