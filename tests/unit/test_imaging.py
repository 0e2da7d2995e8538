from __future__ import annotations

import io

import pytest
from PIL import Image

from shared.errors import DeepLensError, PayloadTooLarge, Unprocessable, UnsupportedMedia
from shared.imaging import open_image, sniff, thumbnails, validate_upload
from tests.photos import encode, photo


def test_formats_are_decided_by_content() -> None:
    img = photo("coffee.png")
    assert sniff(encode(img, "JPEG")) == "JPEG"
    assert sniff(encode(img, "PNG")) == "PNG"
    assert sniff(encode(img, "WEBP")) == "WEBP"
    assert sniff(b"GIF89a....") is None
    info, _ = validate_upload(encode(img, "PNG"), "no-extension", max_pixels=10**8)
    assert info.content_type == "image/png" and (info.width, info.height) == img.size


@pytest.mark.parametrize(
    ("data", "name", "error", "code"),
    [
        (b"", "a.jpg", Unprocessable, "empty_file"),
        (b"hello, I am text", "a.jpg", UnsupportedMedia, "unsupported_format"),
        (b"GIF89a" + b"\0" * 100, "a.gif", UnsupportedMedia, "unsupported_format"),
    ],
)
def test_refused_uploads(data: bytes, name: str, error: type[DeepLensError], code: str) -> None:
    with pytest.raises(error) as exc:
        validate_upload(data, name, max_pixels=10**8)
    assert exc.value.code == code


def test_truncated_and_corrupt_files() -> None:
    data = encode(photo("astronaut.png"), "JPEG")
    with pytest.raises(Unprocessable) as exc:
        validate_upload(data[: len(data) // 2], "a.jpg", max_pixels=10**8)
    assert exc.value.code == "corrupt_image"
    corrupt = data[:200] + bytes(range(256)) * 40
    with pytest.raises(Unprocessable):
        validate_upload(corrupt, "a.jpg", max_pixels=10**8)


def test_extension_must_agree_with_content() -> None:
    with pytest.raises(UnsupportedMedia) as exc:
        validate_upload(encode(photo("coffee.png"), "JPEG"), "coffee.png", max_pixels=10**8)
    assert exc.value.code == "extension_mismatch"


def test_decompression_bomb_refused_from_header() -> None:
    bomb = Image.new("L", (12000, 12000))
    buf = io.BytesIO()
    bomb.save(buf, "PNG", optimize=True)  # a few hundred KB on disk, 144 MP decoded
    assert len(buf.getvalue()) < 1_000_000
    with pytest.raises(PayloadTooLarge) as exc:
        validate_upload(buf.getvalue(), "bomb.png", max_pixels=50_000_000)
    assert exc.value.code == "image_too_many_pixels"


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° CW on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    assert open_image(buf.getvalue()).size == (20, 40)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "LA", "L"])
def test_modes_become_rgb(mode: str) -> None:
    src = photo("chelsea.png")
    if mode == "I;16":  # a real 16-bit image: the full 0..65535 range
        import numpy as np

        img = Image.fromarray(np.asarray(src.convert("L")).astype(np.uint16) * 257)
    else:
        img = src.convert("L").convert(mode) if mode == "LA" else src.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = open_image(encode(img, fmt))
    assert out.mode == "RGB" and out.size == src.size
    if mode == "I;16":
        # 16-bit scaled to 8 bits, not saturated white
        from PIL import ImageStat

        assert 30 < ImageStat.Stat(out.convert("L")).mean[0] < 225


def test_alpha_composited_on_white() -> None:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    out = open_image(encode(img, "PNG"))
    assert out.getpixel((5, 5)) == (255, 255, 255)


def test_thumbnails_are_webp_at_256_and_128() -> None:
    thumbs = thumbnails(photo("astronaut.png"))
    for size, blob in thumbs.items():
        t = Image.open(io.BytesIO(blob))
        assert t.format == "WEBP" and max(t.size) == size


def test_a_draft_by_the_longer_side_reduces_a_photo_a_box_request_cannot() -> None:
    """process-image asks for the longer side ≥ 512 (``draft=(512, 0)``): a 1280x800 JPEG
    decodes at half scale; PIL's own box request (512, 512) cannot reduce it (800/2 < 512)."""
    import io

    from PIL import Image

    from shared.imaging import open_image_sized

    buf = io.BytesIO()
    Image.new("RGB", (1280, 800), (90, 120, 200)).save(buf, "JPEG")
    img, size = open_image_sized(buf.getvalue(), draft=(512, 0))
    assert size == (1280, 800) and img.size == (640, 400)
    assert open_image_sized(buf.getvalue(), draft=(512, 512))[0].size == (1280, 800)
    buf = io.BytesIO()
    Image.new("RGB", (600, 1300), (90, 120, 200)).save(buf, "JPEG")  # portrait
    assert open_image_sized(buf.getvalue(), draft=(512, 0))[0].size == (300, 650)
