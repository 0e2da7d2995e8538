"""Geometric verification: a query's local features (shared/local_features) matched to a
candidate's — nearest-neighbour descriptor matches with Lowe's ratio test, then one RANSAC
homography (PROSAC). See shared/local_features for why ORB, and what *verified* means.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.local_features import INDEX_SIDE, LocalFeatures, Region, cv_module

RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 3.0  # reprojection error, in candidate pixels at INDEX_SIDE
# A geometric match: at least MIN_INLIERS distinct keypoints agree with one plausible
# homography (on the dev split, wrong pairs reach 7 at most; true copies mostly 20-500). It
# ranks the candidate. *Verified* (a copy) also needs, when the two frames coincide,
# MIN_INLIER_RATIO of the strong matches to agree: the motorcycle stereo pair, a second shot,
# has 134 inliers but only 0.66-0.70 of its strong matches agree (copies: mostly 0.8-1.0).
MIN_INLIERS = 15
MIN_INLIER_RATIO = 0.72
STRONG_DISTANCE = 40  # Hamming distance out of 256 bits
MIN_COVER = 0.02  # of the candidate's area, covered by the inliers' hull
# The cascade's first stage: a third of the query's descriptors. On the dev split (33,900
# pairs, two edit draws, distractors included) a stranger had a median of 6 good matches among
# them and every geometric copy at least 8: under 4, a candidate is dropped after a third of
# the matching (a quarter of the strangers; 3.1 -> 2.2-2.3 ms a pair, geometric pairs alike).
CASCADE_STEP, CASCADE_MIN = 3, 4


@functools.cache
def _matcher() -> Any:
    return cv_module().BFMatcher(cv_module().NORM_HAMMING)


def _good(q: np.ndarray, c: np.ndarray, index: np.ndarray) -> list[tuple[int, int, float]]:
    """(query index, candidate index, distance) of the matches passing the ratio test;
    ``index`` maps the rows of ``q`` to the query's own indices."""
    if len(q) == 0:
        return []
    pairs = _matcher().knnMatch(q, c, k=2)
    return [
        (int(index[p[0].queryIdx]), p[0].trainIdx, p[0].distance)
        for p in pairs
        if len(p) == 2 and p[0].distance < RATIO * p[1].distance
    ]


@dataclass(frozen=True)
class Verification:
    inliers: int
    matches: int
    verified: bool  # a copy: geometric, and the strong matches agree
    geometric: bool = False  # one plausible homography explains enough matches
    # The part of the candidate the query shows (a crop), when it is not the whole of it.
    region: Region | None = None
    # Where the candidate appears in the query (a screenshot, a collage), likewise.
    query_region: Region | None = None
    ratio: float = 0.0  # share of strong matches that agree with the homography


NOT_VERIFIED = Verification(0, 0, False)


def _bbox(points: np.ndarray, w: int, h: int) -> Region | None:
    """The normalised bounding box of projected corners, clipped; None when it covers the
    image (nothing to point at) or degenerates."""
    lo = np.clip(points.min(axis=0), 0, (w, h))
    hi = np.clip(points.max(axis=0), 0, (w, h))
    x0, y0, x1, y1 = float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    r = Region(float(x0 / w), float(y0 / h), float((x1 - x0) / w), float((y1 - y0) / h))
    return None if r.width * r.height > 0.9 else r


