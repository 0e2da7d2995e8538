"""Shared by the benchmarks: timing helpers, a table printer, JSON results, test images.

Benchmarks are not tests: they print figures and write JSON (``tests/perf/results/`` unless
``DEEPLENS_BENCH_OUT`` says otherwise); CI only runs them at tiny sizes as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(os.environ.get("DEEPLENS_BENCH_OUT", Path(__file__).parent / "results"))


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def report(name: str, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Print a table of rows (same keys each) and write NAME.json."""
    doc = {
        "benchmark": name,
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
        **extra,
    }
    if rows:
        keys = list(rows[0])
        widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
        print("  ".join(k.ljust(widths[k]) for k in keys))
        for r in rows:
            print("  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys))
    for k, v in extra.items():
        print(f"{k}: {v}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str))
    return doc


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


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
