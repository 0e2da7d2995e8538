"""Observability of the running platform (``deeplens up``, over HTTP): after a user's flow —
sign up, a wrong then a right password, a refresh and a replayed refresh token, throttled
sign-ins, a refused extra user, 5 uploads, one failed upload, a search — ``/metrics`` shows
every family with the right counts and only bounded labels; each image's stages are one
trace; the logs are JSON lines with trace and tenant ids and hold no secret."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import start_platform, wait_all
from tests.metrics_scrape import Scrape, assert_bounded_labels, platform_routes
from tests.photos import edits, encode, photos
from tests.promql import assert_exposed

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery staple"


def test_flow_metrics_traces_and_logs(database_url: str, tmp_path: Path) -> None:
    traces = tmp_path / "spans.jsonl"
    run = start_platform(
        tmp_path / "data",
        database_url=database_url,
        extra_env={
            "DEEPLENS_TRACES_FILE": str(traces),
            "DEEPLENS_LOGIN_MAX_FAILURES_PER_ACCOUNT": "3",
            "DEEPLENS_LOG_FORMAT": "json",
        },
    )
    secrets: list[str] = [PASSWORD]
    try:
        http = run.http
        r = http.post(
            "/api/tenants",
            json={"name": "Obs Co", "adminEmail": "owner@obs.test", "adminPassword": PASSWORD},
        )
        assert r.status_code == 201, r.text
        tenant = r.json()
        tid = tenant["tenant"]["id"]
        secrets += [tenant["accessToken"], tenant["refreshToken"]]
        # A wrong, then the right password.
        bad = {"email": "owner@obs.test", "password": "not the password"}
        assert http.post("/api/auth/login", json=bad).status_code == 401
        r = http.post("/api/auth/login", json={"email": "owner@obs.test", "password": PASSWORD})
        assert r.status_code == 200
        pair = r.json()
        secrets += [pair["accessToken"], pair["refreshToken"]]
        auth = {"Authorization": f"Bearer {pair['accessToken']}"}
        # Rotate once; then replay the rotated token (reuse detection).
        r = http.post("/api/auth/refresh", json={"refreshToken": pair["refreshToken"]})
        assert r.status_code == 200
        secrets += [r.json()["accessToken"], r.json()["refreshToken"]]
        r = http.post("/api/auth/refresh", json={"refreshToken": pair["refreshToken"]})
        assert r.status_code == 401 and r.json()["error"]["code"] == "refresh_token_reused"
        # Throttling: 3 failures for an unknown account, then the 4th attempt is refused.
        ghost = {"email": "ghost@obs.test", "password": "whatever it is"}
        assert [http.post("/api/auth/login", json=ghost).status_code for _ in range(4)] == [
            401,
            401,
            401,
            429,
        ]
        # Users quota: the Free tier allows 5 users, the owner is one.
        r = http.post("/api/auth/login", json={"email": "owner@obs.test", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        secrets += [r.json()["accessToken"], r.json()["refreshToken"]]
        codes = []
        for i in range(5):
            r = http.post(
                f"/api/tenants/{tid}/users",
                headers=auth,
                json={
                    "email": f"user{i}@obs.test",
                    "role": "User",
                    "password": f"pw-{i}-{PASSWORD}",
                },
            )
            codes.append(r.status_code)
            secrets.append(f"pw-{i}-{PASSWORD}")
        assert codes == [201, 201, 201, 201, 403], codes
        key = http.post(f"/api/tenants/{tid}/api-keys", headers=auth, json={"name": "obs"})
        assert key.status_code == 201
        secrets.append(key.json()["key"])
        kh = {"X-API-Key": key.json()["key"]}

        originals = list(photos().items())[:5]
        ids = set()
        for name, img in originals:
            r = http.post(
                "/api/images/upload", headers=kh, files={"file": (f"{name}.jpg", encode(img))}
            )
            assert r.status_code == 202, r.text
            ids.add(r.json()["imageId"])
        failed = http.post(
            "/api/images/upload", headers=kh, files={"file": ("broken.jpg", b"\xff\xd8 not a jpeg")}
        )
        assert 400 <= failed.status_code < 500
        failed_status = str(failed.status_code)
        assert set(wait_all(http, kh, ids).values()) == {"indexed"}
        r = http.post(
            "/api/images/search",
            headers=kh,
            files={"file": ("q.jpg", encode(edits(originals[0][1])["crop"]))},
            data={"threshold": "0", "limit": "3"},
        )
        assert r.status_code == 200 and len(r.json()) == 3

        # Wait for the broker to settle the last replies (image.indexed has no subscriber).
        deadline = time.monotonic() + 30
        while True:
            m = Scrape(http.get("/metrics").text)
            if m.value("deeplens_broker_backlog_events") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(5.5)  # the state gauges are cached for 5 s
        m = Scrape(http.get("/metrics").text)
        assert http.get("/metrics").headers["content-type"].startswith("text/plain")

        # HTTP RED by route template.
        upload = "/api/images/upload"
        assert m.value("deeplens_http_requests_total", route=upload, status="202") == 5
        assert m.value("deeplens_http_requests_total", route=upload, status=failed_status) == 1
        assert m.value("deeplens_http_request_duration_seconds_count", route=upload) == 6
        assert (
            m.value("deeplens_http_request_duration_seconds_count", route=upload, status="202") == 5
        )
        assert m.value("deeplens_http_requests_total", route="/api/images", status="200") >= 1
        assert m.value("deeplens_http_requests_total", route="/api/auth/login", status="401") == 4
        # Identity.
        assert m.value("deeplens_login_attempts_total", result="success") == 2
        assert m.value("deeplens_login_attempts_total", result="failure") == 4
        assert m.value("deeplens_login_attempts_total", result="throttled") == 1
        assert m.value("deeplens_login_throttled_total") == 1
        assert m.value("deeplens_token_refreshes_total", result="success") == 1
        assert m.value("deeplens_token_refreshes_total", result="reused") == 1
        assert m.value("deeplens_refresh_token_reuse_total") == 1
        assert m.value("deeplens_quota_refusals_total", kind="users") == 1
        # Database.
        assert (
            m.value("deeplens_db_query_duration_seconds_count", table="users", operation="SELECT")
            > 0
        )
        assert (
            m.value("deeplens_db_query_duration_seconds_count", table="images", operation="UPDATE")
            >= 15
        )
        assert m.value("deeplens_db_pool_connections", state="idle") >= 0
        assert m.value("deeplens_db_pool_waiting") == 0
        # Pipeline.
        for stage in ("process-image", "extract", "index-vector"):
            assert m.value("deeplens_pipeline_stage_total", stage=stage, outcome="ok") == 5, stage
            assert m.value("deeplens_pipeline_stage_duration_seconds_count", stage=stage) >= 5
        assert m.value("deeplens_upload_to_indexed_seconds_count") == 5
        assert m.value("deeplens_images", status="indexed") == 5
        assert m.value("deeplens_images", status="failed") == 0
        # Broker.
        for etype, trigger in [
            ("io.deeplens.image.uploaded.v1", "process-image-on-uploaded"),
            ("io.deeplens.image.validated.v1", "extract-on-validated"),
            ("io.deeplens.features.extracted.v1", "index-vector-on-extracted"),
        ]:
            assert m.value("deeplens_events_published_total", type=etype) == 5
            assert m.value("deeplens_events_delivered_total", type=etype, trigger=trigger) == 5
        assert m.value("deeplens_events_published_total", type="io.deeplens.image.indexed.v1") == 5
        assert m.value("deeplens_broker_backlog_events") == 0
        assert m.value("deeplens_broker_oldest_pending_age_seconds") == 0
        assert m.value("deeplens_failed_events") == 0
        # Extraction and search: 5 images and 1 query embedded.
        assert m.value("deeplens_extract_images_total") == 6
        assert m.value("deeplens_extract_batch_size_count") == 6
        assert m.value("deeplens_extract_model_duration_seconds_count") == 6
        assert m.value("deeplens_search_duration_seconds_count", kind="image") == 1
        assert m.value("deeplens_search_results_count") == 1
        assert m.value("deeplens_search_results_sum") == 3
        # Tenants by status and tier.
        assert m.value("deeplens_tenants", status="Active", tier="Free") == 1
        # The label rule.
        assert_bounded_labels(m, platform_routes())
        # Every metric the dashboards and alert rules query is exposed by this live scrape.
        assert_exposed(m.names())

        # One trace per image: upload → process-image → extract → index-vector.
        spans = [json.loads(line) for line in traces.read_text().splitlines()]
        by_id = {s["span_id"]: s for s in spans}

        def chain(s: dict[str, object]) -> list[str]:
            names = []
            cur: dict[str, object] | None = s
            while cur is not None:
                names.append(str(cur["name"]))
                cur = by_id.get(str(cur["parent_id"])) if cur["parent_id"] else None
            return names

        for image_id in ids:
            stages = {
                s["name"]: s
                for s in spans
                if s["attributes"].get("image.id") == image_id
                and s["name"] in ("image.upload", "image.process", "image.extract", "image.index")
            }
            assert set(stages) >= {"image.process", "image.extract", "image.index"}, stages
            assert len({s["trace_id"] for s in stages.values()}) == 1, image_id
            for name in ("image.process", "image.extract", "image.index"):
                # each stage hangs under its event endpoint's server span, which continues
                # the trace of the upload request
                path = chain(stages[name])
                assert path[-1] == "POST /api/images/upload", path
                assert any(p.startswith("POST /events/") for p in path), path
    finally:
        run.stop()

    # Logs: JSON lines, trace ids on request lines, tenant ids where known; no secret at all.
    text = run.log.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    docs = [json.loads(ln) for ln in lines]  # every line is JSON
    assert {"timestamp", "level", "logger", "message", "function"} <= set(docs[0])
    stage_lines = [d for d in docs if d["logger"] == "deeplens.pipeline"]
    assert len(stage_lines) >= 15
    for d in stage_lines:  # each names its trace, span, tenant and event
        assert d["tenant_id"] == tid and d["event_id"] and len(d["trace_id"]) == 32, d
        assert len(d["span_id"]) == 16
    traced = {d["trace_id"] for d in stage_lines}
    assert traced <= {s["trace_id"] for s in spans}
    keys = tmp_path / "data" / "keys"
    for key_file in keys.glob("*"):  # the dev signing key, the event senders' token
        body = key_file.read_text()
        secrets += [ln for ln in body.splitlines() if ln and not ln.startswith("-----")]
    assert any(p.name.endswith(".pem") for p in keys.glob("*"))
    for secret in secrets:
        assert secret not in text, "a secret reached the logs"
    assert "pw-0" not in text
