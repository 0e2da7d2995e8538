"""Local features and geometric verification: the second signal behind search by image.

A global embedding says "looks alike"; it cannot say "is the same picture". Here each image
keeps a compact set of ORB keypoints (position + 32-byte binary descriptor, ~18 KB an image,
stored by process-image in ``image_local_features``), and a query is matched against its top
candidates: nearest-neighbour descriptor matches with Lowe's ratio test, then a RANSAC
homography. A candidate is **verified** when enough matches agree with one homography *and*
they are most of the matches: a re-encoded, cropped, rotated, recoloured or pasted copy maps
onto its original by one projective transform; a second shot of the same scene (parallax,
movement) does not — its matches spread off the plane (the motorcycle stereo pair: 59% of
matches fit, against 85–95% for copies).

ORB over SIFT/AKAZE: binary descriptors match by Hamming distance (fast), are 4x smaller than
SIFT's floats, and are rotation invariant; ~12 ms to extract on a 512-px image here.
The homography also gives the matched region: where the query lies in the candidate (a crop)
and where the candidate lies in the query (a screenshot or collage).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from shared.imaging import open_image

# Gallery images keep fewer, coarser features than a query extracts: the query is matched
# against many candidates, so its own set can afford to be richer.
INDEX_SIDE, INDEX_FEATURES = 512, 500
# 700 query keypoints, not 1000: dev unchanged on two draws, verification 25% cheaper (README).
QUERY_SIDE, QUERY_FEATURES = 640, 700
# The gallery's pyramid is coarser (6 levels 1.3 apart: the same 3.7x span as the query's 8
# levels 1.2 apart) and its corner threshold higher: ~30% less CPU per ingested image (ORB was
# most of what local features add to an ingest), same matches on the dev split.
INDEX_PYRAMID, QUERY_PYRAMID = (1.3, 6, 20), (1.2, 8, 10)  # scale step, levels, FAST threshold
MIN_SIDE = 320  # tiny images are upscaled to this before extraction
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
_HEADER = struct.Struct("<4sHHH")  # magic, width, height, count
_MAGIC = b"ORB1"


@functools.cache
def cv_module() -> Any:
    """OpenCV, imported on first use: functions that never verify (most of them) do not pay
    its ~30 MB and import time at cold start."""
    import cv2

    cv2.setNumThreads(1)  # callers parallelise across requests; nested pools only thrash
    return cv2


@functools.cache
def _clahe() -> Any:
    return cv_module().createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))


@functools.cache
def _matcher() -> Any:
    return cv_module().BFMatcher(cv_module().NORM_HAMMING)


@dataclass(frozen=True)
class LocalFeatures:
    width: int  # of the (downscaled) image the points are in
    height: int
    points: np.ndarray  # N x 2 float32, pixels
    descriptors: np.ndarray  # N x 32 uint8

    def __len__(self) -> int:
        return len(self.points)

    def pack(self) -> bytes:
        """Compact bytes: header, quarter-pixel uint16 points, raw descriptors."""
        pts = np.clip(np.round(self.points * 4), 0, 65535).astype("<u2")
        head = _HEADER.pack(_MAGIC, self.width, self.height, len(self.points))
        return head + pts.tobytes() + np.ascontiguousarray(self.descriptors, np.uint8).tobytes()

    @classmethod
    def unpack(cls, blob: bytes) -> LocalFeatures:
        magic, w, h, n = _HEADER.unpack_from(blob)
        if magic != _MAGIC:
            raise ValueError("not a local-feature blob")
        off = _HEADER.size
        pts = np.frombuffer(blob, "<u2", n * 2, off).reshape(n, 2).astype(np.float32) / 4
        desc = np.frombuffer(blob, np.uint8, n * 32, off + n * 4).reshape(n, 32)
        return cls(w, h, pts, desc)


@dataclass(frozen=True)
class Region:
    """A normalised rectangle (0..1) in an image's own coordinates."""

    x: float
    y: float
    width: float
    height: float

    def as_dict(self) -> dict[str, float]:
        return {
            "x": round(self.x, 4),
            "y": round(self.y, 4),
            "width": round(self.width, 4),
            "height": round(self.height, 4),
        }


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


