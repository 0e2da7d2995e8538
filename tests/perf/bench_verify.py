"""Search by image with geometric verification on a 10,000-image tenant, over HTTP.

The tenant holds the real originals of the evaluation set (uploaded through the real pipeline,
so their vectors and local features are real) padded to ``--images`` with synthetic entries:
each padding image is a real original's vector plus noise (close enough to land among a
query's candidates) with a real photo's stored local features, so every candidate costs a full
verification — the worst case. Queries are edited copies (crop 30%, rotation + JPEG, screenshot,
collage, ...). Baseline in the same run: the same queries with ``verify=false`` (the embedding
alone, as before issue 15). Also prints what each stage costs (SearchService stage timings).

    deeplens bench verify [--images 10000] [--queries 64]
"""

from __future__ import annotations

import argparse
import hashlib
import time
import uuid
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import numpy as np
import psycopg

from shared.auth.principal import Principal
from shared.quality.edits import edit_family, jpeg
from shared.quality.photoset import originals
from shared.search import Stages
from shared.vectors.regions import companion
from tests.perf._common import add_admin_url, percentile, report


def _pad(p: Any, tenant_id: uuid.UUID, space: str, real: list[uuid.UUID], n: int) -> None:
    c = p.container
    rng = np.random.default_rng(0)
    with c.db.tx() as conn:
        blobs = [
            bytes(r[0])
            for r in conn.execute(
                "SELECT features FROM image_local_features WHERE image_id = ANY(%s)", (real,)
            ).fetchall()
        ]
    vecs = [np.array(c.vectors.get_vector(space, tenant_id=tenant_id, point_id=i)) for i in real]
    ids = [uuid.uuid4() for _ in range(n)]
    with c.db.tx() as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY images (id, tenant_id, filename, content_type, size_bytes, sha256,"
            " original_key, status, vector_space) FROM STDIN"
        ) as cp:
            for i in ids:
                key = f"images/{i}/original"
                row = (i, tenant_id, f"pad-{i}.jpg", "image/jpeg", 1000, i.hex, key)
                cp.write_row((*row, "indexed", space))
        with cur.copy("COPY image_local_features (image_id, tenant_id, features) FROM STDIN") as cp:
            for k, i in enumerate(ids):
                cp.write_row((i, tenant_id, blobs[k % len(blobs)]))
    for k, i in enumerate(ids):
        v = vecs[k % len(vecs)] + rng.normal(0, 0.02, len(vecs[0]))
        v = v / np.linalg.norm(v)
        c.vectors.upsert(
            space,
            tenant_id=tenant_id,
            point_id=i,
            vector=[float(x) for x in v],
            payload={"filename": f"pad-{i}.jpg", "uploadedAt": "2026-01-01T00:00:00+00:00"},
        )
        # Five region points an image, as the pipeline indexes them (their windows near it).
        wins = [v + rng.normal(0, 0.05, len(v)) for _ in range(5)]
        c.vectors.upsert_regions(
            space,
            tenant_id=tenant_id,
            image_id=i,
            vectors=[[float(x) for x in w / np.linalg.norm(w)] for w in wins],
            payload={"filename": f"pad-{i}.jpg", "uploadedAt": "2026-01-01T00:00:00+00:00"},
        )
    if hasattr(c.vectors, "optimize"):
        c.vectors.optimize(space)
        c.vectors.optimize(companion(space))


def run(images: int, queries: int, admin_url: str) -> dict[str, Any]:
    from tests.conftest import make_platform
    from tests.integration.test_duplicates import run_pipeline

    db = f"deeplens_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + db
    p = make_platform(url, Path(mkdtemp()))
    try:
        t = p.signup("Bench")
        with p.container.db.tx() as conn:
            conn.execute(
                "UPDATE tenants SET max_api_calls_per_day = 100000000,"
                " max_storage_bytes = 1000000000000"
            )
        orig = originals()
        real = []
        for name, img in orig.items():
            r = p.client.post(
                "/api/images/upload",
                headers=t["headers"],
                files={"file": (f"{name}.jpg", jpeg(img))},
            )
            real.append(uuid.UUID(r.json()["imageId"]))
        run_pipeline(p)
        tenant_id = uuid.UUID(t["tenant"]["id"])
        with p.container.db.tx() as conn:
            space = conn.execute(
                "SELECT qdrant_collection_name FROM tenants WHERE id = %s", (tenant_id,)
            ).fetchone()[0]
        t0 = time.perf_counter()
        _pad(p, tenant_id, space, real, max(0, images - len(real)))
        pad_s = time.perf_counter() - t0
        qs = []
        for name, img in orig.items():
            seed = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
            for kind, edited in edit_family(img, seed).items():
                qs.append((kind, jpeg(edited)))
        rng = np.random.default_rng(1)
        picked = [qs[i] for i in rng.choice(len(qs), min(queries, len(qs)), replace=False)]
        lat: dict[str, list[float]] = {"false": [], "true": []}
        for _ in range(2):  # warm-up round first, then measured
            lat = {"false": [], "true": []}
            for _kind, q in picked:
                for verify in ("false", "true"):
                    t1 = time.perf_counter()
                    r = p.client.post(
                        "/api/images/search",
                        headers=t["headers"],
                        files={"file": ("q.jpg", q)},
                        data={"limit": "10", "threshold": "0.5", "verify": verify},
                    )
                    assert r.status_code == 200, r.text
                    lat[verify].append((time.perf_counter() - t1) * 1000)
        # Stage costs, in-process (the same service the handler calls).
        svc = p.container.search
        principal = Principal(tenant_id=tenant_id, role="TenantOwner")
        stages = Stages()
        for _kind, q in picked:
            svc.by_image(principal, q, limit=10, threshold=0.5, stages=stages)
        stage_ms = {k: round(v / len(picked), 2) for k, v in stages.ms.items()}
    finally:
        p.fn.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    rows = [
        {
            "search by image": "embedding only (verify=false, baseline)",
            "p50 ms": percentile(lat["false"], 50),
            "p99 ms": percentile(lat["false"], 99),
        },
        {
            "search by image": "with proposals + verification",
            "p50 ms": percentile(lat["true"], 50),
            "p99 ms": percentile(lat["true"], 99),
        },
    ]
    return report(
        "verify",
        rows,
        images=images,
        queries=len(picked),
        p99_ratio=round(percentile(lat["true"], 99) / percentile(lat["false"], 99), 2),
        stage_ms_mean=stage_ms,
        padding_seconds=round(pad_s, 1),
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=64)
    add_admin_url(ap)
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        run(60, 4, a.admin_url)
    else:
        run(a.images, a.queries, a.admin_url)


if __name__ == "__main__":
    main()
