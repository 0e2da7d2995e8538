"""extract (GPU in production): feature vectors from images.

HTTP: POST /extract (multipart ``file``, optional ``model``) → {features, model, shape,
processing_time_ms}; POST /extract/batch (multipart ``files``); GET /models; GET /health.
Events: POST /events/extract consumes image.validated, replies features.extracted.
The model is loaded once in start() (``warm``); concurrent requests are micro-batched.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from events.codec import payload
from events.http import EVENT_ROUTE, read_event, reply
from events.payloads import ImageValidated
from shared.bootstrap import Container
from shared.errors import InvalidInput
from shared.features.registry import MODELS
from shared.http import container

router = APIRouter(tags=["extract"])


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


@router.post("/extract")
async def extract(request: Request) -> dict[str, Any]:
    c = container(request)
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidInput("send the image as multipart field 'file'", code="file_required")
    name = _check_model(c, form.get("model"))
    data = await upload.read()
    t0 = time.perf_counter()
    features = await run_in_threadpool(c.embedder.embed, data)
    return {
        "features": features,
        "model": name,
        "shape": [len(features)],
        "processing_time_ms": round((time.perf_counter() - t0) * 1000, 2),
    }


@router.post("/extract/batch")
async def extract_batch(request: Request) -> dict[str, Any]:
    c = container(request)
    form = await request.form()
    files = [f for f in form.getlist("files") if not isinstance(f, str)]
    if not files:
        raise InvalidInput("send images as multipart fields 'files'", code="files_required")
    if len(files) > 64:
        raise InvalidInput("at most 64 images per batch", code="batch_too_large")
    name = _check_model(c, form.get("model"))
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