def to_grey(img: Image.Image, side: int, *, upscale: bool = False) -> np.ndarray:
    """Grey, with the longer side brought down to ``side`` — or, with ``upscale``, tiny
    images brought up to MIN_SIDE (at most 4x): ORB ignores a 31-px border and needs room for
    its 31-px patches, so a 100-px image would otherwise yield almost no keypoints."""
    scale = side / max(img.size)
    if upscale and max(img.size) < MIN_SIDE:
        g = img.convert("L")
        scale = min(MIN_SIDE / max(g.size), 4.0)
        return np.asarray(
            g.resize((round(g.width * scale), round(g.height * scale)), Image.Resampling.BICUBIC),
            dtype=np.uint8,
        )
    cv2 = cv_module()
    # OpenCV's grey conversion and area resampling: ~30% cheaper than Pillow's for the 1-MP
    # image process-image decodes (part of what local features add to an ingest).
    if img.mode == "RGB":
        grey = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY)
    else:
        grey = np.asarray(img.convert("L"), dtype=np.uint8)
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grey, dtype=np.uint8)


def extract_image(
    img: Image.Image,
    *,
    side: int,
    features: int,
    pyramid: tuple[float, int, int] = QUERY_PYRAMID,
) -> LocalFeatures:
    cv2 = cv_module()
    grey = to_grey(img, side, upscale=True)
    step, levels, fast = pyramid
    orb = cv2.ORB_create(nfeatures=features, scaleFactor=step, nlevels=levels, fastThreshold=fast)
    keypoints, desc = orb.detectAndCompute(grey, None)
    if len(keypoints) < features // 3:
        # Low contrast (a retina scan, a micrograph, a blurred copy): local histogram
        # equalisation first. ORB compares pixel pairs, so a locally monotonic change like this
        # still matches the other side's plain features.
        kp2, desc2 = orb.detectAndCompute(_clahe().apply(grey), None)
        if len(kp2) > len(keypoints):
            keypoints, desc = kp2, desc2
    h, w = grey.shape
    if desc is None or not keypoints:
        return LocalFeatures(w, h, np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    pts = np.array([k.pt for k in keypoints], np.float32)
    return LocalFeatures(w, h, pts, desc)


def extract(
    data: bytes,
    *,
    side: int = INDEX_SIDE,
    features: int = INDEX_FEATURES,
    pyramid: tuple[float, int, int] = INDEX_PYRAMID,
) -> LocalFeatures:
    """Bytes → local features (JPEGs decoded at a DCT-reduced scale near ``side``); a gallery
    image's unless told otherwise."""
    img = open_image(data, draft=(side, side))
    return extract_image(img, side=side, features=features, pyramid=pyramid)


def extract_index(img: Image.Image) -> LocalFeatures:
    """A gallery image's features, from an image the caller already decoded (process-image
    decodes at a DCT-reduced scale of at least 512 px for the thumbnails)."""
    return extract_image(img, side=INDEX_SIDE, features=INDEX_FEATURES, pyramid=INDEX_PYRAMID)


def extract_query(data: bytes) -> LocalFeatures:
    return extract(data, side=QUERY_SIDE, features=QUERY_FEATURES, pyramid=QUERY_PYRAMID)


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
    pairs = _matcher().knnMatch(query.descriptors, candidate.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < max(8, min_inliers):
        return Verification(0, len(good), False)  # cannot reach min_inliers: skip RANSAC
    # PROSAC samples the best matches first: it converges in a few iterations on a copy and
    # gives up quickly on a stranger, where plain RANSAC ran all its iterations (~10x slower).
    good.sort(key=lambda m: m.distance)
    src = query.points[[m.queryIdx for m in good]]
    dst = candidate.points[[m.trainIdx for m in good]]
    cw, ch = candidate.width, candidate.height
    px = RANSAC_PX * max(cw, ch) / INDEX_SIDE
    homography, mask = cv2.findHomography(
        src, dst, cv2.USAC_PROSAC, px, maxIters=2000, confidence=0.995
    )
    if homography is None or mask is None:
        return Verification(0, len(good), False)
    inlier = mask.ravel().astype(bool)
    train = np.array([m.trainIdx for m in good])
    inliers = len(set(train[inlier].tolist()))
    # Strong matches (small Hamming distance) are almost never wrong: in a copy nearly all of
    # them agree with the homography; in a second shot of a scene, parallax and movement put
    # many of them off it. This ratio is what tells a copy from a similar shot.
    dist = np.array([m.distance for m in good])
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
