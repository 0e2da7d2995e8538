"""Retrieval quality through the HTTP API, on a held-out test split.

The whole platform runs in-process over its real ASGI handler and a throw-away database on
the test PostgreSQL (``DEEPLENS_TEST_ADMIN_URL``): the gallery (originals + distractors) is
uploaded with ``POST /api/images/upload`` and goes through the real pipeline; every query is a
``POST /api/images/search`` by image, once with geometric verification (the default) and once
with ``verify=false`` (the embedding alone: the behaviour before issue 15).

The originals are split by name into dev and test (shared/quality/photoset.py). Thresholds are
fitted on dev only; the headline figures are the test split's. Metrics per query: top-1 (the
original ranks first), mAP (one relevant item: the mean reciprocal rank, 0 when it is not in
the top 20); recall@t (the original is returned with similarity ≥ t); precision@t (of all
returned pairs with similarity ≥ t, the share that are query→original; pairs beyond the top 20
count as below t).

    deeplens eval [--faces 200] [--smoke] [--split dev] [--family screenshot ...] [--verified-only]

``--split``/``--family``/``--verified-only`` run a subset of the queries (the gallery is always
the whole set): for iterating on dev without touching test.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from shared.quality import harness
from shared.quality.photoset import EvalSet, build

TOP = 20
GRID = [round(float(t), 3) for t in np.arange(0.40, 1.0, 0.005)]


def _score(runs: list[list[dict[str, Any]]], target: list[str], t: float) -> dict[str, float]:
    top1 = rr = hit = above = tp = 0.0
    for results, want in zip(runs, target, strict=True):
        ids = [r["imageId"] for r in results]
        if ids and ids[0] == want:
            top1 += 1
        if want in ids:
            rr += 1 / (ids.index(want) + 1)
        for r in results:
            if r["similarity"] >= t:
                above += 1
                if r["imageId"] == want:
                    tp += 1
                    hit += 1
    n = max(1, len(runs))
    return {
        "top-1": top1 / n,
        "mAP": rr / n,
        "recall": hit / n,
        "precision": tp / above if above else 1.0,
    }


def fit_threshold(runs: list[list[dict[str, Any]]], target: list[str], precision: float) -> float:
    """The lowest similarity whose precision is at least ``precision`` (on the runs given)."""
    for t in GRID:
        if _score(runs, target, t)["precision"] >= precision:
            return t
    return 1.0


def best_recall_at(runs: list[list[dict[str, Any]]], target: list[str], precision: float) -> float:
    return max(
        (m["recall"] for t in GRID if (m := _score(runs, target, t))["precision"] >= precision),
        default=0.0,
    )


def _ingest(p: harness.Platform, headers: dict[str, str], ds: EvalSet) -> list[str]:
    ids = []
    for i, blob in enumerate(ds.gallery):
        r = p.client.post(
            "/api/images/upload", headers=headers, files={"file": (f"g{i}.jpg", blob)}
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["imageId"])
        if i % 50 == 49:
            p.run_pipeline()
    p.run_pipeline()
    return ids


def _select(ds: EvalSet, split: str | None, families: list[str] | None) -> EvalSet:
    keep = [
        i
        for i in range(len(ds.queries))
        if (split is None or ds.query_split[i] == split)
        and (not families or ds.query_family[i] in families)
    ]
    return EvalSet(
        ds.gallery_names,
        ds.gallery,
        [ds.queries[i] for i in keep],
        [ds.query_family[i] for i in keep],
        [ds.query_target[i] for i in keep],
        [ds.query_split[i] for i in keep],
        ds.originals,
    )


def run(
    faces: int,
    limit_originals: int | None = None,
    *,
    split_only: str | None = None,
    families: list[str] | None = None,
    verified_only: bool = False,
    draw: int = 0,
) -> dict[str, Any]:
    started = time.perf_counter()
    ds = _select(build(faces, limit_originals, draw), split_only, families)
    modes = ("verified",) if verified_only else ("embedding", "verified")
    with harness.platform_on_scratch_db() as p:
        headers = p.signup("Eval")
        ids = _ingest(p, headers, ds)
        ingest_s = time.perf_counter() - started
        runs: dict[str, list[list[dict[str, Any]]]] = {m: [] for m in modes}
        query_ms: dict[str, list[float]] = {m: [] for m in modes}
        for n, q in enumerate(ds.queries):
            if n % 100 == 0:
                sys.stderr.write(f"eval: query {n}/{len(ds.queries)}\n")
            for mode in modes:
                t0 = time.perf_counter()
                r = p.client.post(
                    "/api/images/search",
                    headers=headers,
                    files={"file": ("q.jpg", q)},
                    data={
                        "limit": str(TOP),
                        "threshold": "0",
                        "verify": "true" if mode == "verified" else "false",
                    },
                )
                query_ms[mode].append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
                runs[mode].append(r.json())
    target = [ids[t] for t in ds.query_target]
    split = np.array(ds.query_split)
    fam = np.array(ds.query_family)
    rows: list[dict[str, Any]] = []
    fitted: dict[str, float] = {}
    summary: dict[str, Any] = {}
    for mode in modes:
        dev = [i for i in range(len(target)) if split[i] == "dev"]
        dev_t = fit_threshold([runs[mode][i] for i in dev], [target[i] for i in dev], 0.99)
        fitted[mode] = dev_t
        for which in ("test", "dev"):
            for family in ["all", *sorted(set(ds.query_family))]:
                idx = [
                    i
                    for i in range(len(target))
                    if split[i] == which and (family == "all" or fam[i] == family)
                ]
                rr, tt = [runs[mode][i] for i in idx], [target[i] for i in idx]
                at_fit = _score(rr, tt, dev_t)
                at_07 = _score(rr, tt, 0.7)
                row = {
                    "mode": mode,
                    "split": which,
                    "family": family,
                    "queries": len(idx),
                    "top-1": at_fit["top-1"],
                    "mAP": at_fit["mAP"],
                    "recall@dev-t": at_fit["recall"],
                    "precision@dev-t": at_fit["precision"],
                    "recall@0.7": at_07["recall"],
                    "precision@0.7": at_07["precision"],
                }
                if family == "all":
                    row["recall@p0.99"] = best_recall_at(rr, tt, 0.99)
                    summary[f"{mode}/{which}"] = row
                rows.append(row)
    names = {ids[i]: n for i, n in enumerate(ds.gallery_names)}
    misses = [
        {
            "mode": mode,
            "split": str(split[i]),
            "family": str(fam[i]),
            "original": names[target[i]],
            "got": names.get(runs[mode][i][0]["imageId"], "?") if runs[mode][i] else None,
            "gotSimilarity": runs[mode][i][0]["similarity"] if runs[mode][i] else None,
            "gotVerified": runs[mode][i][0].get("verified") if runs[mode][i] else None,
            "rank": next(
                (k for k, r in enumerate(runs[mode][i]) if r["imageId"] == target[i]), None
            ),
        }
        for mode in modes
        for i in range(len(target))
        if not runs[mode][i] or runs[mode][i][0]["imageId"] != target[i]
    ]
    verified_pairs = [
        (r["imageId"] == target[i])
        for i in range(len(target))
        for r in runs["verified"][i]
        if r.get("verified")
    ]
    return harness.report(
        "quality",
        rows,
        gallery=len(ds.gallery),
        edit_draw=draw,
        originals=ds.originals,
        queries=len(ds.queries),
        test_queries=int((split == "test").sum()),
        dev_fitted_threshold=fitted,
        verified_pairs=len(verified_pairs),
        verified_wrong=int(sum(1 for v in verified_pairs if not v)),
        query_ms_p50={m: round(float(np.percentile(v, 50)), 1) for m, v in query_ms.items()},
        query_ms_p99={m: round(float(np.percentile(v, 99)), 1) for m, v in query_ms.items()},
        ingest_seconds=round(ingest_s, 1),
        misses=[m for m in misses if m["mode"] == "verified"],
        note="headline = split 'test' (originals never used for fitting); thresholds fitted on "
        "'dev' (lowest similarity with dev precision >= 0.99); 'embedding' = verify=false, the "
        "behaviour before geometric verification",
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="4 originals, 10 faces")
    ap.add_argument("--split", choices=["dev", "test"], help="only this split's queries")
    ap.add_argument("--family", action="append", help="only this edit family (repeatable)")
    ap.add_argument("--verified-only", action="store_true", help="skip the verify=false runs")
    ap.add_argument(
        "--draw",
        type=int,
        default=0,
        help="another random draw of the edits (crop positions, angles, layouts); 0: the "
        "README's set",
    )
    a = ap.parse_args(argv)
    subset = {
        "split_only": a.split,
        "families": a.family,
        "verified_only": a.verified_only,
        "draw": a.draw,
    }
    if a.smoke:
        run(10, limit_originals=4, **subset)
    else:
        run(a.faces, **subset)


if __name__ == "__main__":
    main()
