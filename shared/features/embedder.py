"""Embedders turn image bytes into vectors: in-process (torch) or a remote extract function.

Search and the pipeline depend on this interface only, so a function that calls the GPU
extract service over HTTP never imports torch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from shared import metrics
from shared.config import Settings
from shared.errors import InvalidInput, TransientError
from shared.features.registry import ModelSpec, spec_for

log = logging.getLogger(__name__)


class Embedder(Protocol):
    spec: ModelSpec

    def embed(self, data: bytes) -> list[float]: ...
    def embed_many(self, items: list[bytes]) -> list[list[float]]: ...
    def embed_regions(self, data: bytes) -> tuple[list[float], list[list[float]]]:
        """The vector and the region vectors (none from an encoder that has no feature map
        to read them from: an operator's ONNX file, the remote extract service)."""
        ...

    def close(self) -> None: ...


def _no_gpu_device() -> bool:
    """True when no NVIDIA device exists, decided without importing torch (cold start)."""
    return not (Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists())


class LocalEmbedder:
    """In-process extraction: ONNX Runtime on CPU (the fast path), torch on CUDA or on
    request (``DEEPLENS_FEATURES__BACKEND``). Both share preprocessing and agree to
    cosine ≥ 0.999."""

    def __init__(
        self, settings: Settings, *, random_weights: bool = False, spec: ModelSpec | None = None
    ):
        f = settings.features
        self.spec = spec or spec_for(f)
        self.backend = backend = backend_for(settings, self.spec)
        self.batcher = None
        if backend == "onnx":
            from shared.features.onnx_backend import OnnxExtractor

            self.onnx = OnnxExtractor(
                self.spec,
                cache_dir=settings.data_dir / "models",
                shared_dir=f.model_cache,
                weights_dir=f.weights_dir,
                workers=f.threads,
                random_weights=random_weights,
            )
            self.onnx.warm_up()
            self.extractor: Any = self.onnx
        else:
            from shared.features.batching import MicroBatcher
            from shared.features.extractor import Extractor

            self.extractor = Extractor(
                self.spec,
                device=f.device,
                weights_dir=f.weights_dir,
                threads=f.threads,
                random_weights=random_weights,
                bf16=f.bf16,
                cuda_graphs=f.cuda_graphs,
            )
            self.extractor.warm_up()
            # Batching pays on a GPU: concurrent requests share one forward pass.
            self.batcher = MicroBatcher(
                self.extractor, max_batch=f.max_batch, max_wait_ms=f.max_wait_ms
            )

    @property
    def device(self) -> str:
        return "cpu (onnxruntime)" if self.backend == "onnx" else str(self.extractor.device)

    def embed(self, data: bytes) -> list[float]:
        t0 = time.perf_counter()
        row = self.onnx.embed_one(data) if self.batcher is None else self.batcher.embed(data)
        metrics.extracted(self.spec.name, 1, time.perf_counter() - t0)
        return [float(x) for x in row]

    def embed_regions(self, data: bytes) -> tuple[list[float], list[list[float]]]:
        t0 = time.perf_counter()
        if self.batcher is not None:
            row, regions = self.batcher.embed_regions(data)  # batched with its neighbours
        else:
            row, regions = self.extractor.embed_one_regions(data)
        metrics.extracted(self.spec.name, 1, time.perf_counter() - t0)
        parts = [] if regions is None else [[float(x) for x in r] for r in regions]
        return [float(x) for x in row], parts

    def embed_many(self, items: list[bytes]) -> list[list[float]]:
        t0 = time.perf_counter()
        rows = self.extractor.embed_bytes(items)
        metrics.extracted(self.spec.name, len(items), time.perf_counter() - t0)
        return [[float(x) for x in row] for row in rows]

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        else:
            self.onnx.close()


def backend_for(settings: Settings, spec: ModelSpec) -> str:
    """onnx or torch: what ``LocalEmbedder`` runs ``spec`` on with these settings."""
    f = settings.features
    if spec.arch == "onnx":
        return "onnx"  # an operator's own encoder is an ONNX file
    if f.backend == "auto":
        cpu = f.device == "cpu" or (f.device == "auto" and _no_gpu_device())
        return "onnx" if cpu and _has_onnxruntime() else "torch"
    return f.backend


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


class HttpEmbedder:
    """POST /extract on the extract function (the GPU service in production)."""

    def __init__(self, settings: Settings, spec: ModelSpec | None = None):
        assert settings.features.extract_url
        self.spec = spec or spec_for(settings.features)
        from events.auth import sender_headers

        # The platform's shared secret: /extract answers other functions and signed-in users.
        self.client = httpx.Client(
            base_url=settings.features.extract_url, timeout=30, headers=sender_headers(settings)
        )

    def embed(self, data: bytes) -> list[float]:
        try:
            r = self.client.post(
                "/extract", files={"file": ("image", data)}, data={"model": self.spec.ref}
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

    def embed_regions(self, data: bytes) -> tuple[list[float], list[list[float]]]:
        return self.embed(data), []  # /extract answers the vector only

    def close(self) -> None:
        self.client.close()


def build_embedder(settings: Settings, spec: ModelSpec | None = None) -> Embedder:
    """The embedder for ``spec`` (default: the settings' model): remote when an extract URL
    is set, else in-process."""
    if settings.features.extract_url:
        return HttpEmbedder(settings, spec)
    return LocalEmbedder(settings, spec=spec)
