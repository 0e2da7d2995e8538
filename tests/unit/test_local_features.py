"""Local features and geometric verification on real photos (no database)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.local_features import LocalFeatures, extract, extract_query
from shared.matching import verify
from shared.quality.edits import _screenshot
from shared.quality.photoset import _texture
from shared.regions import region_proposals
from tests.photos import encode, photo


def test_pack_roundtrip_is_compact() -> None:
    f = extract(encode(photo("astronaut.png")))
    blob = f.pack()
    assert 400 <= len(f) <= 500 and len(blob) < 20_000
    back = LocalFeatures.unpack(blob)
    assert (back.width, back.height) == (f.width, f.height)
    assert np.array_equal(back.descriptors, f.descriptors)
    assert np.abs(back.points - f.points).max() <= 0.125


def test_rotated_recompressed_copy_is_verified() -> None:
    img = photo("coffee.png")
    query = img.rotate(33, expand=True, fillcolor=(255, 255, 255))
    v = verify(extract_query(encode(query, quality=30)), extract(encode(img)))
    assert v.geometric and v.verified and v.inliers >= 50


def test_unrelated_photos_and_tiny_images_do_not_match() -> None:
    q = extract_query(encode(photo("gravel.png")))
    for other in ("grass.png", "brick.png", "coins.png", "astronaut.png"):
        v = verify(q, extract(encode(photo(other))))
        assert not v.geometric and not v.verified, other
    # A tiny, flat image used to "verify" against anything through a collapsing homography.
    tiny = photo("camera.png").resize((25, 25)).resize((100, 100))
    assert not verify(q, extract(encode(tiny))).geometric
    assert not verify(extract_query(encode(tiny)), extract(encode(photo("gravel.png")))).geometric


def test_strangers_are_dropped_after_a_third_of_the_matching(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cascade: a copy matches every query descriptor (the same match as in one pass); a
    stranger with too few good matches among the first third is not matched further."""
    import shared.matching as matching

    rows: list[int] = []
    real = matching._matcher()

    class Counting:
        def knnMatch(self, q: np.ndarray, c: np.ndarray, k: int) -> Any:  # noqa: N802
            rows.append(len(q))
            return real.knnMatch(q, c, k=k)

    monkeypatch.setattr(matching, "_matcher", lambda: Counting())
    img = photo("coffee.png")
    q = extract_query(encode(img.rotate(20, expand=True), quality=40))
    v = verify(q, extract(encode(img)))
    assert v.geometric and sum(rows) == len(q)
    one_pass = matching.CASCADE_MIN
    monkeypatch.setattr(matching, "CASCADE_MIN", 0)
    assert verify(q, extract(encode(img))) == v  # the two stages' union is the full match
    monkeypatch.setattr(matching, "CASCADE_MIN", one_pass)
    dropped = 0
    for other in ("gravel.png", "brick.png", "coins.png", "astronaut.png", "camera.png"):
        rows.clear()
        s = verify(q, extract(encode(photo(other))))
        assert not s.geometric
        dropped += sum(rows) <= len(q) // 3 + 1
    assert dropped >= 3


def test_a_second_shot_is_not_a_verified_copy() -> None:
    left, right = photo("motorcycle_left.png"), photo("motorcycle_right.png")
    v = verify(extract_query(encode(right)), extract(encode(left)))
    assert not v.verified  # the same scene from another viewpoint: not a copy
    assert verify(extract(encode(right)), extract(encode(left))).verified is False


def test_crop_region_is_located_in_the_original() -> None:
    img = photo("chelsea.png")
    w, h = img.size
    crop = img.crop((int(w * 0.4), int(h * 0.3), int(w * 0.95), int(h * 0.85)))  # 30% of it
    v = verify(extract_query(encode(crop)), extract(encode(img)))
    assert v.geometric and v.region is not None
    assert abs(v.region.x - 0.4) < 0.05 and abs(v.region.y - 0.3) < 0.05
    assert 0.2 < v.region.width * v.region.height < 0.4


def test_screenshot_region_is_proposed_and_located() -> None:
    rng = np.random.default_rng(3)
    shot = _screenshot(photo("gravel.png"), rng)
    crops = region_proposals(encode(shot))
    assert crops, "the pasted photo should be proposed as a region"
    v = verify(extract_query(encode(shot)), extract(encode(photo("gravel.png"))))
    assert v.geometric and v.query_region is not None
    assert v.query_region.width * v.query_region.height < 0.7
    # An ordinary photo has no inner regions to propose.
    assert region_proposals(encode(photo("astronaut.png"))) == []
    assert region_proposals(encode(_texture(1))) == []


