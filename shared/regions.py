"""Query-side region proposals: the photo-like rectangles inside a query (a screenshot's content
area, a collage's tiles), each embedded and searched as well as the whole query.

Query-side rather than per-image region vectors: they cost nothing at index time and nothing in
the index, and the containing-image cases (screenshot, collage) can only be solved on the query
side; a crop of an image is found by verification when its original is among the candidates.
"""

from __future__ import annotations

import io

import numpy as np

from shared.imaging import open_image
from shared.local_features import to_grey


def _segments(flat: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """Runs of non-flat lines, split where at least ``min_gap`` flat lines separate them."""
    out: list[tuple[int, int]] = []
    start, gap = -1, 0
    for i, f in enumerate(flat.tolist()):
        if not f:
            if start < 0:
                start = i
            gap = 0
        elif start >= 0:
            gap += 1
            if gap >= min_gap:
                out.append((start, i - gap + 1))
                start, gap = -1, 0
    if start >= 0:
        out.append((start, len(flat) - gap))
    return out


def _xy_cut(
    grey: np.ndarray, box: tuple[int, int, int, int], depth: int
) -> list[tuple[int, int, int, int]]:
    """Recursive XY-cut: split a box along flat rows, then flat columns (gutters, margins,
    window chrome), until nothing splits. Returns the leaves as (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    sub = grey[y0:y1, x0:x1]
    if depth == 0 or sub.shape[0] < 16 or sub.shape[1] < 16:
        return [box]
    rows = _segments(sub.std(axis=1) < FLAT_STD, 2)
    cols = _segments(sub.std(axis=0) < FLAT_STD, 2)
    if len(rows) == 1 and len(cols) == 1:
        r, c = rows[0], cols[0]
        tight = (x0 + c[0], y0 + r[0], x0 + c[1], y0 + r[1])
        if tight == box:
            return [box]
        return _xy_cut(grey, tight, depth - 1)
    leaves = []
    if len(rows) > 1:
        for a, b in rows:
            leaves += _xy_cut(grey, (x0, y0 + a, x1, y0 + b), depth - 1)
    else:
        for a, b in cols:
            leaves += _xy_cut(grey, (x0 + a, y0, x0 + b, y1), depth - 1)
    return leaves


FLAT_STD = 3.0  # grey levels: a line this uniform is a gutter, margin or bar


def region_proposals(data: bytes, *, max_regions: int = 4) -> list[bytes]:
    """Photo-like rectangles inside a query (a screenshot's content area, a collage's tiles).

    A recursive XY-cut along uniform rows and columns (gutters, margins, window chrome) splits
    the query into blocks; the largest that are big enough (≥ 6% of the query) yet not the
    whole of it become JPEG crops to embed. A few milliseconds; an ordinary photo, with no
    uniform lines across it, yields none.
    """
    img = open_image(data, draft=(512, 512))
    g = to_grey(img, 512).astype(np.float32)
    h, w = g.shape
    leaves = _xy_cut(g, (0, 0, w, h), 6)
    boxes = []
    for x0, y0, x1, y1 in leaves:
        frac = (x1 - x0) * (y1 - y0) / (w * h)
        if 0.06 <= frac <= 0.85 and min(x1 - x0, y1 - y0) >= 24:
            boxes.append((frac, x0, y0, x1, y1))
    boxes.sort(reverse=True)
    out = []
    sx, sy = img.width / w, img.height / h
    for _frac, x0, y0, x1, y1 in boxes[:max_regions]:
        crop = img.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
        buf = io.BytesIO()
        crop.save(buf, "JPEG", quality=92)
        out.append(buf.getvalue())
    return out
