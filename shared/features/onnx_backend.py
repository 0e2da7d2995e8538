"""The CPU fast path: the same network, exported once to ONNX (pooling and L2 normalisation
included) and run by ONNX Runtime.

On a small CPU, one image per run with one intra-op thread per worker, and as many workers as
cores, beats batching: decode and inference of different images overlap across cores, and the
activations of one image stay in cache. Measured here (2 cores, efficientnet-lite0): ORT 7.2
core-ms/img vs eager torch fp32 ~16 core-ms; vectors agree with torch to cosine ≥ 0.9999.

Once the .onnx file is cached (``<data_dir>/models``), this backend never imports torch, so the
extract function starts in well under a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from shared.features.registry import ModelSpec
from shared.imaging import decode_for_model

log = logging.getLogger(__name__)
# Bumped when export_onnx changes what it writes: machine-wide copies of older exports are
# then not reused (shared_export).
EXPORT_FORMAT = 1


def export_onnx(
    spec: ModelSpec, path: Path, *, weights_dir: Path | None, random_weights: bool = False
) -> None:
    """Export the torch network with its pooling and normalisation (needs torch, once)."""
    import torch

    from shared.features.extractor import load_weights
    from shared.features.nets import build_net, pool, region_pool

    net = build_net(spec.arch, spec.variant, seed=0 if random_weights else None)
    if not random_weights:
        net.load_state_dict(load_weights(spec, weights_dir), strict=True)
    net.eval()

    class Embed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            fmap = self.net(x)
            feats = pool(fmap, spec.pooling, spec.gem_p)
            regions = region_pool(fmap, spec.pooling, spec.gem_p)
            return (
                torch.nn.functional.normalize(feats, dim=1),
                torch.nn.functional.normalize(regions, dim=2),
            )

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    # The TorchScript-tracing exporter (deprecated, still shipped) is used on purpose: tracing at
    # the fixed input size folds the TF-"same" padding arithmetic into constants, and it needs
    # no onnxscript. Its deprecation and tracer warnings are expected here.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Embed(),
            (torch.zeros(1, 3, spec.input_size, spec.input_size),),
            str(tmp),
            input_names=["pixels"],
            output_names=["embedding", "regions"],
            dynamic_axes={"pixels": {0: "n"}, "embedding": {0: "n"}, "regions": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    os.replace(tmp, path)  # atomic: concurrent starters never load a half-written file
    log.info("exported %s to %s", spec.name, path)


def shared_export(
    spec: ModelSpec, shared_dir: Path | None, weights_dir: Path | None, random_weights: bool
) -> Path | None:
    """Where this machine keeps the export for every data directory (``shared_dir``, the
    user's cache), or None when it cannot be shared: an export depends only on the network,
    its weights and the exporter, so a new data directory (a second ``deeplens up``, every
    test's) copies it instead of importing torch and tracing again (~5-10 s of CPU). Only
    exports whose weights are pinned by name and version qualify: the package-shipped ones
    and the seeded random ones, never an operator's weights directory."""
    if shared_dir is None:
        return None
    if weights_dir is not None and spec.weights_file and (weights_dir / spec.weights_file).exists():
        return None
    if not (random_weights or spec.weights_package):
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = [spec.space_suffix, f"random={random_weights}", "torch=" + version("torch")]
        if spec.weights_package and not random_weights:
            package = spec.weights_package
            parts.append(package + "=" + version(package.replace("_", "-")))
    except PackageNotFoundError:
        return None
    key = hashlib.sha256(f"{EXPORT_FORMAT}|{'|'.join(parts)}".encode()).hexdigest()[:16]
    return shared_dir / f"{spec.space_suffix}-regions-{key}.onnx"


def prepared(
    spec: ModelSpec,
    cache_dir: Path,
    shared_dir: Path | None = None,
    weights_dir: Path | None = None,
    random_weights: bool = False,
) -> Path:
    """The ONNX file to load: an operator's own encoder, or the export under the data dir —
    copied from the machine-wide one, or exported now (and then shared)."""
    if spec.onnx_path:  # an operator's own encoder, validated at registration
        return Path(spec.onnx_path)
    # "-regions": the export with the region vectors' second output (an older cached file
    # without it is left alone, not loaded).
    suffix = "-random" if random_weights else ""
    path = cache_dir / f"{spec.space_suffix}{suffix}-regions.onnx"
    if not path.exists():
        shared = shared_export(spec, shared_dir, weights_dir, random_weights)
        if shared is None or not _copy(shared, path):
            export_onnx(spec, path, weights_dir=weights_dir, random_weights=random_weights)
            if shared is not None:
                _copy(path, shared)
    return path


def _copy(src: Path, dst: Path) -> bool:
    """Copy atomically (a concurrent starter never reads a half-written file); False when the
    source is missing or the destination cannot be written (a read-only cache: export then)."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        return False
    log.info("model export copied from %s", src)
    return True


class OnnxExtractor:
    def __init__(
        self,
        spec: ModelSpec,
        *,
        cache_dir: Path,
        shared_dir: Path | None = None,
        weights_dir: Path | None = None,
        workers: int = 0,
        random_weights: bool = False,
    ):
        import onnxruntime as ort

        self.spec = spec
        path = prepared(spec, cache_dir, shared_dir, weights_dir, random_weights)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self.workers = workers or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx")
        # Bounds concurrent runs to the worker count whichever thread calls (HTTP requests
        # arrive on the server's thread pool): more would only thrash the cores.
        self._slots = threading.BoundedSemaphore(self.workers)
        self._mean = (np.array(spec.mean, np.float32) * 255).reshape(3, 1, 1)
        self._inv_std = (1 / (np.array(spec.std, np.float32) * 255)).reshape(3, 1, 1)

    def warm_up(self) -> None:
        self.embed_arrays(np.zeros((1, self.spec.input_size, self.spec.input_size, 3), np.uint8))

    def preprocess(self, data: bytes) -> np.ndarray:
        return decode_for_model(data, self.spec.input_size)

    def _run_all(self, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One image → its vector, and its region vectors when the graph has them (the
        built-in exports; an operator's encoder has one output)."""
        x = (arr.transpose(2, 0, 1).astype(np.float32) - self._mean) * self._inv_std
        with self._slots:
            outs = self.session.run(None, {self._input: x[None]})
        whole = finish(np.asarray(outs[0][0], dtype=np.float32), self.spec)
        regions = None
        if len(outs) > 1 and not self.spec.onnx_path:  # an operator's extra outputs are not ours
            regions = np.asarray(outs[1][0], dtype=np.float32)
        return whole, regions

    def _run(self, arr: np.ndarray) -> np.ndarray:
        return self._run_all(arr)[0]

    def embed_one(self, data: bytes) -> np.ndarray:
        return self._run(self.preprocess(data))

    def embed_one_regions(self, data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
        return self._run_all(self.preprocess(data))

    def embed_bytes(self, items: list[bytes]) -> np.ndarray:
        """Decode and infer across the worker pool, one image per run."""
        return np.stack(list(self.pool.map(self.embed_one, items)))

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        return np.stack(list(self.pool.map(self._run, list(batch))))

    def close(self) -> None:
        self.pool.shutdown(wait=False)


def finish(out: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """One image's network output → its L2-normalised vector. Built-in exports pool and
    normalise inside; an operator's encoder may return a C×H×W feature map, pooled here."""
    if out.ndim == 3:
        if spec.pooling == "gem":
            p = spec.gem_p
            out = (np.clip(out, 1e-6, None) ** p).mean(axis=(1, 2)) ** (1 / p)
        else:
            out = out.mean(axis=(1, 2))
    out = out.reshape(-1).astype(np.float32)
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out
