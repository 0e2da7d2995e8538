"""Upload real photos to the running platform, wait for the pipeline, and find each edited
copy's original first — never another tenant's images."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import signup, start_platform, wait_all
from tests.photos import GREY, edits, encode, photos

pytestmark = pytest.mark.e2e


def test_upload_wait_and_find_originals(database_url: str, tmp_path: Path) -> None:
    run = start_platform(tmp_path / "data", database_url=database_url)
    try:
        http = run.http
        a, b = signup(http, "Tenant A"), signup(http, "Tenant B")
        originals = photos()
        ids: dict[str, str] = {}
        t0 = time.monotonic()
        for name, img in originals.items():
            r = http.post(
                "/api/images/upload",
                headers=a["key_headers"],
                files={"file": (f"{name}.jpg", encode(img))},
            )
            assert r.status_code == 202, r.text
            ids[name] = r.json()["imageId"]
        for name, img in photos(GREY).items():  # distractors
            r = http.post(
                "/api/images/upload",
                headers=a["key_headers"],
                files={"file": (f"{name}.png", encode(img, "PNG"))},
            )
            assert r.status_code == 202
        # Tenant B holds a copy of one of A's photos.
        rb = http.post(
            "/api/images/upload",
            headers=b["key_headers"],
            files={"file": ("mine.jpg", encode(originals["astronaut"]))},
        )
        b_id = rb.json()["imageId"]
        all_a = {
            i["id"]
            for i in http.get(
                "/api/images", params={"pageSize": 200}, headers=a["key_headers"]
            ).json()["items"]
        }
        status = wait_all(http, a["key_headers"], all_a)
        assert set(status.values()) == {"indexed"}
        wait_all(http, b["key_headers"], {b_id})
        print(f"\n{len(all_a)} images uploaded→indexed in {time.monotonic() - t0:.1f}s")

        lowest: dict[str, float] = {}
        for name, img in originals.items():
            for kind, edited in edits(img).items():
                # Threshold 0: this checks ranking; the default 0.7 is a precision choice.
                r = http.post(
                    "/api/images/search",
                    headers=a["key_headers"],
                    files={"file": ("q.jpg", encode(edited))},
                    data={"limit": "5", "threshold": "0"},
                )
                assert r.status_code == 200, r.text
                results = r.json()
                assert results and results[0]["imageId"] == ids[name], (name, kind, results)
                assert set(results[0]) == {
                    "imageId",
                    "similarity",
                    "filename",
                    "uploadedAt",
                    "thumbnailUrl",
                    "verified",  # geometric verification (issue 15)
                    "inliers",
                    "region",
                    "queryRegion",
                }
                assert b_id not in {x["imageId"] for x in results}
                lowest[kind] = min(lowest.get(kind, 1.0), results[0]["similarity"])
        print("lowest similarity of the original, per edit:", lowest)

        # The CLI: `deeplens search FILE` prints the ranked results.
        import subprocess
        import sys

        query = tmp_path / "query.jpg"
        query.write_bytes(encode(edits(originals["rocket"])["crop"]))
        key = a["key_headers"]["X-API-Key"]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.cli",
                "search",
                str(query),
                "--url",
                run.url,
                "--api-key",
                key,
                "--limit",
                "3",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert out[0].split()[2] == "rocket.jpg" and out[0].split()[3] == ids["rocket"]

        # B searching with A's photo sees only B's own image.
        r = http.post(
            "/api/images/search",
            headers=b["key_headers"],
            files={"file": ("q.jpg", encode(edits(originals["astronaut"])["crop"]))},
            data={"threshold": "0"},
        )
        assert [x["imageId"] for x in r.json()] == [b_id]

        # By vector: an image's own vector finds it first with similarity ~1.
        vec = http.get(f"/api/images/{ids['coffee']}/vector", headers=a["key_headers"]).json()
        r = http.post(
            "/api/images/search",
            headers=a["key_headers"],
            json={"vector": vec["vector"], "limit": 3},
        )
        assert r.json()[0]["imageId"] == ids["coffee"]
        assert r.json()[0]["similarity"] > 0.999
        # B cannot read A's images at all.
        assert http.get(f"/api/images/{ids['coffee']}", headers=b["key_headers"]).status_code == 404
        assert (
            http.get(f"/api/images/{ids['coffee']}/content", headers=b["key_headers"]).status_code
            == 404
        )
    finally:
        run.stop()
