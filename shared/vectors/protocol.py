"""The vector index interface every adapter implements, its value types, and the checks and
the one tenant filter that the adapters share.

Layout: one space (collection) per model holding every tenant's points, with a keyword payload
index on ``tenantId`` marked ``is_tenant``; or a dedicated ``tenant_{id}_images`` space.
Every call takes keyword-only ``tenant_id`` and filters by it — there is no unscoped search.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from shared.errors import Conflict, InvalidInput

TENANT_KEY = "tenantId"
REGION_KEY = "region"  # a region point's window (shared/vectors/regions.py)
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
    """Adapters are cheap to build and open their engine on first use, so a service takes
    the adapter itself and a process that never calls it never opens it."""

    # half: float16 storage (region points: they only nominate candidates).
    def ensure_space(self, name: str, dim: int, *, half: bool = False) -> None: ...
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
        match: dict[str, int | str] | None = None,
    ) -> list[Hit]: ...
    def get_vector(
        self, space: str, *, tenant_id: uuid.UUID, point_id: uuid.UUID
    ) -> list[float] | None: ...
    def count(self, space: str, *, tenant_id: uuid.UUID | None = None) -> int: ...
    def spaces(self) -> list[SpaceInfo]: ...
    def drop_space(self, name: str) -> None: ...
    # An image's region vectors (shared/vectors/regions), and the images whose best region
    # is nearest a query: a crop's candidates.
    def upsert_regions(
        self,
        space: str,
        *,
        tenant_id: uuid.UUID,
        image_id: uuid.UUID,
        vectors: list[list[float]],
        payload: dict[str, Any],
    ) -> None: ...
    def search_regions(
        self, space: str, *, tenant_id: uuid.UUID, vector: list[float], limit: int
    ) -> list[Hit]: ...
    def close(self) -> None: ...


def tenant_filter(models: Any, tenant_id: uuid.UUID, *also: Any) -> Any:
    """The filter every tenant-scoped call carries: this tenant's points (and ``also``, e.g.
    an id condition). ``models`` is the adapter's model module (qdrant_edge or
    qdrant_client.models): both spell Filter, FieldCondition and MatchValue the same way."""
    match = models.MatchValue(value=str(tenant_id))
    return models.Filter(must=[models.FieldCondition(key=TENANT_KEY, match=match), *also])


def matching(models: Any, match: dict[str, int | str] | None) -> list[Any]:
    """Extra payload conditions of a search (e.g. one region window), as filter conditions."""
    return [
        models.FieldCondition(key=k, match=models.MatchValue(value=v))
        for k, v in (match or {}).items()
    ]


def tenant_payload(payload: dict[str, Any], tenant_id: uuid.UUID) -> dict[str, Any]:
    """A point's payload, stamped with its tenant (what tenant_filter matches)."""
    return {**payload, TENANT_KEY: str(tenant_id)}


def owned_by(payload: dict[str, Any] | None, tenant_id: uuid.UUID) -> bool:
    """Whether a stored point belongs to this tenant."""
    return (payload or {}).get(TENANT_KEY) == str(tenant_id)


def own_hits(hits: list[Hit], tenant_id: uuid.UUID) -> list[Hit]:
    """The hits re-checked against the caller's tenant after the filtered search: isolation
    never rests on the engine's filter alone (filter bugs in vector databases have leaked
    points before)."""
    return [h for h in hits if owned_by(h.payload, tenant_id)]


def check_owner(existing: list[Any], tenant_id: uuid.UUID) -> None:
    """Upsert only where the id is new or already this tenant's: an id can never be taken
    over by another tenant."""
    if existing and not owned_by(existing[0].payload, tenant_id):
        raise Conflict("point id belongs to another tenant", code="point_conflict")


def check_space(name: str) -> None:
    if not SPACE_RE.match(name):
        raise InvalidInput("invalid collection name", code="invalid_collection")


def check_dim(vector: list[float], dim: int) -> None:
    if len(vector) != dim:
        raise InvalidInput(
            f"vector has {len(vector)} dimensions; this space has {dim}",
            code="vector_dimension_mismatch",
        )
