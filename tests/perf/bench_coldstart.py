"""Cold start and memory per function: a fresh Python process imports ``function``, calls
``new()`` and ``start()`` with FUNCTION_TARGET set, and reports the time until ready(), the RSS
after start, and whether torch was imported. Baseline: a bare interpreter in the same run.

    deeplens bench coldstart [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from tempfile import mkdtemp

import psycopg

from functions import FUNCTIONS
from tests.perf._common import add_admin_url, percentile, report

PROBE = r"""
import json, os, sys, time
t0 = time.perf_counter()
from function import new
f = new()
f.start(dict(os.environ))
ok, _ = f.ready()
dt = time.perf_counter() - t0
rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
print(json.dumps({"ready": ok, "seconds": dt, "rss_mb": rss, "torch": "torch" in sys.modules}))
f.stop()
"""
BARE = r"""
import json, time
print(json.dumps({"rss_mb": int(next(l for l in open("/proc/self/status")
      if l.startswith("VmRSS")).split()[1]) // 1024}))
"""


def run(repeat: int, admin_url: str) -> dict:  # type: ignore[type-arg]
    db = f"deeplens_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + db
    env = dict(
        os.environ,
        DEEPLENS_ENV="test",
        DEEPLENS_DATABASE_URL=url,
        DEEPLENS_DATA_DIR=mkdtemp(),
        DEEPLENS_BROKER_AUTOSTART="0",
    )
    root = Path(__file__).resolve().parents[2]
    try:
        # First start of extract exports the ONNX model (once per model): measured apart.
        first = _probe(env, "extract", root)
        import time

        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare_s = time.perf_counter() - t0
        bare = json.loads(
            subprocess.run(
                [sys.executable, "-c", BARE], capture_output=True, text=True, check=True
            ).stdout
        )
        rows = [
            {
                "function": "(bare python)",
                "ready s p50": bare_s,
                "rss MB": bare["rss_mb"],
                "torch": False,
            }
        ]
        for name in FUNCTIONS:
            samples = [_probe(env, name, root) for _ in range(repeat)]
            rows.append(
                {
                    "function": name,
                    "ready s p50": percentile([s["seconds"] for s in samples], 50),
                    "rss MB": max(s["rss_mb"] for s in samples),
                    "torch": any(s["torch"] for s in samples),
                }
            )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return report(
        "coldstart",
        rows,
        extract_first_start_with_onnx_export_s=round(first["seconds"], 2),
        note="time from process start to ready(), includes imports",
    )


def _probe(env: dict[str, str], target: str, root: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=dict(env, FUNCTION_TARGET=target),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    add_admin_url(p)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    run(1 if a.smoke else a.repeat, a.admin_url)


if __name__ == "__main__":
    main()
