"""Safe image handling, before any model sees a pixel.

Formats are decided by content (magic bytes), never by name. Decompression bombs are refused
from the header (pixel count) before decoding; truncated and corrupt files fail a full decode.
EXIF orientation is applied; CMYK, 16-bit, palette and alpha images become 8-bit RGB.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from shared import decoding
from shared.errors import PayloadTooLarge, Unprocessable, UnsupportedMedia

# Truncated files are errors, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
DEFAULT_MAX_PIXELS = 50_000_000

FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".webp": "WEBP"}
THUMB_SIZES = (256, 128)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    content_type: str
    width: int
    height: int


def sniff(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def open_image(
    data: bytes, *, draft: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode fully into 8-bit RGB with EXIF orientation applied, or raise a 4xx error."""
    return open_image_sized(data, draft=draft, max_pixels=max_pixels)[0]


def check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse an image over ``max_pixels`` from its header alone (nothing is decoded); bytes
    that are no image are left to the decode that follows, which says what is wrong."""
    fmt = sniff(data) if data else None
    if fmt is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            w, h = Image.open(io.BytesIO(data), formats=[fmt]).size
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError):
        return
    _within_pixels(w, h, max_pixels)


def _within_pixels(w: int, h: int, max_pixels: int) -> None:
    if w * h > max_pixels or w <= 0 or h <= 0:
        raise PayloadTooLarge(
            f"image is {w}x{h}: over the {max_pixels} pixel limit", code="image_too_many_pixels"
        )


def open_image_sized(
    data: bytes, *, draft: tuple[int, int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """As open_image, plus the full-resolution size as displayed (EXIF rotation applied).

    With ``draft``, JPEGs are decoded at a DCT-reduced scale (1/2..1/8): every coefficient is
    still entropy-decoded, so truncated or corrupt data fails just the same, at a fraction of
    the cost of a full decode. ``draft=(w, h)`` keeps both sides at least w and h (PIL's
    request); ``draft=(side, 0)`` keeps the longer side at least ``side``.
    """
    if not data:
        raise Unprocessable("the file is empty", code="empty_file")
    fmt = sniff(data)
    if fmt is None:
        raise UnsupportedMedia(
            "only JPEG, PNG and WebP images are accepted", code="unsupported_format"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            src = Image.open(io.BytesIO(data), formats=[fmt])
            w, h = src.size
            _within_pixels(w, h, max_pixels)
            if draft is not None and fmt == "JPEG":
                if draft[1] == 0:
                    # (side, 0): the longer side at least ``side``, the aspect kept — PIL's
                    # own request is a box that both sides must cover, so a 1280x800 photo
                    # asked for (512, 512) would not be reduced at all.
                    f = draft[0] / max(w, h)
                    draft = (max(1, math.ceil(w * f)), max(1, math.ceil(h * f)))
                # (PIL keeps the decoded size at or above the request.)
                src.draft("RGB", draft)
            limits = decoding.budget()
            cost = decoded_cost(src)
            if cost > limits.max_decoded:
                raise PayloadTooLarge(
                    f"image {w}x{h} would decode to {cost} bytes, over the"
                    f" {limits.max_decoded} byte limit",
                    code="image_too_large_decoded",
                )
            with limits.reserve(cost):
                # (PNG's getexif() decodes the whole image to find a trailing eXIf chunk: it
                # must run inside the budget, never before it.)
                src.load()
                if src.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w
                # In place: the default returns a full copy even when nothing is rotated.
                ImageOps.exif_transpose(src, in_place=True)
                rgb = _to_rgb(src)
                if draft is not None:
                    # Formats without draft decoding (PNG, WebP): shrink inside the budget,
                    # so only the small image outlives it.
                    rgb = _shrink(rgb, draft)
                if rgb is not src:
                    src.close()
            return rgb, (w, h)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(
            "image dimensions look like a decompression bomb", code="image_too_many_pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise Unprocessable("the file is not a readable image", code="corrupt_image") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Unprocessable("the image is corrupt or truncated", code="corrupt_image") from exc


def decoded_cost(src: Image.Image) -> int:
    """Bytes a decode of ``src`` (at its current, possibly draft-reduced, size) will hold at
    its peak: the decoded pixels, plus an RGB copy when it must be converted."""
    w, h = src.size
    # Pillow stores 1-byte modes (1, L, P) as bytes, I;16 as 2 bytes, every other mode
    # (RGB included) as 4 bytes per pixel.
    depth = 1 if src.mode in ("1", "L", "P") else 2 if src.mode.startswith("I;16") else 4
    cost = w * h * depth
    if src.mode != "RGB":
        cost += w * h * 4 * (2 if "A" in src.mode or "transparency" in src.info else 1)
    return cost


def _shrink(img: Image.Image, at_least: tuple[int, int]) -> Image.Image:
    if at_least[1] == 0:  # (side, 0): the longer side at least ``side``
        factor = max(img.size) // max(1, at_least[0])
    else:
        factor = min(img.width // max(1, at_least[0]), img.height // max(1, at_least[1]))
    if factor < 2:
        return img
    return img.reduce(factor)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits rather than clip (convert('L') would saturate).
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        rgba = img.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def validate_upload(
    data: bytes, filename: str, *, max_pixels: int
) -> tuple[ImageInfo, Image.Image]:
    """Check an upload completely (format by content, extension agreement, full decode)."""
    fmt = sniff(data) if data else None
    ext = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if data and fmt is None:
        raise UnsupportedMedia(
            "only JPEG, PNG and WebP images are accepted", code="unsupported_format"
        )
    if fmt is not None and ext in EXTENSIONS and EXTENSIONS[ext] != fmt:
        # A file whose name claims another image type: refused so a library never holds a
        # ".png" that is a JPEG (browsers and tools downstream trust the extension).
        raise UnsupportedMedia(
            f"the file is {fmt} but its name ends in {ext}", code="extension_mismatch"
        )
    # A draft-scale decode checks the whole stream at a fraction of a full decode's cost.
    img, (width, height) = open_image_sized(data, draft=(256, 256), max_pixels=max_pixels)
    assert fmt is not None
    return ImageInfo(fmt, FORMATS[fmt], width, height), img


def to_input(img: Image.Image, size: int) -> np.ndarray:
    """The model's input: the whole image (no crop: a crop would drop the borders that
    distinguish near-duplicates from look-alikes) resized to size×size, HxWx3 uint8."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)


