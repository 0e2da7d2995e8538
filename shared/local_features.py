"""Local features: the second signal behind search by image (matched in shared/matching.py).

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
import threading
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
_HEADER = struct.Struct("<4sHHH")  # magic, width, height, count
_MAGIC = b"ORB1"


@functools.cache
def cv_module() -> Any:
    """OpenCV, imported on first use: functions that never verify (most of them) do not pay
    its ~30 MB and import time at cold start."""
    import cv2

    cv2.setNumThreads(1)  # callers parallelise across requests; nested pools only thrash
    return cv2


_LOCAL = threading.local()


def _clahe() -> Any:
    """One CLAHE per thread: apply() keeps working buffers on the object."""
    clahe = getattr(_LOCAL, "clahe", None)
    if clahe is None:
        clahe = _LOCAL.clahe = cv_module().createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    return clahe


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


def extract_query(data: bytes, *, mirrored: bool = False) -> LocalFeatures:
    """A query's features; ``mirrored``: of its left-right mirror image (a flipped repost: ORB
    descriptors are not mirror invariant)."""
    if not mirrored:
        return extract(data, side=QUERY_SIDE, features=QUERY_FEATURES, pyramid=QUERY_PYRAMID)
    img = open_image(data, draft=(QUERY_SIDE, QUERY_SIDE))
    flipped = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return extract_image(flipped, side=QUERY_SIDE, features=QUERY_FEATURES, pyramid=QUERY_PYRAMID)
