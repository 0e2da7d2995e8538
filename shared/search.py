"""Similarity search, always within the caller's tenant.

The query is embedded once; result metadata comes from the vector payload (filename,
uploadedAt), so a search costs one embedding and one index query — no per-result round trips.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared import metrics
from shared.auth.principal import Principal
from shared.config import Settings
from shared.db import Database, execute
from shared.errors import InvalidInput, NotFound
from shared.features.registry import ModelSpec, spec_for
from shared.images import active_tenant
from shared.telemetry import span

if TYPE_CHECKING:
    from shared.features.embedder import Embedder
    from shared.model_spaces import ModelSpaces
    from shared.vectors import VectorIndex

MAX_LIMIT = 100


@dataclass(frozen=True)
class Result:
    image_id: uuid.UUID
    similarity: float
    filename: str
    uploaded_at: str
    thumbnail_url: str


@dataclass(frozen=True)
class Answered:
    """Which space answered a search (every result comes from it) and on what scale."""

    space: str
    model: str
    calibrated: bool


class SearchService:
    def __init__(
        self,
        db: Database,
        vectors: VectorIndex,
        embedder: Callable[[], Embedder],
        settings: Settings,
        *,
        models: ModelSpaces,
        embedder_for: Callable[[ModelSpec], Embedder],
    ):
        self.db, self.vectors, self.settings = db, vectors, settings
        self._embedder, self._embedder_for, self.models = embedder, embedder_for, models
        # Similarities are reported on the model's calibrated scale (threshold 0.7 = the
        # documented precision on the dev set); thresholds are mapped back to raw cosine.
        # A model without a calibration reports raw cosine (and says so: Answered).
        self.spec = spec_for(settings.features)

    @metrics.timed_search("image")
    def by_image(
        self,
        principal: Principal,
        data: bytes,
        *,
        limit: int = 10,
        threshold: float = 0.7,
        exclude: uuid.UUID | None = None,
    ) -> list[Result]:
        return self.by_image_answered(
            principal, data, limit=limit, threshold=threshold, exclude=exclude
        )[0]

    def by_image_answered(
        self,
        principal: Principal,
        data: bytes,
        *,
        limit: int = 10,
        threshold: float = 0.7,
        exclude: uuid.UUID | None = None,
    ) -> tuple[list[Result], Answered]:
        """Search by image: the query is embedded with the tenant's active model and the
        active space is searched — both read in one statement, so a cutover between them
        cannot mix two spaces in one answer."""
        if not data:
            raise InvalidInput("the query image is empty", code="empty_file")
        st = self.models.state(principal.require_tenant())
        spec = self.models.spec(st.active_model)
        with span("search.embed_query", tenant_id=principal.tenant_id):
            vector = self._embedder_for(spec).embed(data)
        return self._query(principal, vector, st.active_space, spec, limit, threshold, exclude)

    @metrics.timed_search("vector")
    def by_vector(
        self,
        principal: Principal,
        vector: list[float],
        *,
        limit: int = 10,
        threshold: float = 0.7,
        exclude: uuid.UUID | None = None,
    ) -> list[Result]:
        return self.by_vector_answered(
            principal, vector, limit=limit, threshold=threshold, exclude=exclude
        )[0]

    def by_vector_answered(
        self,
        principal: Principal,
        vector: list[float],
        *,
        limit: int = 10,
        threshold: float = 0.7,
        exclude: uuid.UUID | None = None,
    ) -> tuple[list[Result], Answered]:
        st = self.models.state(principal.require_tenant())
        spec = self.models.spec(st.active_model)
        return self._query(principal, vector, st.active_space, spec, limit, threshold, exclude)

    def _query(
        self,
        principal: Principal,
        vector: list[float],
        space: str,
        spec: ModelSpec,
        limit: int,
        threshold: float,
        exclude: uuid.UUID | None,
    ) -> tuple[list[Result], Answered]:
        tenant_id = principal.require_tenant()
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
        if not -1.0 <= threshold <= 1.0:
            raise InvalidInput("threshold must be between -1 and 1", code="invalid_threshold")
        answered = Answered(space, spec.ref, spec.calibration is not None)
        with span("search.query", tenant_id=tenant_id), self.db.tx() as conn:
            active_tenant(conn, tenant_id)
            execute(
                conn,
                "INSERT INTO usage_daily (tenant_id, day, searches) VALUES"
                " (%(t)s, (now() AT TIME ZONE 'UTC')::date, 1)"
                " ON CONFLICT (tenant_id, day) DO UPDATE SET searches = usage_daily.searches + 1",
                {"t": tenant_id},
                table="usage_daily",
            )
        try:
            hits = self.vectors.search(
                space,
                tenant_id=tenant_id,
                vector=vector,
                limit=limit + (1 if exclude else 0),
                threshold=spec.raw_for(threshold),
            )
        except NotFound:
            return [], answered  # nothing indexed yet for this tenant's space
        base = self.settings.public_url.rstrip("/")
        out = [
            Result(
                image_id=h.id,
                similarity=round(spec.calibrate(h.score), 6),
                filename=str(h.payload.get("filename", "")),
                uploaded_at=str(h.payload.get("uploadedAt", "")),
                thumbnail_url=f"{base}/api/images/{h.id}/thumbnail/256",
            )
            for h in hits
            if h.id != exclude
        ]
        return out[:limit], answered
