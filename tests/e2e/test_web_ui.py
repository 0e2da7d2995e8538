"""The web UI in a real browser (Debian's Chromium, driven by Playwright): sign up a tenant,
upload three real photos, wait until indexed, search with an edited copy and see the original
first, create and revoke an API key, and a second tenant sees none of it. Screenshots of every
page at desktop and phone width go to tests/artifacts/screenshots/ (DEEPLENS_SCREENSHOTS to
move them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Running, create_admin, start_platform
from tests.photos import edits, encode, photos

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(
    os.environ.get(
        "DEEPLENS_SCREENSHOTS", Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
    )
)
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def running(database_url: str, tmp_path: Path) -> Iterator[Running]:
    run = start_platform(tmp_path / "data", database_url=database_url)
    yield run
    run.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium package is needed (.ci/run installs it)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def shoot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in SIZES.items():
        page.set_viewport_size(size)
        page.wait_for_timeout(150)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(SIZES["desktop"])


def test_sign_up_upload_search_keys_and_isolation(
    running: Running, browser, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    originals = photos(["astronaut.png", "coffee.png", "rocket.jpg"])
    files = []
    for name, img in originals.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(encode(img))
        files.append(path)
    query = tmp_path / "query-coffee-crop.jpg"
    query.write_bytes(encode(edits(originals["coffee"])["crop"]))

    ctx = browser.new_context(viewport=SIZES["desktop"])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(running.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shoot(page, "sign-in")

    page.get_by_role("link", name="Create a tenant").first.click()
    page.get_by_label("Organisation name").fill("Picture Co")
    page.get_by_label("Your email").fill("owner@picture.test")
    page.get_by_label("Password (8 characters or more)").fill("correct horse battery")
    shoot(page, "sign-up")
    page.get_by_role("button", name="Create tenant").click()
    expect(page.get_by_role("heading", name="Upload")).to_be_visible()

    page.locator("input[type=file]").set_input_files([str(f) for f in files])
    uploads = page.get_by_role("list", name="Uploads")
    for f in files:
        row = uploads.locator(f"li[data-filename='{f.name}']")
        expect(row.locator(".st")).to_have_text("indexed", timeout=60_000)
    shoot(page, "upload")

    page.get_by_role("link", name="Library").click()
    expect(page.get_by_text("3 images")).to_be_visible()
    grid = page.get_by_role("list", name="Images")
    expect(grid.locator("li")).to_have_count(3)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.thumb')]"
        ".every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)"
    )
    shoot(page, "library")

    grid.get_by_text("coffee.jpg").click()
    expect(page.get_by_role("heading", name="coffee.jpg")).to_be_visible()
    page.get_by_role("button", name="Find similar").click()
    expect(page.get_by_role("heading", name="Similar images")).to_be_visible()
    shoot(page, "image-detail")

    page.get_by_role("link", name="Search").click()
    page.locator("input[type=file]").set_input_files(str(query))
    results = page.locator("#results li")
    expect(results.first).to_be_visible(timeout=20_000)
    expect(results.first.locator(".name")).to_have_text("coffee.jpg")
    # The edited copy is geometrically verified, and the page says so.
    expect(results.first.locator(".badge.verified")).to_have_text("verified copy")
    shoot(page, "search")

    page.get_by_role("link", name="Tenant admin").click()
    expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    page.get_by_label("New API key name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#secret")
    expect(secret).to_contain_text("dl_")
    key = secret.inner_text()
    shoot(page, "tenant-admin")
    assert running.http.get("/api/auth/me", headers={"X-API-Key": key}).status_code == 200
    page.locator("tr[data-key='laptop']").get_by_role("button", name="Revoke").click()
    expect(page.locator("tr[data-key='laptop'] td").nth(3)).to_have_text("revoked")
    assert running.http.get("/api/auth/me", headers={"X-API-Key": key}).status_code == 401

    # A second tenant sees none of the first tenant's images.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("link", name="Create a tenant").first.click()
    page.get_by_label("Organisation name").fill("Other Co")
    page.get_by_label("Your email").fill("owner@other.test")
    page.get_by_label("Password (8 characters or more)").fill("correct horse battery")
    page.get_by_role("button", name="Create tenant").click()
    expect(page.get_by_role("heading", name="Upload")).to_be_visible()
    page.get_by_role("link", name="Library").click()
    expect(page.get_by_text("0 images")).to_be_visible()
    page.get_by_role("link", name="Search").click()
    page.locator("input[type=file]").set_input_files(str(query))
    expect(page.locator("#no-results")).to_be_visible(timeout=20_000)
    assert not errors, errors


def test_system_admin_pages(running: Running, browser) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    create_admin(running, "root@deeplens.test", "root-password-1")
    running.http.post(
        "/api/tenants",
        json={
            "name": "Listed",
            "adminEmail": "o@listed.test",
            "adminPassword": "correct horse battery",
        },
    )
    page = browser.new_context(viewport=SIZES["desktop"]).new_page()
    page.goto(running.url + "/#/login")
    page.get_by_label("Email", exact=True).fill("root@deeplens.test")
    page.get_by_label("Password", exact=True).fill("root-password-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="System admin")).to_be_visible()
    expect(page.get_by_role("cell", name="listed", exact=True)).to_be_visible()
    shoot(page, "system-admin")
    page.get_by_role("button", name="Suspend").first.click()
    expect(page.get_by_role("button", name="Reactivate").first).to_be_visible()

    # The model lifecycle panel: start a migration, watch its progress, abandon it.
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    expect(page.locator("#active-model")).to_have_text("efficientnet-lite0:gem:224")
    page.get_by_label("Target model").fill("efficientnet-lite0:gem:320")
    page.get_by_role("button", name="Migrate").click()
    expect(page.get_by_text("migrating to")).to_be_visible()
    expect(page.locator("#models-total")).to_contain_text("0 remaining", timeout=60_000)
    shoot(page, "system-models")
    page.get_by_role("button", name="Cleanup").click()
    expect(page.get_by_text("migrating to")).to_have_count(0)
    expect(page.locator("#active-model")).to_have_text("efficientnet-lite0:gem:224")
