"""The retrieval dev set: real photos from scikit-image, distractors, and a family of edits.

Queries are edited copies of the originals; the gallery is the originals plus distractors.
A query's one relevant item is its original.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from tests.photos import COLOUR, GREY, photo

DISTRACTOR_FILES = [
    "cell.png",
    "chessboard_RGB.png",
    "color.png",
    "horse.png",
    "logo.png",
    "microaneurysms.png",
    "phantom.png",
    "page.png",
    "text.png",
    "clock_motion.png",
]


def _data() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _reencode(img: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg(img, quality))).convert("RGB")


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
    d.rectangle((w - w // 5, h - h // 8, w - 10, h - 10), fill=(0, 0, 0, 120))
    return out


def _screenshot(img: Image.Image) -> Image.Image:
    """The photo as seen in a screenshot: inside a window with UI chrome and margins."""
    w, h = img.size
    canvas = Image.new("RGB", (int(w * 1.3), int(h * 1.45)), (236, 238, 241))
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, canvas.width, int(h * 0.12)), fill=(52, 58, 64))
    d.rectangle(
        (0, canvas.height - int(h * 0.1), canvas.width, canvas.height), fill=(255, 255, 255)
    )
    canvas.paste(img, (int(w * 0.15), int(h * 0.2)))
    return canvas


def edit_family(img: Image.Image) -> dict[str, Image.Image]:
    w, h = img.size
    return {
        "crop-80": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "crop-60": img.crop((0, 0, int(w * 0.6), int(h * 0.6))),
        "rotate-8": img.rotate(8, expand=True, fillcolor=(255, 255, 255)),
        "rotate-90": img.transpose(Image.Transpose.ROTATE_90),
        "flip": img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "watermark": _watermark(img),
        "border": ImageOps.expand(img, border=max(w, h) // 12, fill=(250, 250, 250)),
        "screenshot": _screenshot(img),
        "grayscale": ImageOps.grayscale(img).convert("RGB"),
        "blur": img.filter(ImageFilter.GaussianBlur(2.5)),
        "downscale": img.resize((max(32, w // 4), max(32, h // 4))),
        "jpeg-15": _reencode(img, 15),
        "colour-shift": ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(1.25)).enhance(0.6),
    }


@dataclass
class DevSet:
    gallery_names: list[str]
    gallery: list[bytes]
    queries: list[bytes]
    query_family: list[str]
    query_target: list[int]  # index into gallery


def build(faces: int = 200) -> DevSet:
    originals = {n.rsplit(".", 1)[0]: photo(n) for n in COLOUR + GREY}
    names, gallery = list(originals), [jpeg(img) for img in originals.values()]
    for f in DISTRACTOR_FILES:
        names.append(f"distractor:{f}")
        gallery.append(jpeg(Image.open(_data() / f).convert("RGB")))
    lfw = np.load(_data() / "lfw_subset.npy")[:faces]
    for i, face in enumerate(lfw):
        img = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((100, 100))
        names.append(f"distractor:face-{i}")
        gallery.append(jpeg(img))
    queries, family, target = [], [], []
    for gi, img in enumerate(originals.values()):
        for kind, edited in edit_family(img).items():
            queries.append(jpeg(edited))
            family.append(kind)
            target.append(gi)
    return DevSet(names, gallery, queries, family, target)
