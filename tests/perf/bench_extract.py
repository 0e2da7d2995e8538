"""Extraction from JPEG bytes (~1 MP) to L2-normalised vectors: the naive path (full-size
decode + eager fp32 torch, one image at a time) against the fast path (draft-mode decode +
ONNX Runtime, one image per run across a worker per core), in the same run.

    deeplens bench extract [--images 200] [--smoke]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from tempfile import mkdtemp

import numpy as np
import torch
from PIL import Image

from shared.features.extractor import Extractor
from shared.features.onnx_backend import OnnxExtractor
from shared.features.registry import model_spec
from shared.imaging import to_input
from tests.perf._common import photo_jpegs, report


def naive(ex: Extractor, blobs: list[bytes]) -> np.ndarray:
    """Full-resolution decode, contiguous fp32, batch of one."""
    net = ex.net.to(memory_format=torch.contiguous_format)
    out = []
    with torch.inference_mode():
        for b in blobs:
            arr = to_input(Image.open(io.BytesIO(b)).convert("RGB"), ex.spec.input_size)
            x = (torch.from_numpy(arr.copy()).permute(2, 0, 1).float()[None] - ex._mean) / ex._std
            f = net(x).mean(dim=(2, 3))
            out.append(torch.nn.functional.normalize(f, dim=1)[0].numpy())
    ex.net.to(memory_format=torch.channels_last)
    return np.stack(out)


def timed(fn, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def run(images: int, models: list[str]) -> dict:  # type: ignore[type-arg]
    blobs = photo_jpegs(images)
    rows = []
    for name in models:
        spec = model_spec(name)
        random = name != "efficientnet-lite0"  # other weights need a network; timing only
        ref = Extractor(spec, device="cpu", random_weights=random)
        ref.warm_up()
        fast = OnnxExtractor(spec, cache_dir=Path(mkdtemp()), random_weights=random)
        fast.warm_up()
        naive(ref, blobs[:2])
        base, t_naive = timed(naive, ref, blobs)
        vecs, t_fast = timed(fast.embed_bytes, blobs)
        agree = float(np.min(np.sum(base * vecs, axis=1)))
        rows.append(
            {
                "model": name,
                "naive img/s": images / t_naive,
                "fast img/s": images / t_fast,
                "speed-up": t_naive / t_fast,
                "fast ms/img": 1000 * t_fast / images,
                "min cosine vs naive": agree,
            }
        )
        fast.close()
    return report(
        "extract",
        rows,
        images=images,
        image_size="1280x800 JPEG q90",
        fast_path="draft decode + onnxruntime, 1 intra-op thread x cores workers",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--models", default="efficientnet-lite0,resnet50")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    run(8 if a.smoke else a.images, a.models.split(",")[:1] if a.smoke else a.models.split(","))


if __name__ == "__main__":
    main()
