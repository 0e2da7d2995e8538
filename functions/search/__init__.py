"""search: POST /api/images/search — by image (multipart ``file``) or by vector (JSON).

limit defaults to 10, threshold to 0.7; results [{imageId, similarity, filename, uploadedAt,
thumbnailUrl, verified, inliers, region, queryRegion}], only ever from the caller's tenant.
Search by image verifies its top candidates geometrically (``verify=false`` skips it):
``verified`` marks a true copy, ``region`` the part of the result the query shows (a crop) and
``queryRegion`` where the result appears inside the query (a screenshot, a collage), both as
normalised {x, y, width, height}, null when the match covers the whole image.
Headers say which vector space answered (``X-DeepLens-Space``, ``X-DeepLens-Model``: every
result comes from that one space) and the similarity scale (``X-DeepLens-Similarity``:
calibrated, or raw cosine for a model without a fitted calibration).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from shared.errors import UnsupportedMedia
from shared.http import Auth, Services
from shared.models import ApiModel
from shared.uploads import flag, multipart_body, number, one_file, read_form, read_json
from shared.validation import FiniteFloat, Similarity

if TYPE_CHECKING:
    from shared.search import Answered, Result

router = APIRouter(tags=["search"])


class VectorQuery(ApiModel):
    vector: Annotated[list[FiniteFloat], Field(min_length=1, max_length=8192)]
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    threshold: Similarity = 0.7
    exclude_image_id: uuid.UUID | None = None


class MatchedRegion(ApiModel):
    x: float
    y: float
    width: float
    height: float


class SearchResult(ApiModel):
    image_id: uuid.UUID
    similarity: float
    filename: str
    uploaded_at: str
    thumbnail_url: str
    verified: bool = False
    inliers: int = 0
    region: MatchedRegion | None = None
    query_region: MatchedRegion | None = None


_BODY = multipart_body(
    "file",
    fields={
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "threshold": {"type": "number", "minimum": -1, "maximum": 1},
    },
)
_BODY["requestBody"]["content"]["application/json"] = {
    "schema": VectorQuery.model_json_schema(by_alias=True)
}


@router.post("/api/images/search", response_model=list[SearchResult], openapi_extra=_BODY)
async def search(
    request: Request, response: Response, principal: Auth, c: Services
) -> list[SearchResult]:
    # The bare media type, compared exactly (the input guard checks the depth of exactly
    # application/json bodies: "application/jsonx" must not pass as JSON here).
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await read_form(request, max_files=1)
        data = await one_file(form).read()
        results, answered = await run_in_threadpool(
            c.search.by_image,
            principal,
            data,
            limit=int(number(form, "limit", 10, integer=True)),
            threshold=number(form, "threshold", 0.7),
            verify=flag(form, "verify", True),
        )
    elif ctype == "application/json":
        q = await read_json(request, VectorQuery)
        results, answered = await run_in_threadpool(
            c.search.by_vector,
            principal,
            q.vector,
            limit=q.limit,
            threshold=q.threshold,
            exclude=q.exclude_image_id,
        )
    else:
        raise UnsupportedMedia(
            "send multipart/form-data (file) or application/json (vector)",
            code="unsupported_content_type",
        )
    return _answer(response, results, answered)


def _answer(response: Response, results: list[Result], answered: Answered) -> list[SearchResult]:
    response.headers["X-DeepLens-Space"] = answered.space
    response.headers["X-DeepLens-Model"] = answered.model
    response.headers["X-DeepLens-Similarity"] = "calibrated" if answered.calibrated else "raw"
    return [
        SearchResult(
            image_id=r.image_id,
            similarity=r.similarity,
            filename=r.filename,
            uploaded_at=r.uploaded_at,
            thumbnail_url=r.thumbnail_url,
            verified=r.verified,
            inliers=r.inliers,
            region=MatchedRegion(**r.region.as_dict()) if r.region else None,
            query_region=MatchedRegion(**r.query_region.as_dict()) if r.query_region else None,
        )
        for r in results
    ]
