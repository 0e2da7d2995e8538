"""Retrieval quality on the dev set, per edit family, for every model and setting.

top-1: the original ranks first; mAP: mean average precision (one relevant item per query, so
the mean reciprocal rank); recall@t: the original scores at least t; precision@t: of all
(query, gallery) pairs scoring at least t, the share that are query→original.

    deeplens eval [--settings lite0-avg-224,lite0-gem-224,lite0-gem-320]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from tempfile import mkdtemp

import numpy as np

from shared.features.onnx_backend import OnnxExtractor
from shared.features.registry import model_spec
from tests.perf._common import report
from tests.quality.devset import DevSet, build

SETTINGS = {
    "lite0-avg-224": ("efficientnet-lite0", "avg", 224),
    "lite0-gem-224": ("efficientnet-lite0", "gem", 224),
    "lite0-gem-320": ("efficientnet-lite0", "gem", 320),
}


def metrics(sims: np.ndarray, target: np.ndarray, threshold: float) -> dict[str, float]:
    rows = np.arange(len(target))
    own = sims[rows, target]
    rank = (sims > own[:, None]).sum(axis=1)  # 0 = first
    above = sims >= threshold
    true_pos = above[rows, target].sum()
    return {
        "top-1": float((rank == 0).mean()),
        "mAP": float((1.0 / (rank + 1)).mean()),
        "recall": float(true_pos / len(target)),
        "precision": float(true_pos / above.sum()) if above.sum() else 1.0,
    }


def raw_threshold_for(sims: np.ndarray, target: np.ndarray, precision: float = 0.99) -> float:
    """The lowest raw cosine whose precision on the dev set is at least ``precision``."""
    for t in np.arange(0.30, 0.99, 0.005):
        if metrics(sims, target, float(t))["precision"] >= precision:
            return float(round(t, 3))
    return 0.99


def embed_all(spec_name: str, pooling: str, size: int, ds: DevSet) -> tuple[np.ndarray, np.ndarray]:
    spec = model_spec(spec_name, pooling=pooling, input_size=size)
    ex = OnnxExtractor(spec, cache_dir=Path(mkdtemp()))
    try:
        return ex.embed_bytes(ds.gallery), ex.embed_bytes(ds.queries)
    finally:
        ex.close()


def run(names: list[str], faces: int) -> dict:  # type: ignore[type-arg]
    ds = build(faces)
    target = np.array(ds.query_target)
    families = sorted(set(ds.query_family))
    fam = np.array(ds.query_family)
    rows = []
    chosen = {}
    for name in names:
        model, pooling, size = SETTINGS[name]
        g, q = embed_all(model, pooling, size, ds)
        sims = q @ g.T
        anchor = raw_threshold_for(sims, target)
        chosen[name] = anchor
        for family in ["all", *families]:
            mask = np.ones(len(target), bool) if family == "all" else fam == family
            m_raw = metrics(sims[mask], target[mask], 0.7)
            m_cal = metrics(sims[mask], target[mask], anchor)
            rows.append(
                {
                    "setting": name,
                    "family": family,
                    "queries": int(mask.sum()),
                    "top-1": m_raw["top-1"],
                    "mAP": m_raw["mAP"],
                    "recall@0.7 raw": m_raw["recall"],
                    "precision@0.7 raw": m_raw["precision"],
                    "recall@0.7 cal": m_cal["recall"],
                    "precision@0.7 cal": m_cal["precision"],
                }
            )
    return report(
        "quality",
        rows,
        gallery=len(ds.gallery),
        queries=len(ds.queries),
        calibration_raw_cosine_at_0_7=chosen,
        note="cal = similarity calibrated so that 0.7 is the raw cosine where dev-set "
        "precision first reaches 0.99",
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--faces", type=int, default=200)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:
        run(["lite0-avg-224"], 10)
    else:
        run(a.settings.split(","), a.faces)


if __name__ == "__main__":
    main()
