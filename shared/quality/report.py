"""Benchmark and evaluation reports: a printed table and NAME.json, with the machine they ran
on (ratios compare only within one machine and one run). Free of the database driver, so a
benchmark that needs no platform (``deeplens bench cuda`` on a GPU machine) can use it."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["OUT", "machine", "report"]

OUT = Path(os.environ.get("DEEPLENS_BENCH_OUT", Path.cwd() / "tests" / "perf" / "results"))


def machine() -> dict[str, Any]:
    """The CPU model, cores and Python of this machine (ratios compare only within one)."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def report(
    name: str, rows: list[dict[str, Any]], *, out: Path | None = None, **extra: Any
) -> dict[str, Any]:
    """Print a table of rows (same keys each) and the extras; write NAME.json into ``out``
    (default OUT). The benchmarks' report too (tests/perf/_common.py)."""
    doc = {
        "benchmark": name,
        "machine": machine(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
        **extra,
    }
    stdout = sys.stdout
    if rows:
        keys = list(rows[0])
        widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
        stdout.write("  ".join(k.ljust(widths[k]) for k in keys) + "\n")
        for r in rows:
            stdout.write("  ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys) + "\n")
    for k, v in extra.items():
        stdout.write(f"{k}: {v}\n")
    folder = OUT if out is None else out
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str))
    return doc


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)