def decode_for_model(data: bytes, size: int) -> np.ndarray:
    """Bytes → model input, decoding JPEGs at a DCT-reduced scale (draft mode) first."""
    return to_input(open_image(data, draft=(size, size)), size)


def thumbnails(img: Image.Image) -> dict[int, bytes]:
    """WebP thumbnails whose longer side is 256 and 128 pixels."""
    out: dict[int, bytes] = {}
    source = img
    for size in sorted(THUMB_SIZES, reverse=True):
        scale = min(1.0, size / max(img.width, img.height))
        target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        # resize builds only the small image (thumbnail() on a copy held a full-size copy);
        # each smaller size is made from the one before (a quarter of the pixels to filter).
        # reducing_gap 1: a box reduction by the integer part of the ratio, then Lanczos for
        # the rest (less than half the cost of Lanczos over the whole ratio, at thumbnail size
        # indistinguishable); WebP method 2: half of method 3's time for 3% more bytes.
        thumb = source.resize(target, Image.Resampling.LANCZOS, reducing_gap=1.0)
        source = thumb
        buf = io.BytesIO()
        thumb.save(buf, "WEBP", quality=80, method=2)
        out[size] = buf.getvalue()
    return out


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m: np.ndarray = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


_DCT32 = _dct_matrix(32)


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT perceptual hash: the signs of the 8x8 lowest frequencies (DC excluded)
    against their median. Re-encoding, resizing and mild colour changes keep it within a few
    bits; a shifted or re-framed shot of the same scene does not."""
    small = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BILINEAR), np.float64)
    coeffs = (_DCT32 @ small @ _DCT32.T)[:8, :8].flatten()[1:]
    bits = coeffs > np.median(coeffs)
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value  # 63 bits: fits a signed bigint


def hash_distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()
