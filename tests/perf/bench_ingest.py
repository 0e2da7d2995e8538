"""Ingest through the whole platform (`deeplens up`, real PostgreSQL): `deeplens ingest` of a
folder of ~1 MP photos, sustained images/s from the first upload to the last image indexed;
upload-to-searchable latency of single probe uploads while that ingest runs, then on the idle
platform. Baseline in the same run: the extraction fast path alone on the same files (the
pipeline's ceiling), in this process with a worker per core.

    deeplens bench ingest [--images 1000] [--concurrency 8] [--ingest-priority live]
    deeplens bench ingest --compare-local-features [--images 300]
    deeplens bench ingest --compare-regions [--images 300]
    deeplens bench ingest --compare-background-lane [--images 200]
    deeplens bench ingest --compare-bulk-gate [--images 200]

The ingest is bulk work (what ``deeplens ingest`` sends by default) and the probes are live
uploads of the same tenant and API key, so the probes measure how well the broker serves live
work ahead of a backlog; ``--ingest-priority live`` ingests at live priority (first come, first
served, as before bulk uploads existed) for comparison.

``--compare-local-features`` and ``--compare-regions`` run the ingest four times in the same
run, alternately without and with local features (geometric verification's index-time cost)
or region vectors, and print the ratio.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import psycopg

from shared.cli.client import cmd_ingest
from shared.features.onnx_backend import OnnxExtractor
from shared.features.registry import model_spec
from tests.e2e.conftest import signup, start_platform
from tests.perf._common import add_admin_url, percentile, photo_jpegs, report


def process_cpu(root_pid: int) -> dict[str, float]:
    """CPU seconds so far of each process of the platform under ``root_pid`` (named by its
    DEEPLENS_PROCESS; the supervisor as itself), of every PostgreSQL process on the machine
    together, and of this benchmark process (the ingest client). Linux /proc; {} elsewhere."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        procs[int(d.name)] = (int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / tick)
    out: dict[str, float] = {}
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _, _) in procs.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    for pid in tree:
        if pid not in procs:
            continue
        name = "supervisor" if pid == root_pid else procs[pid][1]
        try:
            if b"shared.local.ingress" in Path(f"/proc/{pid}/cmdline").read_bytes():
                name = "ingress"
            for var in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                if var.startswith(b"DEEPLENS_PROCESS="):
                    name = var.split(b"=", 1)[1].decode()
        except OSError:
            pass
        out[name] = out.get(name, 0.0) + procs[pid][2]
    out["postgres (all)"] = sum(c for _, comm, c in procs.values() if comm.startswith("postgres"))
    me = procs.get(os.getpid())
    out["ingest client (this process)"] = me[2] if me else 0.0
    return out


def probe(
    http: Any, headers: dict[str, str], blob: bytes, out: list[float], timeout: float = 120
) -> None:
    """Upload one image and wait until it is indexed (searchable); its latency in ms."""
    t1 = time.perf_counter()
    r = http.post("/api/images/upload", headers=headers, files={"file": ("probe.jpg", blob)})
    image_id = r.json()["imageId"]
    while time.perf_counter() - t1 < timeout:
        if http.get(f"/api/images/{image_id}", headers=headers).json()["status"] == "indexed":
            out.append(1000 * (time.perf_counter() - t1))
            return
        time.sleep(0.005)


