"""Similarity search, always within the caller's tenant.

The query is embedded once; result metadata comes from the vector payload (filename,
uploadedAt), so a search costs one embedding and one index query — no per-result round trips.

Search by image adds two stages (issue 15): region proposals — photo-like rectangles inside
the query (a screenshot's content, a collage's tiles), each embedded and searched too, so a
pasted photo is a candidate even when the whole query looks like a web page — and geometric
verification of the top candidates against their stored local features (shared/verification),
which marks true copies ``verified``, ranks them above look-alikes and gives the matched region.
A small (weak) proposal only nominates: its candidates are verified against the proposal's
own keypoints when the whole query matched nothing, and earn a place only by a match.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared import metrics
from shared.auth.principal import Principal
from shared.config import Settings
from shared.db import Database
from shared.errors import InvalidInput, NotFound
from shared.features.registry import ModelSpec, spec_for
from shared.imaging import check_pixels
from shared.local_features import extract_query
from shared.matching import Verification
from shared.regions import proposals
from shared.search_types import Answered as Answered
from shared.search_types import Result as Result
from shared.search_types import Stages as Stages
from shared.store import tenants, usage
from shared.telemetry import span
from shared.vectors import Hit, VectorIndex
from shared.verification import (
    background,
    final_similarity,
    load,
    verify_all,
    verify_in_proposals,
    verify_mirrored,
)

if TYPE_CHECKING:
    from shared.features.embedder import Embedder
    from shared.model_spaces import ModelSpaces

MAX_LIMIT = 100
# Candidates verified per query: the whole query's top RERANK_K, plus each region proposal's
# top PROPOSAL_K (tests/perf/bench_verify.py measures what each stage costs).
RERANK_K = 12
PROPOSAL_K = 4
MAX_VERIFY = 16  # at most this many candidates verified per query (the most similar ones)
# Plus, per region window, the REGION_K images whose window is nearest the query (a crop's
# original, which the whole-image vectors can rank far down): verified too, and kept only
# when they match.
REGION_K = 1


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
        # documented precision on the dev split); thresholds are mapped back to raw cosine.
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
        verify: bool = True,
        stages: Stages | None = None,
    ) -> tuple[list[Result], Answered]:
        """Search by image: the query is embedded with the tenant's active model and the
        active space is searched — both read in one statement, so a cutover between them
        cannot mix two spaces in one answer — then its top candidates are verified."""
        self._check(limit, threshold)
        if not data:
            raise InvalidInput("the query image is empty", code="empty_file")
        # The operator's pixel limit (the query is decoded by three stages, each with only the
        # built-in limit).
        check_pixels(data, self.settings.max_image_pixels)
        tenant_id = principal.require_tenant()
        answered, spec = self._active(tenant_id)
        st = stages if stages is not None else Stages()
        t = time.perf_counter()
        embedder = self._embedder_for(spec)
        # The query's local features and its region proposals are computed on the other core
        # while it is embedded (OpenCV, NumPy and ONNX Runtime release the GIL).
        features = background(extract_query, data) if verify else None
        proposing = background(proposals, data) if verify else None
        with span("search.embed_query", tenant_id=tenant_id):
            vector = embedder.embed(data)
        t = st.lap("embed", t)
        if features is None or proposing is None:
            return self._unverified(answered, spec, tenant_id, vector, limit, threshold, exclude)
        with span("search.proposals", tenant_id=tenant_id):
            proposed = proposing.result()
            crops = [pr.crop for pr in proposed]
            regions = embedder.embed_many(crops) if crops else []
        t = st.lap("proposals", t)
        with span("search.query_features", tenant_id=tenant_id):
            query = features.result()
        t = st.lap("query_features (wait)", t)
        self._count(tenant_id)
        k = max(RERANK_K, limit + (1 if exclude else 0))
        found: dict[uuid.UUID, Result] = {}
        # What the whole query and the strong proposals found, at their best similarity: the
        # ranking of a candidate that no geometry confirms.
        whole: dict[uuid.UUID, Result] = {}
        nominated: list[list[uuid.UUID]] = [[] for _ in proposed]  # per proposal, in order
        for i, qv in enumerate([vector, *regions]):
            near = self._nearest(
                answered.space, tenant_id, qv, k if i == 0 else PROPOSAL_K, -1.0, spec
            )
            for r in near:
                if r.image_id == exclude:
                    continue
                if i > 0:
                    nominated[i - 1].append(r.image_id)
                if (i == 0 or proposed[i - 1].strong) and (
                    r.image_id not in whole or r.similarity > whole[r.image_id].similarity
                ):
                    whole[r.image_id] = r
                if r.image_id not in found or r.similarity > found[r.image_id].similarity:
                    found[r.image_id] = r
        # Bound the verification work per query (collages, large limits): the most similar
        # candidates are verified; the others stay in the answer, ranked unverified.
        ranked = sorted(found.values(), key=lambda r: -r.similarity)[:MAX_VERIFY]
        to_verify = {r.image_id: r for r in ranked}
        hits = self.vectors.search_regions(
            answered.space, tenant_id=tenant_id, vector=vector, limit=REGION_K
        )
        by_region = [r for r in self._results(hits, spec) if r.image_id != exclude]
        # Verified even when the whole-image ranking found it but left it past the cap.
        to_verify.update({r.image_id: r for r in by_region if r.image_id not in to_verify})
        extra = {r.image_id: r for r in by_region if r.image_id not in found}
        t = st.lap("candidates", t)
        with span("search.verify", tenant_id=tenant_id):
            with self.db.tenant_tx(tenant_id) as conn:
                stored = load(conn, tenant_id, to_verify)
            t = st.lap("load_features", t)
            checks = verify_all(query, stored)
            if proposed:
                checks = verify_in_proposals(checks, stored, nominated, proposed)
            checks = verify_mirrored(checks, data, stored, [r.image_id for r in ranked])
        t = st.lap("verify", t)
        out: list[tuple[Result, float]] = []  # with the embedding's own similarity
        for image_id, r in [*found.items(), *extra.items()]:
            v: Verification | None = checks.get(image_id)
            geometric = v is not None and v.geometric
            if image_id not in whole and not geometric:
                # Nominated only by a small part of the query (a small proposal, a region
                # window) and not matched: a part's look-alike earns no place.
                continue
            if not geometric:
                # Unmatched, it is ranked by the whole query's (or a strong proposal's)
                # similarity: a small block (a blurred corner, a flat patch) resembles many
                # images, and its similarity put look-alikes above the threshold (test
                # precision at 0.7 fell from 0.997 to 0.954 when blocks of 1.5% came in).
                r = whole[image_id]
            sim = round(final_similarity(r.similarity, v), 6)
            if sim < threshold:
                continue
            ok = v is not None and v.verified
            out.append(
                (
                    Result(
                        image_id=image_id,
                        similarity=sim,
                        filename=r.filename,
                        uploaded_at=r.uploaded_at,
                        thumbnail_url=r.thumbnail_url,
                        verified=ok,
                        inliers=v.inliers if v is not None else 0,
                        region=v.region if geometric and v is not None else None,
                        query_region=v.query_region if geometric and v is not None else None,
                    ),
                    r.similarity,
                )
            )
        # Several verified copies can share the top score (inliers saturate): the embedding's
        # similarity breaks the tie, so the query's own image comes before its edits.
        out.sort(key=lambda x: (-x[0].similarity, -x[1], -x[0].inliers, str(x[0].image_id)))
        st.lap("rank", t)
        return [res for res, _ in out[:limit]], answered

    @metrics.timed_search("vector")
    def by_vector(
        self,
        principal: Principal,
        vector: list[float],
        *,
        limit: int = 10,
        threshold: float = 0.7,
        exclude: uuid.UUID | None = None,
    ) -> tuple[list[Result], Answered]:
        """Search by vector in the tenant's active space; the results and which space (and
        similarity scale) answered."""
        self._check(limit, threshold)
        tenant_id = principal.require_tenant()
        answered, spec = self._active(tenant_id)
        if len(vector) != spec.dim:  # before the search is counted in the tenant's usage
            raise InvalidInput(
                f"vector has {len(vector)} dimensions; this space has {spec.dim}",
                code="vector_dimension_mismatch",
            )
        return self._unverified(answered, spec, tenant_id, vector, limit, threshold, exclude)

    def _active(self, tenant_id: uuid.UUID) -> tuple[Answered, ModelSpec]:
        """The tenant's active space and model, read in one statement."""
        state = self.models.state(tenant_id)
        spec = self.models.spec(state.active_model)
        return Answered(state.active_space, spec.ref, spec.calibration is not None), spec

    def _unverified(
        self,
        answered: Answered,
        spec: ModelSpec,
        tenant_id: uuid.UUID,
        vector: list[float],
        limit: int,
        threshold: float,
        exclude: uuid.UUID | None,
    ) -> tuple[list[Result], Answered]:
        """The nearest images above the threshold, ranked by the embedding alone."""
        self._count(tenant_id)
        k, raw = limit + (1 if exclude else 0), spec.raw_for(threshold)
        hits = self._nearest(answered.space, tenant_id, vector, k, raw, spec)
        return [h for h in hits if h.image_id != exclude][:limit], answered

    @staticmethod
    def _check(limit: int, threshold: float) -> None:
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", code="invalid_limit")
        if not -1.0 <= threshold <= 1.0:
            raise InvalidInput("threshold must be between -1 and 1", code="invalid_threshold")

    def _count(self, tenant_id: uuid.UUID) -> None:
        """The active-tenant check, and the search counted in the tenant's usage."""
        with span("search.query", tenant_id=tenant_id), self.db.tenant_tx(tenant_id) as conn:
            tenants.active(conn, tenant_id=tenant_id)
            usage.add(conn, tenant_id=tenant_id, searches=1)

    def _nearest(
        self,
        space: str,
        tenant_id: uuid.UUID,
        vector: list[float],
        k: int,
        raw: float,
        spec: ModelSpec,
    ) -> list[Result]:
        try:
            hits = self.vectors.search(
                space, tenant_id=tenant_id, vector=vector, limit=k, threshold=raw
            )
        except NotFound:
            return []  # nothing indexed yet for this tenant's space
        return self._results(hits, spec)

    def _results(self, hits: list[Hit], spec: ModelSpec) -> list[Result]:
        base = self.settings.public_url.rstrip("/")
        return [
            Result(
                image_id=h.id,
                similarity=round(spec.calibrate(h.score), 6),
                filename=str(h.payload.get("filename", "")),
                uploaded_at=str(h.payload.get("uploadedAt", "")),
                thumbnail_url=f"{base}/api/images/{h.id}/thumbnail/256",
            )
            for h in hits
        ]