def test_flat_image_has_no_features_and_never_matches() -> None:
    flat = Image.new("RGB", (300, 200), (120, 130, 140))
    f = extract(encode(flat))
    assert len(f) == 0 and LocalFeatures.unpack(f.pack()).descriptors.shape == (0, 32)
    assert not verify(extract_query(encode(photo("coffee.png"))), f).geometric


def test_a_small_photo_in_a_desktop_screenshot_is_proposed() -> None:
    """The strict cut finds nothing in a desktop screenshot (one blended row under the title
    bar makes every column non-uniform); the outlier-tolerant cut proposes the photo, as a
    weak proposal (it nominates candidates for verification only). A plain photo and a
    texture still yield none."""
    from shared.regions import proposals
    from tests.integration.test_search_verification import desktop_screenshot

    shot, (bx, by, bw, bh) = desktop_screenshot(photo("coffee.png"), 0.2)
    found = proposals(shot)
    assert found and all(p.box is not None for p in found)
    best = found[0].box
    assert best is not None and not found[0].strong
    assert abs(best.x - bx) < 0.02 and abs(best.y - by) < 0.02
    assert abs(best.width - bw) < 0.03 and abs(best.height - bh) < 0.03
    assert proposals(encode(photo("astronaut.png"))) == []


def test_a_small_picture_with_text_running_over_it_is_proposed_tightly() -> None:
    """A small page (a 90x80 picture on a 150x140 page) whose lines of text run up to and over
    the picture: no uniform line separates the two, so the cut proposes the text and the
    picture together; the picture's own solid block is proposed too, strong, and tight."""
    from PIL import ImageDraw

    from shared.regions import proposals

    page = Image.new("RGB", (150, 140), (246, 247, 249))
    d = ImageDraw.Draw(page)
    d.rectangle((0, 0, 150, 12), fill=(52, 58, 64))
    d.rectangle((0, 12, 150, 24), fill=(225, 228, 232))
    pic = photo("coffee.png").resize((90, 80))
    page.paste(pic, (45, 40))
    for i in range(5):
        d.text((8, 34 + i * 20), "Lorem ipsum dolor sit", fill=(60, 60, 60), font_size=10)
    found = proposals(encode(page))
    tight = [
        p
        for p in found
        if p.box is not None
        and p.strong
        and abs(p.box.x * 150 - 45) <= 3
        and abs(p.box.y * 140 - 40) <= 3
        and abs(p.box.width * 150 - 90) <= 4
        and abs(p.box.height * 140 - 80) <= 4
    ]
    assert tight, [p.box for p in found]


def test_a_picture_on_a_flat_surround_without_text_is_no_page() -> None:
    """A scan's flat surround (no text on it) is no page: its picture is left to the cut, so a
    blurred scan never gets a block of its own whose look-alikes would rank."""
    from shared.regions import _blobs

    scan = Image.new("L", (200, 200), 0)
    scan.paste(photo("coffee.png").convert("L").resize((120, 100)), (40, 50))
    assert _blobs(np.asarray(scan, dtype=np.float32)) == []
    # The same picture with lines of text beside it is a page, and the picture is found.
    from PIL import ImageDraw

    page = scan.convert("RGB")
    d = ImageDraw.Draw(page)
    for i in range(8):
        d.text((4, 4 + i * 24), "Lorem ipsum dolor", fill=(220, 220, 220), font_size=10)
    grey = np.asarray(page.convert("L"), dtype=np.float32)
    assert any(abs(x0 - 40) <= 3 and abs(y0 - 50) <= 3 for x0, y0, _x1, _y1 in _blobs(grey))


def test_a_flipped_crop_is_verified_through_the_mirrored_query() -> None:
    """ORB is not mirror invariant: a flipped 60% crop matches nothing until the query's mirror
    image is verified too (only when nothing else matched, against the nearest candidates)."""
    import uuid

    from shared.verification import verify_all, verify_mirrored

    img = photo("astronaut.png")
    w, h = img.size
    flipped = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    query = encode(flipped.crop((0, 0, int(w * 0.6), int(h * 0.6))))
    cid, other = uuid.uuid4(), uuid.uuid4()
    stored = {cid: extract(encode(img)), other: extract(encode(photo("gravel.png")))}
    checks = verify_all(extract_query(query), stored)
    assert not any(v.geometric for v in checks.values())
    out = verify_mirrored(checks, query, stored, [other, cid])
    v = out[cid]
    assert v.geometric and v.verified and not out[other].geometric
    # The flipped crop's top-left is the original's top-right: the region says so.
    assert v.region is not None and v.region.x > 0.3 and v.region.y < 0.05
