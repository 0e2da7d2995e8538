"""Real photographs that ship inside scikit-image, and a family of edits of them."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter


def _data_dir() -> Path:
    import os

    if os.environ.get("DEEPLENS_PHOTOS_DIR"):  # a machine whose scikit-image lacks them
        return Path(os.environ["DEEPLENS_PHOTOS_DIR"])
    import skimage

    return Path(skimage.__file__).parent / "data"


COLOUR = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
]
GREY = ["camera.png", "moon.png", "coins.png", "brick.png", "grass.png", "gravel.png"]


def photo(name: str) -> Image.Image:
    return Image.open(_data_dir() / name).convert("RGB")


def photos(names: list[str] | None = None) -> dict[str, Image.Image]:
    return {n.rsplit(".", 1)[0]: photo(n) for n in (names or COLOUR)}


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def edits(img: Image.Image) -> dict[str, Image.Image]:
    """Edited copies a user would expect to find the original with."""
    w, h = img.size
    return {
        "crop": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "resize": img.resize((w // 2, h // 2)),
        "rotate": img.rotate(8, expand=False, fillcolor=(255, 255, 255)),
        "jpeg": Image.open(io.BytesIO(encode(img, quality=25))).convert("RGB"),
        "colour": ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(1.2)).enhance(0.7),
        "blur": img.filter(ImageFilter.GaussianBlur(1.5)),
    }


def photo_jpegs(n: int, *, size: tuple[int, int] = (1280, 800), seed: int = 0) -> list[bytes]:
    """~1 MP JPEGs made from the real photos in scikit-image, each one different (random
    crop, flip and colour), as a camera roll would be."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bases = [photo(n) for n in COLOUR]
    out = []
    for i in range(n):
        img = bases[i % len(bases)]
        w, h = img.size
        x0, y0 = int(rng.integers(0, w // 8)), int(rng.integers(0, h // 8))
        img = img.crop((x0, y0, w - int(rng.integers(0, w // 8)), h - int(rng.integers(0, h // 8))))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.6, 1.4)))
        img = img.resize(size, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out
