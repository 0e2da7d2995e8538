"""``deeplens bench`` and ``deeplens eval``: commands for a source checkout. Shipped code never
imports tests/: a benchmark runs as its own process (``python -m tests.perf.bench_NAME``) from
the checkout this package was installed from (an editable install); the evaluation lives in
shared/quality and is imported by name only when asked for (it needs the dev extras)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import subprocess
import sys
from pathlib import Path

from shared.cli.up import _settings_env

log = logging.getLogger("deeplens")

BENCHMARKS = [
    "extract",
    "search",
    "http",
    "coldstart",
    "ingest",
    "memory",
    "migration",
    "observability",
    "extracthttp",
    "noisy",
    "verify",
    "cuda",
]


def checkout_root() -> Path:
    """The source checkout holding this package (shared/cli/ is two levels below it)."""
    return Path(__file__).resolve().parents[2]


def cmd_bench(args: argparse.Namespace) -> int:
    """Run benchmarks from tests/perf (in a source checkout): each prints a table and writes
    tests/perf/results/NAME.json."""
    root = checkout_root()
    if not (root / "tests" / "perf").is_dir():
        raise SystemExit(
            f"deeplens bench needs a source checkout: no tests/perf under {root}"
            " (install the project with `pip install -e .` from a clone)"
        )
    names = BENCHMARKS if args.name == "all" else [args.name]
    if args.name == "all" and not Path("/dev/nvidiactl").exists():
        names = [n for n in names if n != "cuda"]  # the GPU path needs a GPU
    for name in names:
        log.info("benchmark %s", name)
        command = [sys.executable, "-m", f"tests.perf.bench_{name}", *args.rest]
        rc = subprocess.call(command, cwd=root)
        if rc != 0:
            return rc
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Retrieval quality through the HTTP API on the held-out test split (shared/quality;
    needs the test PostgreSQL, DEEPLENS_TEST_ADMIN_URL). With ``--model REF``: fit that
    model's calibration on the dev set and store it."""
    if args.model:
        from shared.bootstrap import Container
        from shared.calibration import calibrate_model
        from shared.config import Settings

        ds = importlib.import_module("shared.quality.photoset").build(args.faces)
        dev = [i for i, part in enumerate(ds.query_split) if part == "dev"]  # never test
        c = Container(Settings.from_env(_settings_env(args)))
        c.open()
        try:
            out = calibrate_model(
                c,
                args.model,
                ds.gallery,
                [ds.queries[i] for i in dev],
                [ds.query_target[i] for i in dev],
            )
        finally:
            c.close()
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    importlib.import_module("shared.quality.eval").main(args.rest)
    return 0


def add_source_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="run benchmarks (tests/perf; from a source checkout)")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"], nargs="?", default="all")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options for the benchmark")
    bench.set_defaults(func=cmd_bench)

    ev = sub.add_parser(
        "eval", help="retrieval quality over HTTP, held-out test split (shared/quality)"
    )
    ev.add_argument("--model", help="fit and store this model's calibration (name:pooling:size)")
    ev.add_argument("--faces", type=int, default=200, help="face distractors (with --model)")
    ev.add_argument("--data-dir", type=Path)
    ev.add_argument("rest", nargs=argparse.REMAINDER, help="options for the evaluation")
    ev.set_defaults(func=cmd_eval)
