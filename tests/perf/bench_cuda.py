"""Feature extraction on CUDA — the extract function's GPU path (torch, channels_last, uint8
pixels normalised on the device, micro-batching) — against the same model on the same
machine's CPU cores, in the same run:

- agreement: vectors and region vectors on CUDA (fp32, and bf16) against the CPU fp32 reference
  (every backend is held to cosine ≥ 0.999);
- inference alone, per batch size, fp32 and bf16 (decoded pixels in, vectors out);
- JPEG bytes → vectors end to end: ``embed_bytes`` in batches (decoding across the cores), and
  single requests from many threads merged by the micro-batcher with region vectors, as the
  pipeline's extraction asks for them.

    deeplens bench cuda [--images 512]

Needs a CUDA device (exits 2 without one); ``--smoke`` runs it at tiny sizes, on the CPU when
there is no GPU. Needs no database: it runs on a bare GPU machine with torch, Pillow and
scikit-image (weights from ``DEEPLENS_FEATURES__WEIGHTS_DIR`` or the weights package).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.features.batching import MicroBatcher
from shared.features.extractor import Extractor, _decode_pool
from shared.features.registry import model_spec
from shared.quality.report import report
from tests.photos import photo_jpegs


def rate(fn: Any, n_items: int, *, min_seconds: float, warm: int = 2) -> float:
    """Items per second of ``fn()`` (each call handles ``n_items``), repeated for at least
    ``min_seconds`` after ``warm`` untimed calls."""
    for _ in range(warm):
        fn()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return calls * n_items / elapsed


def cosine_floor(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=-1)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("deeplens bench cuda: no CUDA device on this machine", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    images = 8 if args.smoke else args.images
    sizes = [1, 4] if args.smoke else [1, 8, 32, 128, 512]
    seconds = 0.05 if args.smoke else 1.0
    spec = model_spec(args.model)
    weights = os.environ.get("DEEPLENS_FEATURES__WEIGHTS_DIR")
    weights_dir = Path(weights) if weights else None
    random = args.model != "efficientnet-lite0"  # other weights need a network; timing only

    t0 = time.perf_counter()
    blobs = photo_jpegs(images)
    print(f"{len(blobs)} ~1 MP JPEGs made in {time.perf_counter() - t0:.1f} s", flush=True)
    cpu = Extractor(spec, device="cpu", weights_dir=weights_dir, random_weights=random)
    gpu = Extractor(spec, device=device, weights_dir=weights_dir, random_weights=random)
    eager = Extractor(
        spec, device=device, weights_dir=weights_dir, random_weights=random, cuda_graphs=False
    )
    gpu16 = Extractor(
        spec, device=device, weights_dir=weights_dir, random_weights=random, bf16=True
    )
    arrays = np.stack([gpu.preprocess(b) for b in blobs[:64]])
    rows: list[dict[str, Any]] = []

    ref_w, ref_r = cpu.embed_batch_regions(arrays)
    for name, ex in (("fp32", gpu), ("bf16", gpu16)):
        w, rv = ex.embed_batch_regions(arrays)
        rows.append(
            {
                "what": f"agreement {device} {name} vs cpu fp32 (min cosine, {len(arrays)} photos)",
                "figure": round(cosine_floor(w, ref_w), 5),
                "baseline": round(cosine_floor(rv, ref_r), 5),
                "unit": "vector / region vectors",
            }
        )
        print(rows[-1], flush=True)

    def tile(n: int) -> np.ndarray:
        return np.ascontiguousarray(np.resize(arrays, (n, *arrays.shape[1:])))

    cpu_batch = tile(32)
    cpu_rate = rate(lambda: cpu.embed_arrays(cpu_batch), 32, min_seconds=seconds)
    for bs in sizes:
        batch = tile(bs)
        runs = [("fp32", gpu), ("bf16", gpu16)]
        if bs <= 32:
            runs.append(("fp32 eager (no CUDA graph)", eager))
        for name, ex in runs:
            r = rate(lambda ex=ex, batch=batch: ex.embed_arrays(batch), bs, min_seconds=seconds)
            rows.append(
                {
                    "what": f"inference alone, {device} {name}, batch {bs}",
                    "figure": round(r, 1),
                    "baseline": round(cpu_rate, 1),
                    "unit": "img/s vs cpu fp32 batch 32",
                }
            )
            print(rows[-1], flush=True)

    decode = rate(
        lambda: list(_decode_pool().map(gpu.preprocess, blobs)),
        len(blobs),
        min_seconds=seconds,
        warm=1,
    )
    rows.append(
        {
            "what": f"decode alone, {os.cpu_count()} threads (draft mode, 224 px)",
            "figure": round(decode, 1),
            "baseline": round(cpu_rate, 1),
            "unit": "img/s",
        }
    )
    print(rows[-1], flush=True)

    chunk = min(128, len(blobs))
    chunks = [blobs[i : i + chunk] for i in range(0, len(blobs), chunk)]
    cpu_e2e = rate(
        lambda: [cpu.embed_bytes(c[:32]) for c in chunks[:1]],
        min(32, len(blobs)),
        min_seconds=seconds,
        warm=1,
    )
    gpu_e2e = rate(
        lambda: [gpu.embed_bytes(c) for c in chunks], len(blobs), min_seconds=seconds, warm=1
    )
    rows.append(
        {
            "what": f"bytes → vectors, embed_bytes in batches of {chunk}, {device} fp32",
            "figure": round(gpu_e2e, 1),
            "baseline": round(cpu_e2e, 1),
            "unit": "img/s vs cpu fp32 (batches of 32)",
        }
    )
    print(rows[-1], flush=True)

    def merged_rate(ex: Extractor, clients: int, regions: bool) -> tuple[float, float]:
        """Single requests from ``clients`` threads through the micro-batcher: img/s and the
        mean batch of one pass over the photos."""
        batcher = MicroBatcher(ex, max_batch=64, max_wait_ms=5)
        lock = threading.Lock()
        cursor = [0]

        def client() -> None:
            while True:
                with lock:
                    i = cursor[0]
                    cursor[0] += 1
                if i >= len(blobs):
                    return
                if regions:
                    batcher.embed_regions(blobs[i])
                else:
                    batcher.embed(blobs[i])

        def run_all() -> None:
            cursor[0] = 0
            with ThreadPoolExecutor(clients) as pool:
                for f in [pool.submit(client) for _ in range(clients)]:
                    f.result()

        try:
            r = rate(run_all, len(blobs), min_seconds=seconds, warm=1)
            before = batcher.batches
            run_all()
            return r, len(blobs) / max(1, batcher.batches - before)
        finally:
            batcher.close()

    many = 8 if args.smoke else 64
    for label, ex, clients, regions in (
        ("fp32, CUDA graphs", gpu, many, True),
        ("fp32 eager (no CUDA graph)", eager, many, True),
        ("fp32, CUDA graphs", gpu, 16, True),
        ("fp32, CUDA graphs, no regions", gpu, many, False),
    ):
        speed, mean_batch = merged_rate(ex, clients, regions)
        rows.append(
            {
                "what": f"single requests{' + regions' if regions else ''}, {clients} threads, "
                f"micro-batcher, {device} {label}",
                "figure": round(speed, 1),
                "baseline": round(cpu_e2e, 1),
                "unit": f"img/s vs cpu fp32 bytes → vectors (mean batch {mean_batch:.1f})",
            }
        )
        print(rows[-1], flush=True)
    extra: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if cuda else "cpu (smoke)",
        "torch": torch.__version__,
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32),
        "images": len(blobs),
    }
    report("cuda", rows, **extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
