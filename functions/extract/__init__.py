"""extract (GPU in production): feature vectors from images.

HTTP: POST /extract (multipart ``file``, optional ``model``) → {features, model, shape,
processing_time_ms}; POST /extract/batch (multipart ``files``); GET /models; GET /health.
Events: POST /events/extract consumes image.validated and image.reembed (a model migration's
backfill, a reindex), replies features.extracted. ``model`` may name any model reference
(``name:pooling:size`` or a registered ONNX model): models other than the configured one are
loaded on first use. The configured model is loaded in start() (``warm``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from events import types
from events.auth import check_internal
from events.codec import payload
from events.http import EVENT_ROUTE, read_event, reply
from events.payloads import ImageReembed, ImageValidated
from shared.auth.principal import Principal
from shared.bootstrap import Container
from shared.errors import InvalidInput
from shared.features.registry import MODELS
from shared.http import Services, authenticated, container
from shared.lanes import run_for
from shared.uploads import clean_filename, field, multipart_body, one_file, read_form

router = APIRouter(tags=["extract"])


async def caller(request: Request) -> Principal | None:
    """Another platform function presenting the shared secret (search by image asks extract
    to embed the query; events/auth.py), or a user's credentials, whose calls count against
    the tenant's quota. Nobody else: inference is the platform's most expensive operation."""
    if check_internal(container(request).settings, request.headers.get("authorization")):
        return None
    return await authenticated(request)


# Not shared/http's Auth: the platform's own functions call extract too (no principal then).
Caller = Annotated[Principal | None, Depends(caller)]
MAX_BATCH = 64
_MODEL_FIELD = {"model": {"type": "string", "maxLength": 100}}


def warm(c: Container) -> None:
    """Load the model (and run one warm-up batch) before the instance reports ready."""
    _ = c.embedder


@router.post("/extract", openapi_extra=multipart_body("file", fields=_MODEL_FIELD))
async def extract(request: Request, _: Caller, c: Services) -> dict[str, Any]:
    """Credentials required (a JWT or an API key; the call counts against the tenant's
    quota): inference is the platform's most expensive operation."""
    form = await read_form(request, max_files=1)
    data = await one_file(form).read()
    out = await run_in_threadpool(
        c.pipeline.extract.embed, field(form, "model"), [data], batch=False
    )
    [features] = out.vectors
    return {
        "features": features,
        "model": out.model,
        "shape": [len(features)],
        "processing_time_ms": out.ms,
    }


@router.post(
    "/extract/batch",
    openapi_extra=multipart_body(
        fields={"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        required=["files"],
    ),
)
async def extract_batch(request: Request, _: Caller, c: Services) -> dict[str, Any]:
    form = await read_form(request, max_files=MAX_BATCH)
    files = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not files:
        raise InvalidInput("send images as multipart fields 'files'", code="files_required")
    if len(files) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} images per batch", code="batch_too_large")
    for f in files:
        clean_filename(f)
    blobs = [await f.read() for f in files]
    out = await run_in_threadpool(c.pipeline.extract.embed, field(form, "model"), blobs, batch=True)
    return {
        "results": [
            {"filename": f.filename, "features": v, "shape": [len(v)]}
            for f, v in zip(files, out.vectors, strict=True)
        ],
        "model": out.model,
        "count": len(out.vectors),
        "processing_time_ms": out.ms,
    }


@router.get("/models")
def models(c: Services) -> list[dict[str, Any]]:
    loaded = c.settings.features.model
    return [
        {
            "name": m.name,
            "dimension": m.dim,
            "inputSize": m.input_size,
            "pooling": m.pooling,
            "loaded": m.name == loaded,
        }
        for m in MODELS.values()
    ]


@router.get("/health")
def health(c: Services) -> dict[str, Any]:
    emb = c.embedder
    device = str(getattr(emb, "device", "remote"))
    return {"status": "healthy", "model": emb.spec.name, "device": device}


@router.post("/events/extract", **EVENT_ROUTE)
async def on_validated(request: Request, c: Services) -> Response:
    event = await read_event(request)
    lane = c.settings.background_lane
    if event.type == types.IMAGE_REEMBED:
        r = payload(event, ImageReembed)
        assert isinstance(r, ImageReembed)
        return reply(await run_for(event, lane, c.pipeline.extract.reembed, r, event))
    p = payload(event, ImageValidated)
    assert isinstance(p, ImageValidated)
    return reply(await run_for(event, lane, c.pipeline.extract.on_validated, p, event))
