"""The cost of metrics on the hot path: authenticated GET /api/images/{id} throughput of a
platform with metrics on (RED per route, DB statement histograms, quota counters, and a
Prometheus-style scrape every 5 s) against the same platform with ``DEEPLENS_METRICS=false``,
in the same run. Both run side by side on one PostgreSQL; the rounds alternate (off, on, off,
on, …) so drift on a shared machine hits both alike. Target: on ≥ 0.95 × off.

    deeplens bench observability [--seconds 8] [--rounds 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import threading
import uuid
from pathlib import Path
from tempfile import mkdtemp

import httpx
import psycopg

from tests.e2e.conftest import Running, signup, start_platform, wait_all
from tests.perf._common import add_admin_url, photo_jpegs, report
from tests.perf.bench_http import throughput


def _platform(admin_url: str, metrics: bool) -> tuple[Running, str, dict[str, str], str]:
    db = f"deeplens_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + db
    run = start_platform(
        Path(mkdtemp()),
        database_url=url,
        extra_env={
            "DEEPLENS_SWEEPER_INTERVAL_SECONDS": "3600",
            "DEEPLENS_METRICS": "true" if metrics else "false",
        },
    )
    t = signup(run.http, "Bench")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE tenants SET max_storage_bytes = 10^12, max_api_calls_per_day = 10^9")
    ids = []
    for blob in photo_jpegs(3):
        r = run.http.post(
            "/api/images/upload", headers=t["headers"], files={"file": ("b.jpg", blob)}
        )
        ids.append(r.json()["imageId"])
    wait_all(run.http, t["headers"], set(ids))
    return run, f"/api/images/{ids[0]}", t["headers"], db


def _scraper(url: str, stop: threading.Event, every: float) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        while not stop.wait(every):
            assert c.get("/metrics").status_code == 200


def run(seconds: float, rounds: int, clients: int, admin_url: str) -> dict:  # type: ignore[type-arg]
    off, off_path, off_headers, off_db = _platform(admin_url, metrics=False)
    on, on_path, on_headers, on_db = _platform(admin_url, metrics=True)
    totals = {"off": 0.0, "on": 0.0}
    rows: list[dict[str, object]] = []
    try:
        assert off.http.get("/metrics").status_code == 404  # really off
        for i in range(rounds):
            rps_off, err_off = throughput(off.url, off_path, off_headers, clients, seconds)
            stop = threading.Event()
            scraper = threading.Thread(target=_scraper, args=(on.url, stop, 5.0), daemon=True)
            scraper.start()
            rps_on, err_on = throughput(on.url, on_path, on_headers, clients, seconds)
            stop.set()
            scraper.join()
            assert err_off == 0 and err_on == 0
            totals["off"] += rps_off
            totals["on"] += rps_on
            rows.append(
                {
                    "round": i + 1,
                    "metrics off req/s": rps_off,
                    "metrics on req/s": rps_on,
                    "on / off": rps_on / rps_off,
                }
            )
    finally:
        for r, db in ((off, off_db), (on, on_db)):
            r.stop()
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    ratio = totals["on"] / totals["off"]
    rows.append(
        {
            "round": "all",
            "metrics off req/s": totals["off"] / rounds,
            "metrics on req/s": totals["on"] / rounds,
            "on / off": ratio,
        }
    )
    return report(
        "observability",
        rows,
        request="GET /api/images/{id} (JWT)",
        clients=clients,
        seconds_per_round=seconds,
        ratio_on_over_off=round(ratio, 3),
        target="on / off >= 0.95",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    add_admin_url(p)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        run(1, 1, 1, a.admin_url)
    else:
        run(a.seconds, a.rounds, a.clients, a.admin_url)


if __name__ == "__main__":
    main()
