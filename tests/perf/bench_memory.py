"""Memory under a burst of decompression-bomb-like uploads (issue 13): N concurrent zero-filled
maximum-size PNGs (7071×7071, ~50 MP, ~150 KB each) against ``deeplens up``.

Measures the platform's resident memory (process and children) before, at the peak, and 3 s
after the pipeline has indexed every image, with the decode memory budget (the default) and,
as the same-run baseline, with the budget lifted (``DEEPLENS_DECODE_BUDGET_BYTES`` and
``DEEPLENS_MAX_DECODED_BYTES`` huge: every decode at once, as before the fix). Target: the
rise stays under 1 GB and comes back.

    deeplens bench memory [--uploads 8]
"""

from __future__ import annotations

import argparse
import io
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
from PIL import Image

from tests.e2e.conftest import signup, start_platform, wait_all
from tests.perf._common import add_admin_url, report

SIDE = 7071  # 49,999,041 pixels: just under the 50 MP limit
MB = 1024 * 1024


def zero_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE)).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            pids.extend(int(c) for c in children)
        except OSError:
            continue
    return total


def burst(admin_url: str, uploads: int, blob: bytes, env: dict[str, str]) -> dict[str, Any]:
    name = f"deeplens_bench_{uuid.uuid4().hex[:10]}"
    base = admin_url.rsplit("/", 1)[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    data = Path(f"/tmp/{name}")
    run = start_platform(data, database_url=f"{base}/{name}", extra_env=env, timeout=120)
    try:
        t = signup(run.http, "Memory")
        time.sleep(2)
        before = tree_rss(run.proc.pid)
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss(run.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def one(i: int) -> tuple[int, str | None]:
            with httpx.Client(base_url=run.url, timeout=300) as c:
                r = c.post(
                    "/api/images/upload",
                    headers=t["key_headers"],
                    # Different bytes each (a PNG text chunk would do; a trailing byte after
                    # IEND is ignored by decoders), so none is answered as a duplicate.
                    files={"file": (f"z{i}.png", blob + bytes([i]))},
                )
                return r.status_code, r.json().get("imageId")

        t0 = time.monotonic()
        with ThreadPoolExecutor(uploads) as pool:
            results = list(pool.map(one, range(uploads)))
        took = time.monotonic() - t0
        codes = [c for c, _ in results]
        # "After": once the pipeline has decoded every image again (thumbnails, features).
        wait_all(run.http, t["key_headers"], {i for _, i in results if i}, timeout=600)
        pipeline = time.monotonic() - t0
        time.sleep(3)
        done.set()
        sampler.join()
        after = tree_rss(run.proc.pid)
        return {
            "codes": ",".join(str(c) for c in sorted(set(codes))),
            "upload_s": round(took, 1),
            "indexed_s": round(pipeline, 1),
            "before_mb": before / MB,
            "peak_rise_mb": (peak - before) / MB,
            "after_rise_mb": (after - before) / MB,
        }
    finally:
        run.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--uploads", type=int, default=8)
    add_admin_url(p)
    a = p.parse_args(argv)
    blob = zero_png()
    print(f"{a.uploads} concurrent uploads of a {SIDE}x{SIDE} zero PNG ({len(blob) // 1024} KB)")
    huge = str(10**12)
    rows = [
        {"setting": "budget (default)", **burst(a.admin_url, a.uploads, blob, {})},
        {
            "setting": "no budget (baseline)",
            **burst(
                a.admin_url,
                a.uploads,
                blob,
                {"DEEPLENS_DECODE_BUDGET_BYTES": huge, "DEEPLENS_MAX_DECODED_BYTES": huge},
            ),
        },
    ]
    ratio = rows[0]["peak_rise_mb"] / max(1.0, rows[1]["peak_rise_mb"])
    report("memory", rows, peak_rise_ratio_vs_baseline=round(ratio, 2))


if __name__ == "__main__":
    main()
