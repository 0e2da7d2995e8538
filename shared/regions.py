"""Query-side region proposals: the photo-like rectangles inside a query (a screenshot's content
area, a collage's tiles), each embedded and searched as well as the whole query.

The containing-image cases (screenshot, collage) can only be solved on the query side. The
other direction — the query is a crop of a gallery image — is the gallery side's: each image's
region vectors (shared/vectors/regions.py) nominate a crop's original for verification.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from shared.imaging import open_image
from shared.local_features import cv_module, to_grey


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


Box = tuple[int, int, int, int]


def _xy_cut(grey: np.ndarray, box: Box, depth: int, loose: list[Box] | None = None) -> list[Box]:
    """Recursive XY-cut: split a box along flat rows, then flat columns (gutters, margins,
    window chrome), until nothing splits. Returns the leaves as (x0, y0, x1, y1). A box whose
    flat margins are trimmed off goes to ``loose`` first: the margins may be the picture's
    own (a scan's black surround), and its original has them too."""
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
        if loose is not None:
            loose.append(box)
        return _xy_cut(grey, tight, depth - 1, loose)
    leaves = []
    if len(rows) > 1:
        for a, b in rows:
            leaves += _xy_cut(grey, (x0, y0 + a, x1, y0 + b), depth - 1, loose)
    else:
        for a, b in cols:
            leaves += _xy_cut(grey, (x0 + a, y0, x0 + b, y1), depth - 1, loose)
    return leaves


FLAT_STD = 1.5  # grey levels: a line this uniform is a gutter, margin or bar (3 cut plain photos)


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
    loose: list[Box] = []
    leaves = _xy_cut(g, (0, 0, w, h), 6, loose)
    boxes = []
    for x0, y0, x1, y1 in leaves:
        frac = (x1 - x0) * (y1 - y0) / (w * h)
        if 0.06 <= frac <= 0.85 and min(x1 - x0, y1 - y0) >= 24:
            boxes.append((frac, x0, y0, x1, y1))
    boxes.sort(reverse=True)
    for x0, y0, x1, y1 in loose:  # after the leaves, when there is room
        frac = (x1 - x0) * (y1 - y0) / (w * h)
        if 0.06 <= frac <= 0.85 and (frac, x0, y0, x1, y1) not in boxes:
            boxes.append((frac, x0, y0, x1, y1))
    out = []
    upright = _derotated(img, g)
    if upright is not None:
        out.append(_jpeg(upright))
    sx, sy = img.width / w, img.height / h
    for _frac, x0, y0, x1, y1 in boxes[: max_regions - len(out)]:
        out.append(
            _jpeg(img.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy))))
        )
    return out


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


# A rotated copy: the picture turned by some angle on a uniform fill (what every editor's
# "rotate" leaves). The global embedding is not rotation invariant (rotations of 15-45° lost the
# original among the candidates on texture-like photos), so the picture is turned back upright.
FILL_TOLERANCE = 24  # grey levels from the corners' fill colour that still count as fill
MIN_ANGLE = 4.0  # degrees: below this the embedding copes, and crops are not worth it
MIN_FILLED = 0.9  # the content's share of its rotated rectangle (a rotated picture fills it)


def _derotated(img: Image.Image, g: np.ndarray) -> Image.Image | None:
    """The picture inside a rotated copy, turned back upright (within ±45°), or None."""
    h, w = g.shape
    k = max(2, min(h, w) // 40)
    corners = [g[:k, :k], g[:k, -k:], g[-k:, :k], g[-k:, -k:]]
    fills = [float(np.median(c)) for c in corners]
    if max(float(c.std()) for c in corners) > 6 or max(fills) - min(fills) > 8:
        return None  # the corners are not one uniform fill colour
    cv2 = cv_module()
    mask = (np.abs(g - float(np.median(fills))) > FILL_TOLERANCE).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    biggest = max(contours, key=cv2.contourArea)
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(biggest)
    if abs(angle) > 45:  # OpenCV's angle spans 90° (its range varies by version): turn less
        angle, rw, rh = angle - 90 if angle > 0 else angle + 90, rh, rw
    area = rw * rh
    # The hull, not the contour: content as light as the fill at the picture's edge (a sky)
    # bites into the contour but not into its hull.
    filled = cv2.contourArea(cv2.convexHull(biggest))
    if abs(angle) < MIN_ANGLE or area < 0.25 * w * h or filled < MIN_FILLED * area:
        return None
    sx, sy = img.width / w, img.height / h
    m = cv2.getRotationMatrix2D((cx * sx, cy * sy), angle, 1.0)
    rgb = cv2.warpAffine(
        np.asarray(img), m, img.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    size = (max(8, round(rw * sx) - 4), max(8, round(rh * sy) - 4))  # trim the edge's blend
    return Image.fromarray(cv2.getRectSubPix(rgb, size, (cx * sx, cy * sy)))
