"""The 16 families of everyday edits the evaluation applies to every original."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _reencode(img: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(img, quality))).convert("RGB")


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


def _desktop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo small inside a full desktop screenshot: a window's title bar, a sidebar,
    lines of text around it; the photo at 15-30% of the page's width (2-9% of its area)."""
    w, h = (1600, 1000) if rng.random() < 0.5 else (1440, 900)
    page = Image.new("RGB", (w, h), (250, 250, 250))
    d = ImageDraw.Draw(page)
    bar, side = int(rng.uniform(48, 72)), int(rng.uniform(200, 320))
    d.rectangle((0, 0, w, bar), fill=(40, 44, 52))
    d.rectangle((0, bar, side, h), fill=(235, 237, 240))
    pw = int(w * rng.uniform(0.15, 0.3))
    ph = max(16, int(img.height * pw / img.width))
    ph = min(ph, h - bar - 40)
    pw = max(16, int(img.width * ph / img.height))
    x = int(rng.uniform(side + 20, max(side + 21, w - pw - 20)))
    y = int(rng.uniform(bar + 20, max(bar + 21, h - ph - 20)))
    page.paste(img.resize((pw, ph), Image.Resampling.LANCZOS), (x, y))
    for row in range(bar + 24, h - 24, 44):
        if y - 24 < row < y + ph + 4:
            if x - side > 260:  # text beside the photo, where there is room
                d.text((side + 20, row), "Lorem ipsum dolor sit", fill=(50, 50, 50), font_size=18)
            continue
        d.text(
            (side + 20, row),
            "Lorem ipsum dolor sit amet, consectetur " * 2,
            fill=(50, 50, 50),
            font_size=18,
        )
    return _reencode(page, 85)


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

    def j() -> float:
        return float(rng.uniform(0.04, 0.12))

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
        # Last: its random draws come after every other family's, which stay as they were.
        "screenshot-desktop": _desktop(img, rng),
    }
