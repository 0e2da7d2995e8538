"""Query-side region proposals: the photo-like rectangles inside a query (a screenshot's content
area, a collage's tiles), each embedded and searched as well as the whole query.

The containing-image cases (screenshot, collage) can only be solved on the query side. The
other direction — the query is a crop of a gallery image — is the gallery side's: each image's
region vectors (shared/vectors/regions.py) nominate a crop's original for verification.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shared.imaging import open_image
from shared.local_features import Region, cv_module, to_grey


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


def _xy_cut(
    grey: np.ndarray,
    box: Box,
    depth: int,
    loose: list[Box] | None = None,
    *,
    robust: bool = False,
) -> list[Box]:
    """Recursive XY-cut: split a box along flat rows, then flat columns (gutters, margins,
    window chrome), until nothing splits. Returns the leaves as (x0, y0, x1, y1). A box whose
    flat margins are trimmed off goes to ``loose`` first: the margins may be the picture's
    own (a scan's black surround), and its original has them too."""
    x0, y0, x1, y1 = box
    sub = grey[y0:y1, x0:x1]
    if depth == 0 or sub.shape[0] < 16 or sub.shape[1] < 16:
        return [box]
    rows = _segments(_flat(sub, 1, robust), 2)
    cols = _segments(_flat(sub, 0, robust), 2)
    if len(rows) == 1 and len(cols) == 1:
        r, c = rows[0], cols[0]
        tight = (x0 + c[0], y0 + r[0], x0 + c[1], y0 + r[1])
        if tight == box:
            return [box]
        if loose is not None:
            loose.append(box)
        return _xy_cut(grey, tight, depth - 1, loose, robust=robust)
    leaves = []
    if len(rows) > 1:
        for a, b in rows:
            leaves += _xy_cut(grey, (x0, y0 + a, x1, y0 + b), depth - 1, loose, robust=robust)
    else:
        for a, b in cols:
            leaves += _xy_cut(grey, (x0 + a, y0, x0 + b, y1), depth - 1, loose, robust=robust)
    return leaves


FLAT_STD = 1.5  # grey levels: a line this uniform is a gutter, margin or bar (3 cut plain photos)
# ...or one that is that uniform but for a few pixels: a margin crossed by an anti-aliased edge
# (a title bar's lower edge, a sidebar's border) is still a margin. Without this, one blended
# row across a page's columns made every column "not flat" and a screenshot uncuttable.
FLAT_TOLERANCE = 4.0  # grey levels from the line's median
FLAT_OUTLIERS = 0.02  # share of a line's pixels that may differ by more


def _flat(sub: np.ndarray, axis: int, robust: bool) -> np.ndarray:
    """Per line (axis=1: rows, axis=0: columns): uniform (``robust``: give or take a few
    pixels)."""
    strict = sub.std(axis=axis) < FLAT_STD
    if not robust:
        return strict  # type: ignore[no-any-return]
    # Around the mean, not the median (5x cheaper): 2% of outliers move it by a few levels
    # at most, which the extra 2 levels of tolerance absorb.
    mean = sub.mean(axis=axis, keepdims=True)
    off = (np.abs(sub - mean) > FLAT_TOLERANCE + 2).mean(axis=axis)
    return strict | (off <= FLAT_OUTLIERS)  # type: ignore[no-any-return]


# A proposal covers at least MIN_AREA of the query and MIN_SIDE pixels of its 512-px copy on
# each side: a photo at 15% of a desktop screenshot's width (2.3% of its area) is one; a line
# of text (7 px tall) is not.
MIN_AREA = 0.015
MIN_SIDE = 24
STRONG_AREA = 0.06
MAX_WEAK = 2


@dataclass(frozen=True)
class Proposal:
    """A proposed region of a query: its JPEG crop, and where it lies in the query (None for
    a rotated picture turned upright, which is no rectangle of the query)."""

    crop: bytes
    box: Region | None
    # A picture turned upright, or a block of at least STRONG_AREA of the query (a
    # screenshot's content area, a collage's tile): its embedding speaks for the whole
    # picture. A smaller block only nominates candidates for verification.
    strong: bool = True


def region_proposals(data: bytes, *, max_regions: int = 4) -> list[bytes]:
    """The crops of :func:`proposals`."""
    return [p.crop for p in proposals(data, max_regions=max_regions)]


def proposals(data: bytes, *, max_regions: int = 4) -> list[Proposal]:
    """Photo-like rectangles inside a query (a screenshot's content area, a collage's tiles).

    A recursive XY-cut along uniform rows and columns (gutters, margins, window chrome) splits
    the query into blocks; the largest that are big enough (MIN_AREA, MIN_SIDE above) yet not
    the whole of it become JPEG crops to embed and to verify: at most ``max_regions`` strong
    ones and MAX_WEAK weak ones. A few milliseconds; an ordinary photo, with no uniform lines
    across it, yields none.
    """
    img = open_image(data, draft=(512, 512))
    g = to_grey(img, 512).astype(np.float32)
    h, w = g.shape
    # Strong proposals: the strict cut's blocks of at least STRONG_AREA (a screenshot's
    # content area, a collage's tile), and a rotated picture turned upright.
    loose: list[Box] = []
    leaves = _xy_cut(g, (0, 0, w, h), 6, loose)
    boxes = []
    for x0, y0, x1, y1 in leaves:
        frac = (x1 - x0) * (y1 - y0) / (w * h)
        if STRONG_AREA <= frac <= 0.85 and min(x1 - x0, y1 - y0) >= MIN_SIDE:
            boxes.append((frac, x0, y0, x1, y1))
    boxes.sort(reverse=True)
    if leaves != [(0, 0, w, h)]:  # a page (chrome, margins, gutters): pictures on it too
        for x0, y0, x1, y1 in _blobs(g):
            frac = (x1 - x0) * (y1 - y0) / (w * h)
            if all(_iou((x0, y0, x1, y1), b[1:]) < 0.8 for b in boxes):
                boxes.append((frac, x0, y0, x1, y1))
    for x0, y0, x1, y1 in loose:  # after the leaves, when there is room
        frac = (x1 - x0) * (y1 - y0) / (w * h)
        if STRONG_AREA <= frac <= 0.85 and (frac, x0, y0, x1, y1) not in boxes:
            boxes.append((frac, x0, y0, x1, y1))
    out = []
    upright = _derotated(img, g)
    if upright is not None:
        out.append(Proposal(_jpeg(upright), None))
    sx, sy = img.width / w, img.height / h

    def crop(x0: int, y0: int, x1: int, y1: int, strong: bool) -> Proposal:
        part = img.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
        box = Region(x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h)
        return Proposal(_jpeg(part), box, strong=strong)

    taken = boxes[: max_regions - len(out)]
    out += [crop(x0, y0, x1, y1, True) for _f, x0, y0, x1, y1 in taken]
    # Weak proposals: the robust cut's blocks down to MIN_AREA that the strict cut missed (a
    # photo in a desktop screenshot whose margins an anti-aliased edge crosses, a small one):
    # each only nominates candidates, which a geometric match must confirm.
    small = []
    for x0, y0, x1, y1 in _xy_cut(g, (0, 0, w, h), 6, robust=True):
        frac = (x1 - x0) * (y1 - y0) / (w * h)
        if MIN_AREA <= frac <= 0.85 and min(x1 - x0, y1 - y0) >= MIN_SIDE:
            if all(_iou((x0, y0, x1, y1), b[1:]) < 0.8 for b in taken):
                small.append((frac, x0, y0, x1, y1))
    small.sort(reverse=True)
    out += [crop(x0, y0, x1, y1, False) for _f, x0, y0, x1, y1 in small[:MAX_WEAK]]
    return out


# A picture on a page: a solid block off the page's background tone. Text is strokes a few
# pixels wide, which an opening of OPEN_PX removes; window chrome spans the page's width.
PAGE_SHARE = 0.2  # the background tone covers at least this share of the page
PAGE_TOLERANCE = 12  # grey levels from the background that still count as background
OPEN_PX = 5
MIN_SOLID = 0.6  # of its bounding box that a picture's block fills
MIN_MARKS = 12  # small marks (glyphs) that make an image a page
MIN_DETAIL = 16.0  # grey-level deviation inside a picture's block (a panel is flat)


def _blobs(g: np.ndarray) -> list[Box]:
    """Pictures on a page that no uniform line separates from its text (text that runs up
    to or over a picture on a small page): solid blocks off the background, text opened away.
    Only blocks of at least STRONG_AREA that are not the whole page or a bar across it."""
    h, w = g.shape
    grey = np.clip(g, 0, 255).astype(np.uint8)
    hist = np.bincount(grey.ravel(), minlength=256)
    bg = int(hist.argmax())
    if hist[max(0, bg - 2) : bg + 3].sum() < PAGE_SHARE * h * w:
        return []  # no page background: a photo, not a page
    cv2 = cv_module()
    mask = (np.abs(grey.astype(np.int16) - bg) > PAGE_TOLERANCE).astype(np.uint8)
    # A page has text: many small marks (glyphs, words) on its background. A scan's flat
    # surround or a photo's sky has none, and its blocks are left to the cut.
    _n, _l, raw, _c = cv2.connectedComponentsWithStats(mask)
    tall = max(12, h // 15)
    marks = int(((raw[1:, 3] >= 2) & (raw[1:, 3] <= tall) & (raw[1:, 4] >= 3)).sum())
    if marks < MIN_MARKS:
        return []
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((OPEN_PX, OPEN_PX), np.uint8))
    n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(mask)
    out = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        frac = bw * bh / (w * h)
        if not STRONG_AREA <= frac <= 0.85 or min(bw, bh) < MIN_SIDE:
            continue
        if area < MIN_SOLID * bw * bh or (bw >= 0.95 * w and bh < 0.3 * h):
            continue
        if float(grey[y : y + bh, x : x + bw].std()) < MIN_DETAIL:
            continue  # a panel (a sidebar, a toolbar), not a picture
        out.append((x, y, x + bw, y + bh))
    return out


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


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
