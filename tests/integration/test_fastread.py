"""The data plane's fast read (shared/hotpath/fastread.py): ``GET /api/images/{id}`` served in
front of FastAPI answers byte for byte what the FastAPI route answers.

The FastAPI route still serves what the fast read leaves to it (an id in a non-canonical
spelling, no credentials, a malformed id), so the two are compared on the same image."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from shared import metrics
from shared.hotpath.fastread import FastRead
from tests.conftest import Platform, jpeg_bytes, make_platform

pytestmark = pytest.mark.integration


@pytest.fixture
def plat(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    p = make_platform(database_url, tmp_path, only=["auth", "tenants", "images"])
    try:
        yield p
    finally:
        p.fn.stop()


def upload(p: Platform, t: dict[str, Any]) -> str:
    blob = jpeg_bytes(Image.new("RGB", (64, 48), (200, 30, 30)))
    r = p.client.post("/api/images/upload", headers=t["headers"], files={"file": ("é.jpg", blob)})
    assert r.status_code == 202, r.text
    image_id: str = r.json()["imageId"]
    return image_id


def requests_counted(route: str, code: str) -> float:
    sample = metrics.HTTP_REQUESTS.labels(route, "GET", code)
    value: float = sample._value.get()  # type: ignore[attr-defined]
    return value


def test_fast_read_answers_what_the_fastapi_route_answers(
    plat: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = plat.signup("Fast")
    image_id = upload(plat, t)
    served: list[uuid.UUID] = []
    answer = FastRead._answer

    async def spy(self: FastRead, principal: Any, key: uuid.UUID) -> Any:
        served.append(key)
        return await answer(self, principal, key)

    monkeypatch.setattr(FastRead, "_answer", spy)
    before = requests_counted("/api/images/{image_id}", "200")
    fast = plat.client.get(f"/api/images/{image_id}", headers=t["headers"])
    # The 32-digit spelling of the same id is not the fast read's: FastAPI answers it.
    slow = plat.client.get(f"/api/images/{uuid.UUID(image_id).hex}", headers=t["headers"])
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    assert served == [uuid.UUID(image_id)]  # the fast read answered the first, FastAPI the other
    assert fast.json()["id"] == image_id and fast.json()["filename"] == "é.jpg"
    listed = plat.client.get("/api/images", headers=t["headers"]).json()["items"]
    assert [fast.json()] == listed
    # Counted under the route's template, as FastAPI's routes are.
    assert requests_counted("/api/images/{image_id}", "200") == before + 2


def test_fast_read_errors_are_the_platforms(plat: Platform) -> None:
    t = plat.signup("Errors")
    other = plat.signup("Other")
    theirs = upload(plat, other)
    missing = str(uuid.uuid4())
    for image_id in (missing, theirs):
        fast = plat.client.get(f"/api/images/{image_id}", headers=t["headers"])
        slow = plat.client.get(f"/api/images/{uuid.UUID(image_id).hex}", headers=t["headers"])
        assert fast.status_code == slow.status_code == 404
        assert fast.json() == slow.json()
        assert fast.json()["error"]["code"] == "image_not_found"
    # Left to FastAPI: no credentials, a malformed id.
    r = plat.client.get(f"/api/images/{theirs}")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_credentials"
    r = plat.client.get("/api/images/not-an-id", headers=t["headers"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    # A deleted image is gone for the fast read too.
    mine = upload(plat, t)
    assert plat.client.delete(f"/api/images/{mine}", headers=t["headers"]).status_code == 204
    r = plat.client.get(f"/api/images/{mine}", headers=t["headers"])
    assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_found"


def test_control_characters_are_refused_before_the_fast_read(plat: Platform) -> None:
    t = plat.signup("Guard")
    image_id = upload(plat, t)
    r = plat.client.get(f"/api/images/{image_id}?q=%00", headers=t["headers"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_url"