def verify(
    query: LocalFeatures,
    candidate: LocalFeatures,
    *,
    min_inliers: int = MIN_INLIERS,
    min_ratio: float = MIN_INLIER_RATIO,
) -> Verification:
    """Match ``query`` to ``candidate`` and fit one homography (RANSAC).

    Inliers are counted as distinct candidate keypoints (many query points falling on one
    candidate point are one piece of evidence), the homography must not collapse or blow up
    the query, and the inliers must cover a real area of the candidate: without these, a tiny
    low-detail image "verifies" against anything.
    """
    if len(query) < 8 or len(candidate) < 8:
        return NOT_VERIFIED
    cv2 = cv_module()
    # A cascade: every CASCADE_STEP-th query descriptor first; a candidate with fewer than
    # CASCADE_MIN good matches among them is a stranger (the rest are not matched), else the
    # rest is matched too and the union is exactly the full match.
    first = np.arange(0, len(query), CASCADE_STEP)
    good = _good(query.descriptors[first], candidate.descriptors, first)
    if len(good) < CASCADE_MIN and len(query) >= CASCADE_STEP * CASCADE_MIN * 4:
        return Verification(0, len(good), False)
    rest = np.setdiff1d(np.arange(len(query)), first)
    good += _good(query.descriptors[rest], candidate.descriptors, rest)
    if len(good) < max(8, min_inliers):
        return Verification(0, len(good), False)  # cannot reach min_inliers: skip RANSAC
    # PROSAC samples the best matches first: it converges in a few iterations on a copy and
    # gives up quickly on a stranger, where plain RANSAC ran all its iterations (~10x slower).
    good.sort(key=lambda m: (m[2], m[0]))  # ties in query order, as one pass gave them
    src = query.points[[m[0] for m in good]]
    dst = candidate.points[[m[1] for m in good]]
    cw, ch = candidate.width, candidate.height
    px = RANSAC_PX * max(cw, ch) / INDEX_SIDE
    homography, mask = cv2.findHomography(
        src, dst, cv2.USAC_PROSAC, px, maxIters=2000, confidence=0.995
    )
    if homography is None or mask is None:
        return Verification(0, len(good), False)
    inlier = mask.ravel().astype(bool)
    train = np.array([m[1] for m in good])
    inliers = len(set(train[inlier].tolist()))
    # Strong matches (small Hamming distance) are almost never wrong: in a copy nearly all of
    # them agree with the homography; in a second shot of a scene, parallax and movement put
    # many of them off it. This ratio is what tells a copy from a similar shot.
    dist = np.array([m[2] for m in good])
    strong = dist <= STRONG_DISTANCE
    ratio = float(inlier[strong].mean()) if strong.sum() >= 8 else float(inlier.mean())
    geometric = inliers >= min_inliers and _sane(homography, dst[inlier], cw, ch)
    if not geometric:
        return Verification(inliers, len(good), False, ratio=ratio)
    region = query_region = None
    try:
        qw, qh = query.width, query.height
        q_corners = np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float32).reshape(-1, 1, 2)
        region = _bbox(cv2.perspectiveTransform(q_corners, homography).reshape(-1, 2), cw, ch)
        c_corners = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32).reshape(-1, 1, 2)
        inverse = np.linalg.inv(homography)
        query_region = _bbox(cv2.perspectiveTransform(c_corners, inverse).reshape(-1, 2), qw, qh)
    except (np.linalg.LinAlgError, cv2.error):
        pass
    # The agreement test applies when the two frames coincide (neither is a part of the
    # other): that is where a second shot of the same scene lands. A crop, a paste into a
    # screenshot or a collage is a part by construction, and on repetitive textures (bricks)
    # its strong matches often hit a neighbouring repeat, so the ratio would wrongly fail it.
    verified = ratio >= min_ratio or region is not None or query_region is not None
    return Verification(inliers, len(good), verified, True, region, query_region, ratio)


def _sane(homography: np.ndarray, points: np.ndarray, w: int, h: int) -> bool:
    """A plausible copy transform: bounded scale change and shear, inliers spread over at
    least MIN_COVER of the candidate (their convex hull)."""
    cv2 = cv_module()
    a = homography[:2, :2] / homography[2, 2]
    det = float(np.linalg.det(a))
    if not 1 / 64 <= abs(det) <= 64:
        return False
    s = np.linalg.svd(a, compute_uv=False)
    if s[1] <= 0 or s[0] / s[1] > 4:
        return False
    if len(points) < 3:
        return False
    hull = cv2.convexHull(points.astype(np.float32))
    return float(cv2.contourArea(hull)) >= MIN_COVER * w * h
