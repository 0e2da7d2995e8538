"""Calibration follows the model: the similarity scale maps the raw cosine where dev-set
precision first reaches 0.99 to 0.7 (the default threshold). A model without a fitted
calibration reports raw cosine and says so (``X-DeepLens-Similarity: raw``, ``models status``).

``deeplens eval --model REF`` embeds the dev set (tests/quality, from a source checkout) with
that model, fits the point and stores it in ``model_calibrations``; search picks it up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shared.bootstrap import Container

log = logging.getLogger(__name__)


def fit_raw_threshold(sims: np.ndarray, target: np.ndarray, precision: float = 0.99) -> float:
    """The lowest raw cosine at which, of all (query, gallery) pairs scoring at least that
    much, a share of at least ``precision`` are query → its original."""
    rows = np.arange(len(target))
    for t in np.arange(0.30, 0.99, 0.005):
        above = sims >= t
        n = int(above.sum())
        if n == 0 or above[rows, target].sum() / n >= precision:
            return float(round(float(t), 3))
    return 0.99


def calibrate_model(
    container: Container,
    ref: str,
    gallery: list[bytes],
    queries: list[bytes],
    target: list[int],
) -> dict[str, Any]:
    """Embed gallery and queries with the model ``ref``, fit its calibration, store it."""
    spec = container.models.spec(ref)
    embedder = container.embedder_for(spec)
    g = np.asarray(embedder.embed_many(gallery), dtype=np.float32)
    q = np.asarray(embedder.embed_many(queries), dtype=np.float32)
    raw = fit_raw_threshold(q @ g.T, np.asarray(target))
    container.models.save_calibration(spec.ref, raw, len(queries))
    log.info("calibrated %s: raw cosine %.3f ↦ 0.7 (%d queries)", spec.ref, raw, len(queries))
    return {"model": spec.ref, "rawCosineAt0.7": raw, "queries": len(queries)}
