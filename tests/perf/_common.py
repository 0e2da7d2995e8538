"""Shared by the benchmarks: timing helpers, a table printer, JSON results, test images.

Benchmarks are not tests: they print figures and write JSON (``tests/perf/results/`` unless
``DEEPLENS_BENCH_OUT`` says otherwise); CI only runs them at tiny sizes as a smoke test.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from shared.quality import harness

__all__ = ["OUT", "add_admin_url", "percentile", "photo_jpegs", "report"]

OUT = Path(os.environ.get("DEEPLENS_BENCH_OUT", Path(__file__).parent / "results"))


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def report(name: str, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Print a table of rows (same keys each) and write NAME.json into OUT."""
    return harness.report(name, rows, out=OUT, **extra)


def photo_jpegs(n: int, *, size: tuple[int, int] = (1280, 800), seed: int = 0) -> list[bytes]:
    """~1 MP JPEGs made from the real photos in scikit-image, each one different (random
    crop, flip and colour), as a camera roll would be."""
    import io

    from PIL import Image, ImageEnhance

    from tests.photos import COLOUR, photo

    rng = np.random.default_rng(seed)
    bases = [photo(n) for n in COLOUR]
    out = []
    for i in range(n):
        img = bases[i % len(bases)]
        w, h = img.size
        x0, y0 = int(rng.integers(0, w // 8)), int(rng.integers(0, h // 8))
        img = img.crop((x0, y0, w - int(rng.integers(0, w // 8)), h - int(rng.integers(0, h // 8))))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.6, 1.4)))
        img = img.resize(size, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def add_admin_url(parser: argparse.ArgumentParser) -> None:
    """``--admin-url``: the PostgreSQL the benchmark makes its throw-away databases on (the
    tests' own, DEEPLENS_TEST_ADMIN_URL)."""
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DEEPLENS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
