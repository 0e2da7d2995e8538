"""Embedders turn image bytes into vectors: in-process (torch) or a remote extract function.

Search and the pipeline depend on this interface only, so a function that calls the GPU
extract service over HTTP never imports torch.
"""

from __future__ import annotations

import logging
from typing import Protocol

import httpx

from shared.config import Settings
from shared.errors import InvalidInput, TransientError
from shared.features.registry import ModelSpec, model_spec

log = logging.getLogger(__name__)


class Embedder(Protocol):
    spec: ModelSpec

    def embed(self, data: bytes) -> list[float]: ...
    def embed_many(self, items: list[bytes]) -> list[list[float]]: ...
    def close(self) -> None: ...


class LocalEmbedder:
    def __init__(self, settings: Settings, *, random_weights: bool = False):
        from shared.features.extractor import Extractor, MicroBatcher

        f = settings.features
        self.spec = model_spec(f.model)
        self.extractor = Extractor(
            self.spec,
            device=f.device,
            weights_dir=f.weights_dir,
            threads=f.threads,
            random_weights=random_weights,
        )
        self.extractor.warm_up()
        self.batcher = MicroBatcher(
            self.extractor, max_batch=f.max_batch, max_wait_ms=f.max_wait_ms
        )

    def embed(self, data: bytes) -> list[float]:
        return [float(x) for x in self.batcher.embed(data)]

    def embed_many(self, items: list[bytes]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.extractor.embed_bytes(items)]

    def close(self) -> None:
        self.batcher.close()


class HttpEmbedder:
    """POST /extract on the extract function (the GPU service in production)."""

    def __init__(self, settings: Settings):
        assert settings.features.extract_url
        self.spec = model_spec(settings.features.model)
        self.client = httpx.Client(base_url=settings.features.extract_url, timeout=30)

    def embed(self, data: bytes) -> list[float]:
        try:
            r = self.client.post(
                "/extract", files={"file": ("image", data)}, data={"model": self.spec.name}
            )
        except httpx.HTTPError as exc:
            raise TransientError("extract service unreachable") from exc
        if r.status_code in (400, 413, 415, 422):
            err = r.json().get("error", {})
            raise InvalidInput(
                err.get("message", "invalid image"), code=err.get("code", "invalid_image")
            )
        if r.status_code != 200:
            raise TransientError(f"extract service answered {r.status_code}")
        features: list[float] = r.json()["features"]
        return features

    def embed_many(self, items: list[bytes]) -> list[list[float]]:
        return [self.embed(b) for b in items]

    def close(self) -> None:
        self.client.close()


def build_embedder(settings: Settings) -> Embedder:
    if settings.features.extract_url:
        return HttpEmbedder(settings)
    return LocalEmbedder(settings)
