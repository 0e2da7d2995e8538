"""extract (GPU in production): feature vectors from images.

HTTP: POST /extract (multipart ``file``, optional ``model``) → {features, model, shape,
processing_time_ms}; POST /extract/batch (multipart ``files``); GET /models; GET /health.
Events: POST /events/extract consumes image.validated, replies features.extracted.
The model is loaded once in start() (``warm``); concurrent requests are micro-batched.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from events.codec import payload
from events.http import EVENT_ROUTE, read_event, reply
from events.payloads import ImageValidated
from shared.auth.principal import Principal
from shared.bootstrap import Container
from shared.errors import InvalidInput
from shared.features.registry import MODELS
from shared.http import authenticated, container
from shared.uploads import clean_filename, field, multipart_body, one_file, read_form

router = APIRouter(tags=["extract"])
Auth = Annotated[Principal, Depends(authenticated)]
MAX_BATCH = 64
_MODEL_FIELD = {"model": {"type": "string", "maxLength": 100}}


def warm(c: Container) -> None:
    """Load the model (and run one warm-up batch) before the instance reports ready."""
    _ = c.embedder


def _check_model(c: Container, requested: object) -> str:
    name = c.embedder.spec.name
    if requested not in (None, "", name):
        raise InvalidInput(
            f"this instance serves {name}; {requested} is not loaded", code="model_not_loaded"
        )
    return name


@router.post("/extract", openapi_extra=multipart_body("file", fields=_MODEL_FIELD))
async def extract(request: Request, _: Auth) -> dict[str, Any]:
    """Credentials required (a JWT or an API key; the call counts against the tenant's
    quota): inference is the platform's most expensive operation."""
    c = container(request)
    form = await read_form(request, max_files=1)
    upload = one_file(form)
    name = _check_model(c, field(form, "model"))
    data = await upload.read()
    t0 = time.perf_counter()
    features = await run_in_threadpool(c.embedder.embed, data)
    return {
        "features": features,
        "model": name,
        "shape": [len(features)],
        "processing_time_ms": round((time.perf_counter() - t0) * 1000, 2),
    }


@router.post(
    "/extract/batch",
    openapi_extra=multipart_body(
        fields={"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
        required=["files"],
    ),
)
async def extract_batch(request: Request, _: Auth) -> dict[str, Any]:
    c = container(request)
    form = await read_form(request, max_files=MAX_BATCH)
    files = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not files:
        raise InvalidInput("send images as multipart fields 'files'", code="files_required")
    if len(files) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} images per batch", code="batch_too_large")
    for f in files:
        clean_filename(f)
    name = _check_model(c, field(form, "model"))
    blobs = [await f.read() for f in files]
    t0 = time.perf_counter()
    vectors = await run_in_threadpool(c.embedder.embed_many, blobs)
    return {
        "results": [
            {"filename": f.filename, "features": v, "shape": [len(v)]}
            for f, v in zip(files, vectors, strict=True)
        ],
        "model": name,
        "count": len(vectors),
        "processing_time_ms": round((time.perf_counter() - t0) * 1000, 2),
    }


@router.get("/models")
def models(request: Request) -> list[dict[str, Any]]:
    loaded = container(request).settings.features.model
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
def health(request: Request) -> dict[str, Any]:
    c = container(request)
    emb = c.embedder
    device = str(getattr(emb, "device", "remote"))
    return {"status": "healthy", "model": emb.spec.name, "device": device}


@router.post("/events/extract", **EVENT_ROUTE)
async def on_validated(request: Request) -> Response:
    c = container(request)
    event = await read_event(request)
    p = payload(event, ImageValidated)
    assert isinstance(p, ImageValidated)
    return reply(await run_in_threadpool(c.pipeline.extract, p, event))
