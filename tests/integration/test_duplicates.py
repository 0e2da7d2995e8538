"""Duplicates: exact re-uploads answered with the existing image; near-duplicate groups that
separate true copies from burst-like shots (as documented); groups never cross tenants."""

from __future__ import annotations

import pytest
from PIL import ImageEnhance

from events.codec import from_json
from tests.conftest import Platform
from tests.integration.test_pipeline import deliver, queued, upload
from tests.photos import encode, photo

pytestmark = pytest.mark.integration


def run_pipeline(p: Platform) -> None:
    for d in queued(p):
        ev = from_json(d["event"])
        for path in ("/events/process-image", "/events/extract", "/events/index-vector"):
            code, ev = deliver(p, path, ev, "binary")  # type: ignore[assignment]
            assert code == 200
    with p.container.db.tx() as conn:
        conn.execute("UPDATE broker_deliveries SET status = 'done'")


def test_exact_reupload_is_detected(platform: Platform) -> None:
    p = platform
    t = p.signup()
    blob = encode(photo("coffee.png"))
    first = upload(p, t, "coffee.jpg", blob)
    assert first.status_code == 202 and first.json()["duplicate"] is False
    again = upload(p, t, "coffee-copy.jpg", blob)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert again.json()["imageId"] == first.json()["imageId"]
    with p.container.db.tx() as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 1
    # Another tenant uploading the same bytes gets its own image.
    other = p.signup("Other")
    theirs = upload(p, other, "coffee.jpg", blob)
    assert theirs.status_code == 202 and theirs.json()["imageId"] != first.json()["imageId"]


def test_copies_and_burst_shots_are_told_apart(platform: Platform) -> None:
    p = platform
    t = p.signup()
    left, right = photo("motorcycle_left.png"), photo("motorcycle_right.png")
    ids = {}
    for name, img, q in [
        ("left.jpg", left, 90),
        ("left-reencoded.jpg", left, 55),
        ("left-small.jpg", left.resize((left.width // 2, left.height // 2)), 90),
        ("left-brighter.jpg", ImageEnhance.Brightness(left).enhance(1.1), 90),
        ("right.jpg", right, 90),
        ("coffee.jpg", photo("coffee.png"), 90),
    ]:
        r = upload(p, t, name, encode(img, quality=q))
        assert r.status_code == 202
        ids[name] = r.json()["imageId"]
    run_pipeline(p)
    dup = p.client.get(f"/api/images/{ids['left.jpg']}/duplicates", headers=t["headers"]).json()
    kinds = {d["filename"]: d["kind"] for d in dup["duplicates"]}
    assert kinds == {
        "left-reencoded.jpg": "copy",
        "left-small.jpg": "copy",
        "left-brighter.jpg": "copy",
        "right.jpg": "similar-shot",
    }
    assert all(d["similarity"] >= 0.9 for d in dup["duplicates"])
    groups = p.client.get("/api/images/duplicates", headers=t["headers"]).json()
    assert groups["total"] == 1
    [g] = groups["groups"]
    assert g["rootId"] == ids["left.jpg"] and g["size"] == 5
    assert {i["filename"] for i in g["images"]} == {
        "left.jpg",
        "left-reencoded.jpg",
        "left-small.jpg",
        "left-brighter.jpg",
        "right.jpg",
    }
    # Deleting the group's original keeps the group, rooted at the next upload.
    assert (
        p.client.delete(f"/api/images/{ids['left.jpg']}", headers=t["headers"]).status_code == 204
    )
    [g] = p.client.get("/api/images/duplicates", headers=t["headers"]).json()["groups"]
    assert g["rootId"] == ids["left-reencoded.jpg"] and g["size"] == 4


def test_duplicate_groups_stay_within_a_tenant(platform: Platform) -> None:
    p = platform
    a, b = p.signup("A"), p.signup("B")
    img = photo("astronaut.png")
    upload(p, a, "a1.jpg", encode(img, quality=90))
    upload(p, a, "a2.jpg", encode(img, quality=60))
    b_only = upload(p, b, "b1.jpg", encode(img, quality=70)).json()["imageId"]
    run_pipeline(p)
    ga = p.client.get("/api/images/duplicates", headers=a["headers"]).json()
    assert ga["total"] == 1 and ga["groups"][0]["size"] == 2
    assert p.client.get("/api/images/duplicates", headers=b["headers"]).json()["total"] == 0
    near = p.client.get(f"/api/images/{b_only}/duplicates", headers=b["headers"]).json()
    assert near["duplicates"] == []
    assert p.client.get(f"/api/images/{b_only}/duplicates", headers=a["headers"]).status_code == 404


def test_a_reframed_copy_is_a_copy_by_geometric_verification(platform: Platform) -> None:
    """A 10% crop and a small rotation change the perceptual hash (the old rule called them
    similar shots); the local features verify them as copies of the same photo."""
    from shared.imaging import hash_distance, perceptual_hash

    p = platform
    t = p.signup()
    img = photo("coffee.png")
    w, h = img.size
    cropped = img.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    rotated = img.rotate(5, expand=False, fillcolor=(255, 255, 255))
    for edited in (cropped, rotated):
        assert hash_distance(perceptual_hash(img), perceptual_hash(edited)) > 2
    ids = {}
    for name, im in [("coffee.jpg", img), ("cropped.jpg", cropped), ("rotated.jpg", rotated)]:
        ids[name] = upload(p, t, name, encode(im)).json()["imageId"]
    run_pipeline(p)
    dup = p.client.get(
        f"/api/images/{ids['coffee.jpg']}/duplicates?threshold=0.7", headers=t["headers"]
    ).json()
    kinds = {d["filename"]: d["kind"] for d in dup["duplicates"]}
    assert kinds == {"cropped.jpg": "copy", "rotated.jpg": "copy"}
