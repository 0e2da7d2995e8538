"""The system admin's live status page in the browser: after uploads, it shows the backlog,
throughput, the last hour's failures and each stage's runs and latency — read from the same
metrics /metrics exposes. Tenant users may not read it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Running, create_admin, signup, wait_all
from tests.e2e.test_web_ui import SIZES, browser, running, shoot  # noqa: F401 - fixtures
from tests.metrics_scrape import Scrape
from tests.photos import encode, photos

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_status_page_shows_the_metrics(running: Running, browser) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from playwright.sync_api import expect

    create_admin(running, "root@status.test", "root-password-1")
    http = running.http
    t = signup(http, "Status Co")
    ids = set()
    for name, img in list(photos().items())[:2]:
        r = http.post(
            "/api/images/upload",
            headers=t["key_headers"],
            files={"file": (f"{name}.jpg", encode(img))},
        )
        assert r.status_code == 202
        ids.add(r.json()["imageId"])
    wait_all(http, t["key_headers"], ids)
    # Tenant users are refused; the API answers system admins only.
    assert http.get("/api/admin/status", headers=t["headers"]).status_code == 403

    root = http.post(
        "/api/auth/login", json={"email": "root@status.test", "password": "root-password-1"}
    ).json()
    # The state gauges (images by status, backlog) are read from PostgreSQL at most every
    # 5 s (shared/scrape.py); the status sampler may have read them while the two images
    # were still in the pipeline.
    deadline = time.monotonic() + 15
    while True:
        status = http.get(
            "/api/admin/status", headers={"Authorization": f"Bearer {root['accessToken']}"}
        ).json()
        if status["images"].get("indexed") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    stages = {s["stage"]: s for s in status["stages"]}
    assert {k: stages[k]["runs"] for k in stages} == {
        "process-image": 2,
        "extract": 2,
        "index-vector": 2,
    }
    assert all(s["p50Ms"] is not None and s["p50Ms"] <= s["p95Ms"] for s in stages.values())
    assert status["lastHour"]["indexed"] == 2 and status["lastHour"]["pipelineFailures"] == 0
    assert status["images"]["indexed"] == 2
    assert status["backlog"]["events"] == 0
    # The same figures as the scrape.
    m = Scrape(http.get("/metrics").text)
    assert m.value("deeplens_upload_to_indexed_seconds_count") == status["lastHour"]["indexed"]

    page = browser.new_context(viewport=SIZES["desktop"]).new_page()
    page.goto(running.url + "/#/login")
    page.get_by_label("Email", exact=True).fill("root@status.test")
    page.get_by_label("Password", exact=True).fill("root-password-1")
    page.get_by_role("button", name="Sign in").click()
    # Signing in lands on the system admin page; the Status link is followed after that.
    expect(page.get_by_role("heading", name="System admin")).to_be_visible()
    page.get_by_role("link", name="Status").click()
    expect(page.get_by_role("heading", name="Platform status")).to_be_visible()
    expect(page.locator('[data-stat="images-indexed"] .value')).to_have_text("2")
    expect(page.locator('[data-stat="indexed"] .value')).to_have_text("2")
    expect(page.locator('[data-stat="backlog"] .value')).to_have_text("0")
    for stage in ("process-image", "extract", "index-vector"):
        row = page.locator(f'tr[data-stage="{stage}"] td')
        expect(row.nth(1)).to_have_text("2")
        expect(row.nth(3)).not_to_have_text("–")
    shoot(page, "system-status")
