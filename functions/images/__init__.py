"""images: upload, list, read, thumbnails, original content, vector, delete.

Routes: POST /api/images/upload (multipart ``file``; ``?priority=bulk`` for imports) → 202
{imageId, status, message};
GET /api/images (paged); GET /api/images/{id}; GET /api/images/{id}/vector;
GET /api/images/{id}/thumbnail/{size}; GET /api/images/{id}/content; DELETE /api/images/{id}.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from shared.auth.principal import Principal
from shared.bootstrap import Container
from shared.hotpath.fastread import ASGI, ONE_IMAGE, FastRead
from shared.http import Auth, Services
from shared.images import UPLOAD_PRIORITIES, upload_priority
from shared.lanes import BACKGROUND_PRIORITIES, bulk_gate, run_in_lane
from shared.models import ApiModel
from shared.store.images import ImageRow
from shared.uploads import clean_filename, multipart_body, one_file, read_form
from shared.validation import Page

router = APIRouter(tags=["images"])


class UploadOut(ApiModel):
    image_id: uuid.UUID
    status: str
    message: str
    duplicate: bool = False


class ImageOut(ApiModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    width: int | None
    height: int | None
    status: str
    failure_code: str | None
    failure_reason: str | None
    model: str | None
    uploaded_at: datetime
    validated_at: datetime | None
    extracted_at: datetime | None
    indexed_at: datetime | None
    thumbnail_url: str | None
    content_url: str

    @classmethod
    def of(cls, row: ImageRow) -> ImageOut:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            filename=row.filename,
            content_type=row.content_type,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            width=row.width,
            height=row.height,
            status=row.status,
            failure_code=row.failure_code,
            failure_reason=row.failure_reason,
            model=row.model,
            uploaded_at=row.uploaded_at,
            validated_at=row.validated_at,
            extracted_at=row.extracted_at,
            indexed_at=row.indexed_at,
            thumbnail_url=f"/api/images/{row.id}/thumbnail/256" if row.thumb_256_key else None,
            content_url=f"/api/images/{row.id}/content",
        )


class ImagePage(ApiModel):
    items: list[ImageOut]
    page: int
    page_size: int
    total: int


class VectorOut(ApiModel):
    image_id: uuid.UUID
    model: str | None
    dimension: int
    vector: list[float]


@router.post(
    "/api/images/upload",
    response_model=UploadOut,
    status_code=202,
    responses={200: {"model": UploadOut, "description": "an exact duplicate"}},
    openapi_extra=multipart_body("file"),
)
async def upload(
    request: Request,
    principal: Auth,
    c: Services,
    priority: Annotated[
        str,
        Query(
            description="`live` (default): an interactive upload. `bulk`: an import, processed"
            " after every live upload (the PostgreSQL broker orders by it; Knative's Kafka"
            " broker carries it but delivers in order per partition). Anything else: 400"
            " invalid_priority.",
            json_schema_extra={"enum": list(UPLOAD_PRIORITIES)},
        ),
    ] = "live",
) -> Response:
    """202 for a new image. 200 with ``duplicate: true`` and the existing image's id when
    this tenant already has these exact bytes (nothing is stored twice).

    The body is read only after the caller is authenticated (no body parameter here)."""
    extension = upload_priority(priority)
    at_once = c.settings.bulk_uploads_at_once
    if extension == "bulk" and at_once > 0:
        # The body is received before the gate (bytes only: the parse and the checks are the
        # work the gate paces), so clients that send slowly, or stall, never hold its slots.
        await request.body()
        async with bulk_gate(at_once):
            return await _upload(request, principal, c, extension)
    return await _upload(request, principal, c, extension)


async def _upload(
    request: Request, principal: Principal, c: Container, extension: str | None
) -> Response:
    form = await read_form(request, max_files=1)
    file = one_file(form)
    filename = clean_filename(file)
    data = await file.read()
    # An import's upload (decode check, storage, rows) yields the cores to live work.
    row, duplicate = await run_in_lane(
        c.settings.background_lane and extension in BACKGROUND_PRIORITIES,
        functools.partial(
            c.images.upload, principal, filename=filename, data=data, priority=extension
        ),
    )
    if duplicate:
        body = UploadOut(
            image_id=row.id,
            status=row.status,
            duplicate=True,
            message=f"identical to {row.filename}, already in this library",
        )
        return JSONResponse(body.model_dump(mode="json", by_alias=True), status_code=200)
    body = UploadOut(
        image_id=row.id, status=row.status, message="image accepted; processing has started"
    )
    return JSONResponse(body.model_dump(mode="json", by_alias=True), status_code=202)


@router.get("/api/images/duplicates")
def duplicate_groups(
    principal: Auth,
    c: Services,
    page: Annotated[Page, Query()] = 1,
    page_size: Annotated[int, Query(ge=1, le=100, alias="pageSize")] = 20,
) -> dict[str, Any]:
    """Near-duplicate groups in this tenant's library (declared before /{image_id})."""
    return c.duplicates.groups(principal, page=page, page_size=page_size)


