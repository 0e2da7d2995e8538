"""The embedded HNSW engine (Qdrant Edge): 10 tenants sharing one collection, clustered
vectors shaped like CNN embeddings (non-negative, L2-normalised, in clusters), queries filtered
to one tenant. Latency p50/p99 and recall@10 against exact search (numpy brute force over that
tenant's vectors, also the latency baseline), for a few ef values.

    deeplens bench search [--vectors 100000] [--dim 1280] [--smoke]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path
from tempfile import mkdtemp

import numpy as np

from shared.config import VectorSettings
from shared.vectors import EdgeIndex
from tests.perf._common import percentile, report


def embeddings(n: int, dim: int, rng: np.random.Generator, clusters: int = 500) -> np.ndarray:
    """ReLU-pooled CNN features are non-negative, sparse-ish and clustered by content."""
    centres = rng.gamma(0.6, 1.0, size=(clusters, dim)).astype(np.float32)
    centres *= rng.random((clusters, dim)) < 0.35  # sparsity
    assign = rng.integers(0, clusters, size=n)
    x = centres[assign] * rng.lognormal(0, 0.35, size=(n, dim)).astype(np.float32)
    x += rng.gamma(0.3, 0.2, size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run(vectors: int, dim: int, tenants: int, queries: int, efs: list[int]) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(7)
    data = embeddings(vectors, dim, rng)
    owners = np.arange(vectors) % tenants
    ids = [uuid.uuid4() for _ in range(vectors)]
    tenant_ids = [uuid.uuid4() for _ in range(tenants)]
    index = EdgeIndex(Path(mkdtemp()), VectorSettings())
    index.ensure_space("bench", dim)
    t0 = time.perf_counter()
    qe = index.qe
    shard = index._shard("bench")
    for start in range(0, vectors, 1000):
        pts = [
            qe.Point(str(ids[i]), data[i].tolist(), {"tenantId": str(tenant_ids[owners[i]])})
            for i in range(start, min(vectors, start + 1000))
        ]
        shard.update(qe.UpdateOperation.upsert_points(pts))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.optimize("bench")
    optimize_s = time.perf_counter() - t0

    target = tenant_ids[0]
    mine = np.where(owners == 0)[0]
    q_idx = rng.choice(mine, size=queries, replace=True)
    q = data[q_idx] + rng.normal(0, 0.01, size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    exact, exact_ms = [], []
    sub = data[mine]
    for v in q:
        t = time.perf_counter()
        scores = sub @ v
        top = np.argpartition(-scores, 10)[:10]
        exact_ms.append(1000 * (time.perf_counter() - t))
        exact.append({ids[mine[i]] for i in top})

    rows = [
        {
            "method": "exact (numpy, one tenant)",
            "ef": "-",
            "p50 ms": percentile(exact_ms, 50),
            "p99 ms": percentile(exact_ms, 99),
            "recall@10": 1.0,
        }
    ]
    for ef in efs:
        index.cfg = VectorSettings(hnsw_ef=ef)
        lat, hits = [], 0
        for v, truth in zip(q, exact, strict=True):
            vec = v.tolist()
            t = time.perf_counter()
            res = index.search("bench", tenant_id=target, vector=vec, limit=10)
            lat.append(1000 * (time.perf_counter() - t))
            hits += len({h.id for h in res} & truth)
        rows.append(
            {
                "method": "hnsw (qdrant-edge)",
                "ef": ef,
                "p50 ms": percentile(lat, 50),
                "p99 ms": percentile(lat, 99),
                "recall@10": hits / (10 * queries),
            }
        )
    index.close()
    return report(
        "search",
        rows,
        vectors=vectors,
        dim=dim,
        tenants=tenants,
        per_tenant=int(len(mine)),
        queries=queries,
        load_seconds=round(load_s, 1),
        optimize_seconds=round(optimize_s, 1),
        hnsw_m=16,
        ef_construct=128,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vectors", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--tenants", type=int, default=10)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--ef", default="64,128,256")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        run(2000, 64, 4, 20, [64])
    else:
        run(a.vectors, a.dim, a.tenants, a.queries, [int(e) for e in a.ef.split(",")])


if __name__ == "__main__":
    main()
