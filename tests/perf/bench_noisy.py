"""Noisy neighbour (`deeplens up`, real PostgreSQL): a quiet tenant's authenticated
GET /api/images/{id} latency alone, then while another tenant hammers the API far past its
daily quota (every one of its calls refused 429), in the same run. The hot path refuses an
over-quota call from memory (no database write), so the quiet tenant's p99 should stay within
1.5x of its p99 alone.

    deeplens bench noisy [--seconds 10] [--noisy-clients 4] [--noisy-rate 0]

On a machine with few cores, closed-loop noisy clients (rate 0) mostly measure CPU contention
with the clients themselves; a paced rate measures what the platform does with the refusals.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import uuid
from pathlib import Path
from tempfile import mkdtemp

import httpx
import psycopg

from tests.e2e.conftest import signup, start_platform, wait_all
from tests.perf._common import add_admin_url, percentile, photo_jpegs, report


def _noisy(url: str, headers: dict[str, str], seconds: float, rate: float, q: mp.Queue) -> None:  # type: ignore[type-arg]
    """One noisy client: as fast as it can (rate 0) or paced to ``rate`` requests/s."""
    n = refused = 0
    with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
        start = time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            r = c.get("/api/images", params={"pageSize": 20})
            n += 1
            refused += r.status_code == 429
            if rate > 0:
                ahead = start + n / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
    q.put((n, refused))


def _quiet(url: str, path: str, headers: dict[str, str], seconds: float) -> list[float]:
    lat = []
    with httpx.Client(base_url=url, headers=headers, timeout=10) as c:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            r = c.get(path)
            lat.append(1000 * (time.perf_counter() - t0))
            assert r.status_code == 200, r.text
            time.sleep(0.002)
    return lat


def run(seconds: float, noisy_clients: int, admin_url: str, rate: float = 0) -> dict:  # type: ignore[type-arg]
    db = f"deeplens_bench_{uuid.uuid4().hex[:8]}"
    url_db = admin_url.rsplit("/", 1)[0] + "/" + db
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    plat = start_platform(
        Path(mkdtemp()),
        database_url=url_db,
        extra_env={"DEEPLENS_SWEEPER_INTERVAL_SECONDS": "3600"},
    )
    try:
        quiet, noisy = signup(plat.http, "Quiet"), signup(plat.http, "Noisy")
        with psycopg.connect(url_db, autocommit=True) as conn:
            conn.execute(
                "UPDATE tenants SET max_api_calls_per_day = 10^8 WHERE id = %s",
                (quiet["tenant"]["id"],),
            )
            conn.execute(
                "UPDATE tenants SET max_api_calls_per_day = 10 WHERE id = %s",
                (noisy["tenant"]["id"],),
            )
        r = plat.http.post(
            "/api/images/upload",
            headers=quiet["key_headers"],
            files={"file": ("q.jpg", photo_jpegs(1)[0])},
        )
        image_id = r.json()["imageId"]
        wait_all(plat.http, quiet["key_headers"], {image_id})
        for _ in range(12):  # use up the noisy tenant's calls
            plat.http.get("/api/images", headers=noisy["key_headers"])
        path = f"/api/images/{image_id}"
        _quiet(plat.url, path, quiet["key_headers"], 1.0)  # warm
        alone = _quiet(plat.url, path, quiet["key_headers"], seconds)
        q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        procs = [
            mp.Process(target=_noisy, args=(plat.url, noisy["key_headers"], seconds + 1, rate, q))
            for _ in range(noisy_clients)
        ]
        for p in procs:
            p.start()
        time.sleep(0.5)
        crowded = _quiet(plat.url, path, quiet["key_headers"], seconds)
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
        with psycopg.connect(url_db) as conn:
            row = conn.execute(
                "SELECT api_calls FROM usage_daily WHERE tenant_id = %s", (noisy["tenant"]["id"],)
            ).fetchone()
        noisy_counted = row[0] if row else 0
    finally:
        plat.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    noisy_n = sum(r[0] for r in results)
    refused = sum(r[1] for r in results)
    p99_alone, p99_crowded = percentile(alone, 99), percentile(crowded, 99)
    rows = [
        {
            "quiet tenant GET /api/images/{id}": "alone (baseline)",
            "requests": len(alone),
            "p50 ms": percentile(alone, 50),
            "p99 ms": p99_alone,
            "p99 vs alone": 1.0,
        },
        {
            "quiet tenant GET /api/images/{id}": f"with {noisy_clients} clients over quota"
            + (f" at {rate:g} req/s each" if rate else " (closed loop)"),
            "requests": len(crowded),
            "p50 ms": percentile(crowded, 50),
            "p99 ms": p99_crowded,
            "p99 vs alone": p99_crowded / p99_alone,
        },
    ]
    return report(
        "noisy",
        rows,
        seconds=seconds,
        noisy_requests=noisy_n,
        noisy_refused_429=refused,
        noisy_rate_per_s=round(noisy_n / seconds),
        noisy_calls_counted_in_db=noisy_counted,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--noisy-clients", type=int, default=4)
    p.add_argument(
        "--noisy-rate", type=float, default=0, help="req/s per noisy client (0: as fast as it can)"
    )
    add_admin_url(p)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        run(1, 1, a.admin_url)
    else:
        run(a.seconds, a.noisy_clients, a.admin_url, a.noisy_rate)


if __name__ == "__main__":
    main()
