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
from tests.photos import photo_jpegs

__all__ = ["OUT", "add_admin_url", "percentile", "photo_jpegs", "report"]

OUT = Path(os.environ.get("DEEPLENS_BENCH_OUT", Path(__file__).parent / "results"))


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q)) if samples else float("nan")


def report(name: str, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Print a table of rows (same keys each) and write NAME.json into OUT."""
    return harness.report(name, rows, out=OUT, **extra)


def add_admin_url(parser: argparse.ArgumentParser) -> None:
    """``--admin-url``: the PostgreSQL the benchmark makes its throw-away databases on (the
    tests' own, DEEPLENS_TEST_ADMIN_URL)."""
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DEEPLENS_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