def run(
    images: int,
    singles: int,
    admin_url: str,
    concurrency: int = 8,
    extra_env: dict[str, str] | None = None,
    name: str = "ingest",
    ingest_priority: str = "bulk",
) -> dict:  # type: ignore[type-arg]
    folder = Path(mkdtemp())
    blobs = photo_jpegs(images + 2 * singles, seed=3)
    during_blobs = blobs[images + singles :]
    for i, blob in enumerate(blobs[:images]):
        (folder / f"photo-{i:05d}.jpg").write_bytes(blob)
    fast = OnnxExtractor(model_spec("efficientnet-lite0"), cache_dir=Path(mkdtemp()))
    t0 = time.perf_counter()
    fast.embed_bytes(blobs[:images])
    extract_rate = images / (time.perf_counter() - t0)
    fast.close()

    db = f"deeplens_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    plat = start_platform(
        Path(mkdtemp()),
        database_url=admin_url.rsplit("/", 1)[0] + "/" + db,
        extra_env=extra_env,
    )
    try:
        t = signup(plat.http, "Ingest")
        # Raise the Free tier's limits: this measures the pipeline, not the quota.
        with psycopg.connect(admin_url.rsplit("/", 1)[0] + "/" + db, autocommit=True) as conn:
            conn.execute(
                "UPDATE tenants SET max_storage_bytes = 10^12, max_api_calls_per_day = 10^8"
            )
        key = t["key_headers"]["X-API-Key"]
        args = argparse.Namespace(
            directory=str(folder),
            url=plat.url,
            api_key=key,
            concurrency=concurrency,
            wait=True,
            timeout=1800,
            live=ingest_priority == "live",
        )
        during: list[float] = []
        ingesting = threading.Event()

        def probes() -> None:
            import httpx

            with httpx.Client(base_url=plat.url, timeout=60) as http:
                time.sleep(1.0)
                for blob in during_blobs:
                    if not ingesting.is_set():
                        return
                    probe(http, t["key_headers"], blob, during)
                    time.sleep(0.3)

        ingesting.set()
        prober = threading.Thread(target=probes, daemon=True)
        prober.start()
        cpu_before = process_cpu(plat.proc.pid)
        t0 = time.perf_counter()
        assert cmd_ingest(args) == 0
        sustained = images / (time.perf_counter() - t0)
        cpu_after = process_cpu(plat.proc.pid)
        # CPU per photo by process: where an ingest's time goes (the probes are in it too).
        cpu_ms = {
            name: round(1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / images, 1)
            for name in sorted(cpu_after, key=lambda n: cpu_before.get(n, 0.0) - cpu_after[n])
        }
        ingesting.clear()
        prober.join()
        latencies: list[float] = []
        for blob in blobs[images : images + singles]:
            probe(plat.http, t["key_headers"], blob, latencies)
            time.sleep(0.2)  # idle between uploads
    finally:
        plat.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    rows = [
        {"measure": "extraction alone (baseline)", "value": extract_rate, "unit": "img/s"},
        {"measure": "deeplens ingest, sustained", "value": sustained, "unit": "img/s"},
        {"measure": "ingest / extraction", "value": sustained / extract_rate, "unit": "ratio"},
        {
            "measure": f"upload→searchable p50 during ingest (n={len(during)})",
            "value": percentile(during, 50),
            "unit": "ms",
        },
        {
            "measure": "upload→searchable max during ingest",
            "value": max(during, default=float("nan")),
            "unit": "ms",
        },
        {
            "measure": "upload→searchable p50 (idle)",
            "value": percentile(latencies, 50),
            "unit": "ms",
        },
        {
            "measure": "upload→searchable p99 (idle)",
            "value": percentile(latencies, 99),
            "unit": "ms",
        },
    ]
    return report(
        name,
        rows,
        images=images,
        singles=singles,
        concurrency=concurrency,
        ingest_priority=ingest_priority,
        cpu_ms_per_image_by_process=cpu_ms,
        image_size="1280x800 JPEG q90",
        env=extra_env,
        platform="deeplens up: ingress + one process per function group (shared/local)",
    )


# What each comparison switches: its setting, its name in the report, its off and on values.
SWITCHES = {
    "local-features": ("DEEPLENS_LOCAL_FEATURES", "local features", "false", "true"),
    "regions": ("DEEPLENS_FEATURES__REGIONS", "region vectors", "false", "true"),
    "background-lane": ("DEEPLENS_BACKGROUND_LANE", "the background lane", "false", "true"),
    "bulk-gate": ("DEEPLENS_BULK_UPLOADS_AT_ONCE", "the bulk-upload gate", "0", "2"),
    "uvloop": ("DEEPLENS_UVLOOP", "uvloop", "false", "true"),
}


def compare(what: str, images: int, singles: int, admin_url: str) -> dict:  # type: ignore[type-arg]
    """Ingest without, then with, the switched stage, twice each, interleaved (drift check)."""
    env, label, off_value, on_value = SWITCHES[what]
    runs = []
    for i, on in enumerate((False, True, False, True)):
        doc = run(
            images,
            singles,
            admin_url,
            extra_env={env: on_value if on else off_value},
            name=f"ingest-{what}-{i}-{'on' if on else 'off'}",
        )
        runs.append((on, doc["rows"][1]["value"], doc["rows"][3]["value"]))
    off = [v for on, v, _ in runs if not on]
    with_it = [v for on, v, _ in runs if on]
    p50_off = [ms for on, _, ms in runs if not on]
    p50_with = [ms for on, _, ms in runs if on]
    rows = [
        {"measure": f"ingest without {label}", "value": sum(off) / len(off), "unit": "img/s"},
        {"measure": f"ingest with {label}", "value": sum(with_it) / len(with_it), "unit": "img/s"},
        {"measure": "with / without", "value": sum(with_it) / sum(off), "unit": "ratio"},
        {
            "measure": f"upload→searchable p50 during ingest without {label}",
            "value": sum(p50_off) / len(p50_off),
            "unit": "ms",
        },
        {
            "measure": f"upload→searchable p50 during ingest with {label}",
            "value": sum(p50_with) / len(p50_with),
            "unit": "ms",
        },
    ]
    return report(f"ingest-{what}", rows, images=images, runs=runs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--singles", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=8, help="upload clients")
    add_admin_url(p)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--compare-local-features", action="store_true")
    p.add_argument("--compare-regions", action="store_true")
    p.add_argument("--compare-background-lane", action="store_true")
    p.add_argument("--compare-bulk-gate", action="store_true")
    p.add_argument("--compare-uvloop", action="store_true")
    p.add_argument("--ingest-priority", choices=("bulk", "live"), default="bulk")
    a = p.parse_args(argv)
    for what, asked in (
        ("local-features", a.compare_local_features),
        ("regions", a.compare_regions),
        ("background-lane", a.compare_background_lane),
        ("bulk-gate", a.compare_bulk_gate),
        ("uvloop", a.compare_uvloop),
    ):
        if asked:
            compare(what, a.images, a.singles, a.admin_url)
            return
    run(
        10 if a.smoke else a.images,
        2 if a.smoke else a.singles,
        a.admin_url,
        a.concurrency,
        ingest_priority=a.ingest_priority,
    )


if __name__ == "__main__":
    main()
