"""/metrics on a function instance: Prometheus text, protected by a bearer token when one is
configured, absent when metrics are off; 404s of unknown paths do not become labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_platform
from tests.metrics_scrape import Scrape, assert_bounded_labels, platform_routes

pytestmark = pytest.mark.integration


def test_token_protects_the_scrape(database_url: str, tmp_path: Path) -> None:
    p = make_platform(
        database_url, tmp_path, only=["auth", "tenants"], env={"DEEPLENS_METRICS_TOKEN": "s3cr3t"}
    )
    try:
        assert p.client.get("/metrics").status_code == 401
        bad = p.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        r = p.client.get("/metrics", headers={"Authorization": "Bearer s3cr3t"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=")
        assert "deeplens_tenants" in r.text
    finally:
        p.fn.stop()


def test_unknown_paths_and_ids_stay_out_of_labels(database_url: str, tmp_path: Path) -> None:
    p = make_platform(database_url, tmp_path, only=["auth", "tenants"])
    try:
        t = p.signup()
        tid = t["tenant"]["id"]
        for path in (f"/no/such/{tid}", f"/api/tenants/{tid}", "/api/tenants/slug/acme"):
            p.client.get(path, headers=t["headers"])
        m = Scrape(p.client.get("/metrics").text)
        assert m.value("deeplens_http_requests_total", route="unmatched", status="404") >= 1
        assert m.value("deeplens_http_requests_total", route="/api/tenants/{tenant_id}") >= 1
        assert m.value("deeplens_http_requests_total", route="/api/tenants/slug/{slug}") >= 1
        assert_bounded_labels(m, platform_routes())
    finally:
        p.fn.stop()


def test_metrics_off(database_url: str, tmp_path: Path) -> None:
    p = make_platform(database_url, tmp_path, only=["auth"], env={"DEEPLENS_METRICS": "false"})
    try:
        assert p.client.get("/metrics").status_code == 404
    finally:
        p.fn.stop()
    on = make_platform(database_url, tmp_path, only=["auth"])
    try:
        assert on.client.get("/metrics").status_code == 200
    finally:
        on.fn.stop()
