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

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool

from shared.auth.principal import Principal
from shared.errors import InvalidInput, UnsupportedMedia
from shared.http import authenticated, container
from shared.models import ApiModel
from shared.uploads import field as form_field
from shared.uploads import multipart_body, one_file, read_form
from shared.validation import FiniteFloat, Similarity

router = APIRouter(tags=["search"])
Auth = Annotated[Principal, Depends(authenticated)]


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


def _number(value: object, name: str, cast: type, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        return cast(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number", code=f"invalid_{name}") from None


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
async def search(request: Request, response: Response, principal: Auth) -> list[SearchResult]:
    svc = container(request).search
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await read_form(request, max_files=1)
        upload = one_file(form)
        data = await upload.read()
        limit = int(_number(form_field(form, "limit"), "limit", int, 10))
        threshold = float(_number(form_field(form, "threshold"), "threshold", float, 0.7))
        if not 1 <= limit <= 100:
            raise InvalidInput("limit must be between 1 and 100", code="invalid_limit")
        if not -1 <= threshold <= 1:  # also refuses NaN
            raise InvalidInput("threshold must be between -1 and 1", code="invalid_threshold")
        verify = str(form_field(form, "verify") or "true").lower()
        if verify not in ("true", "false", "1", "0"):
            raise InvalidInput("verify must be true or false", code="invalid_verify")
        results, answered = await run_in_threadpool(
            svc.by_image_answered,
            principal,
            data,
            limit=limit,
            threshold=threshold,
            verify=verify in ("true", "1"),
        )
    elif ctype.startswith("application/json"):
        try:
            q = VectorQuery.model_validate(json.loads(await request.body()))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InvalidInput("the request body is not valid JSON", code="invalid_json") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"{field}: {first['msg']}", code="validation_error") from None
        results, answered = await run_in_threadpool(
            svc.by_vector_answered,
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