@router.get("/api/images/{image_id}/duplicates")
def image_duplicates(
    image_id: uuid.UUID,
    principal: Auth,
    c: Services,
    threshold: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
) -> dict[str, Any]:
    items = c.duplicates.for_image(principal, image_id, threshold)
    return {"imageId": image_id, "duplicates": items}


@router.get("/api/images", response_model=ImagePage)
def list_images(
    principal: Auth,
    c: Services,
    page: Annotated[Page, Query()] = 1,
    page_size: Annotated[int, Query(ge=1, le=200, alias="pageSize")] = 50,
    status: Literal["uploaded", "validated", "extracted", "indexed", "failed"] | None = None,
) -> ImagePage:
    rows, total = c.images.list(principal, page=page, page_size=page_size, status=status)
    return ImagePage(
        items=[ImageOut.of(r) for r in rows], page=page, page_size=page_size, total=total
    )


@router.get("/api/images/{image_id}", response_model=ImageOut)
def get_image(image_id: uuid.UUID, principal: Auth, c: Services) -> ImageOut:
    """Served by ``hot`` below when the request is authenticated; this route answers the rest
    (no credentials: 401) and documents the endpoint."""
    return ImageOut.of(c.images.get(principal, image_id))


def hot(app: ASGI, c: Container) -> ASGI:
    """The data plane's most frequent read without FastAPI's routing, dependency solving and
    response re-validation (shared/hotpath/fastread.py): same answer, errors and span name.
    The row is read on the event loop (shared/hotpath/asyncread.py), or in a worker thread
    when async reads are off or the request runs on another loop (the in-process client)."""

    async def read(principal: Principal, image_id: uuid.UUID) -> bytes:
        reader = c.fast_reader
        if reader is not None and reader.serves():
            row = await c.images.get_on_loop(principal, image_id, reader)
        else:
            row = await asyncio.to_thread(c.images.get, principal, image_id)
        return ImageOut.__pydantic_serializer__.to_json(ImageOut.of(row), by_alias=True)

    return FastRead(app, ONE_IMAGE, read)


@router.get("/api/images/{image_id}/vector", response_model=VectorOut)
def get_vector(image_id: uuid.UUID, principal: Auth, c: Services) -> VectorOut:
    row, vec = c.images.vector(principal, image_id)
    return VectorOut(image_id=row.id, model=row.model, dimension=len(vec), vector=vec)


@router.get("/api/images/{image_id}/thumbnail/{size}")
def get_thumbnail(
    image_id: uuid.UUID,
    size: Annotated[int, Path(ge=1, le=4096)],
    principal: Auth,
    c: Services,
) -> Response:
    data = c.images.thumbnail(principal, image_id, size)
    return Response(
        data, media_type="image/webp", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get("/api/images/{image_id}/content")
def get_content(image_id: uuid.UUID, principal: Auth, c: Services) -> Response:
    data, ctype = c.images.content(principal, image_id)
    return Response(
        data,
        media_type=ctype,
        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.delete("/api/images/{image_id}", status_code=204)
def delete_image(image_id: uuid.UUID, principal: Auth, c: Services) -> Response:
    c.images.delete(principal, image_id)
    return Response(status_code=204)
