"""Tiers enforced on the real PostgreSQL: storage, users and daily API calls; sign-in
throttling; analytics; suspension; deletion and purge; collections; failed events."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from events.codec import Event, encode_binary
from shared.auth.principal import Principal
from shared.errors import PayloadTooLarge
from shared.usage import THUMBNAIL_RESERVE, seconds_to_utc_midnight
from tests.conftest import Platform, make_platform
from tests.integration.test_pipeline import deliver, queued, upload
from tests.photos import encode, photo, photos

pytestmark = pytest.mark.integration


def sysadmin(p: Platform) -> dict[str, str]:
    p.container.users.create_system_admin(email="root@deeplens.test", password="root-password-1")
    r = p.client.post(
        "/api/auth/login", json={"email": "root@deeplens.test", "password": "root-password-1"}
    )
    assert r.status_code == 200
    return {"Authorization": f"Bearer {r.json()['accessToken']}"}


def set_limits(p: Platform, root: dict[str, str], tenant_id: str, **limits: int) -> None:
    r = p.client.put(f"/api/tenants/{tenant_id}", headers=root, json=limits)
    assert r.status_code == 200, r.text


def rows(p: Platform, sql: str, *args: Any) -> Any:
    with p.container.db.tx() as conn:
        return conn.execute(sql, args).fetchall()


def test_storage_quota_refuses_with_nothing_stored_and_operator_raise_applies(
    platform: Platform,
) -> None:
    p = platform
    root = sysadmin(p)
    t = p.signup()
    blobs = [encode(img) for img in photos(["coffee.png", "chelsea.png", "rocket.jpg"]).values()]
    limit = len(blobs[0]) + len(blobs[1]) + 2 * THUMBNAIL_RESERVE + 100
    set_limits(p, root, t["tenant"]["id"], maxStorageBytes=limit)
    assert upload(p, t, "a.jpg", blobs[0]).status_code == 202
    assert upload(p, t, "b.jpg", blobs[1]).status_code == 202
    r = upload(p, t, "c.jpg", blobs[2])
    assert r.status_code == 413 and r.json()["error"]["code"] == "quota_storage"
    assert rows(p, "SELECT count(*) FROM images")[0][0] == 2
    bucket = p.container.storage.root / t["tenant"]["minioBucketName"]
    assert len(list(bucket.rglob("original"))) == 2
    set_limits(p, root, t["tenant"]["id"], maxStorageBytes=limit * 3)
    assert upload(p, t, "c.jpg", blobs[2]).status_code == 202


def test_storage_quota_holds_under_concurrent_uploads(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    t = p.signup()
    blob = encode(photo("astronaut.png"))
    set_limits(
        p, root, t["tenant"]["id"], maxStorageBytes=3 * (len(blob) + 4 + THUMBNAIL_RESERVE) + 10
    )
    who = Principal(
        tenant_id=uuid.UUID(t["tenant"]["id"]),
        role="TenantOwner",
        user_id=uuid.UUID(t["user"]["id"]),
    )

    def one(i: int) -> str:
        try:
            # Distinct bytes of equal length (a trailer after the JPEG's end marker), so no
            # upload is an exact duplicate of another.
            p.container.images.upload(who, filename=f"{i}.jpg", data=blob + b"%04d" % i)
            return "ok"
        except PayloadTooLarge as exc:
            return exc.code

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert results.count("ok") == 3 and results.count("quota_storage") == 5
    assert rows(p, "SELECT count(*) FROM images")[0][0] == 3


def test_user_quota(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    t = p.signup()
    tid = t["tenant"]["id"]
    set_limits(p, root, tid, maxUsers=2)
    ok = p.client.post(
        f"/api/tenants/{tid}/users",
        headers=t["headers"],
        json={"email": "u1@example.com", "password": "password-123"},
    )
    assert ok.status_code == 201
    over = p.client.post(
        f"/api/tenants/{tid}/users",
        headers=t["headers"],
        json={"email": "u2@example.com", "password": "password-123"},
    )
    assert over.status_code == 403 and over.json()["error"]["code"] == "quota_users"
    p.client.put(
        f"/api/tenants/{tid}",
        headers=t["headers"],
        json={"settings": {"allowSelfRegistration": True}},
    )
    reg = p.client.post(
        "/api/auth/register",
        json={
            "email": "self@example.com",
            "password": "password-123",
            "tenantSlug": t["tenant"]["slug"],
        },
    )
    assert reg.status_code == 403 and reg.json()["error"]["code"] == "quota_users"
    assert rows(p, "SELECT count(*) FROM users WHERE tenant_id = %s", tid)[0][0] == 2
    set_limits(p, root, tid, maxUsers=3)
    reg = p.client.post(
        "/api/auth/register",
        json={
            "email": "self@example.com",
            "password": "password-123",
            "tenantSlug": t["tenant"]["slug"],
        },
    )
    assert reg.status_code == 201 and reg.json()["user"]["role"] == "User"


def test_daily_api_call_quota(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    t = p.signup()
    set_limits(p, root, t["tenant"]["id"], maxApiCallsPerDay=5)
    codes = [p.client.get("/api/images", headers=t["headers"]).status_code for _ in range(5)]
    assert codes == [200] * 5
    r = p.client.get("/api/images", headers=t["headers"])
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_api_calls"
    retry = int(r.headers["Retry-After"])
    assert abs(retry - seconds_to_utc_midnight()) <= 5
    set_limits(p, root, t["tenant"]["id"], maxApiCallsPerDay=100)
    assert p.client.get("/api/images", headers=t["headers"]).status_code == 200


def test_call_counter_is_exact_under_8_concurrent_clients(platform: Platform) -> None:
    p = platform
    t = p.signup()
    tid = uuid.UUID(t["tenant"]["id"])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: [p.container.usage.count_call(tid) for _ in range(25)], range(8)))
    calls = rows(p, "SELECT api_calls FROM usage_daily WHERE tenant_id = %s", tid)[0][0]
    assert calls == 200


def test_login_throttling_kicks_in_and_expires(database_url: str, tmp_path: Path) -> None:
    p = make_platform(
        database_url,
        tmp_path,
        only=["auth", "tenants"],
        env={
            "DEEPLENS_LOGIN_MAX_FAILURES_PER_ACCOUNT": "3",
            "DEEPLENS_LOGIN_FAILURE_WINDOW_SECONDS": "2",
        },
    )
    try:
        t = p.signup()
        login = lambda email, pw: p.client.post(  # noqa: E731
            "/api/auth/login", json={"email": email, "password": pw}
        )
        for _ in range(3):
            assert login(t["email"], "wrong-password").status_code == 401
            assert login("ghost@example.com", "wrong-password").status_code == 401
        known, ghost = login(t["email"], t["password"]), login("ghost@example.com", "x")
        assert known.status_code == ghost.status_code == 429
        assert known.json() == ghost.json()  # reveals nothing about the account
        assert known.json()["error"]["code"] == "login_throttled"
        assert 1 <= int(known.headers["Retry-After"]) <= 3
        time.sleep(2.2)
        assert login(t["email"], t["password"]).status_code == 200
    finally:
        p.fn.stop()


def test_analytics_match_what_happened_and_are_scoped(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    a, b = p.signup("Alpha"), p.signup("Beta")
    calls = 0
    for name in ("coffee.png", "chelsea.png"):
        assert upload(p, a, f"{name}.jpg", encode(photo(name))).status_code == 202
        calls += 1
    event = list(queued(p))[0]
    from events.codec import from_json

    ev = from_json(event["event"])
    for path in ("/events/process-image", "/events/extract", "/events/index-vector"):
        _, ev = deliver(p, path, ev, "binary")  # type: ignore[assignment]
    r = p.client.post(
        "/api/images/search", headers=a["headers"], json={"vector": [0.1] * 1280, "threshold": 0}
    )
    assert r.status_code == 200
    calls += 1
    for _ in range(3):
        p.client.get("/api/images", headers=a["headers"])
        calls += 1
    # Only the data plane (/api/images/*) is metered: reading analytics is not a call.
    got = p.client.get(f"/api/tenants/{a['tenant']['id']}/analytics", headers=a["headers"])
    assert got.status_code == 200
    stats = got.json()
    assert stats["imageCount"] == 2 and stats["uploadsToday"] == 2
    assert stats["searchesToday"] == 1
    assert stats["apiCallsToday"] == calls
    assert stats["pipelineBacklog"] == {"uploaded": 1, "validated": 0, "extracted": 0}
    assert stats["storageUsed"] > 0 and stats["failedImages"] == 0
    assert stats["apiCallsLast30Days"][-1]["calls"] == calls
    # A's admin cannot see B; a plain user of A cannot see analytics; root sees both.
    assert (
        p.client.get(
            f"/api/tenants/{b['tenant']['id']}/analytics", headers=a["headers"]
        ).status_code
        == 404
    )
    p.client.post(
        f"/api/tenants/{a['tenant']['id']}/users",
        headers=a["headers"],
        json={"email": "plain@example.com", "password": "password-123"},
    )
    plain = p.client.post(
        "/api/auth/login", json={"email": "plain@example.com", "password": "password-123"}
    ).json()
    assert (
        p.client.get(
            f"/api/tenants/{a['tenant']['id']}/analytics",
            headers={"Authorization": f"Bearer {plain['accessToken']}"},
        ).status_code
        == 403
    )
    assert (
        p.client.get(f"/api/tenants/{b['tenant']['id']}/analytics", headers=root).json()[
            "imageCount"
        ]
        == 0
    )
    assert len(p.client.get("/api/tenants", headers=root).json()) == 2


def test_suspension_refuses_new_work_and_keeps_data(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    t = p.signup()
    image_id = upload(p, t, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    tid = t["tenant"]["id"]
    assert p.client.post(f"/api/tenants/{tid}/suspend", headers=t["headers"]).status_code == 403
    assert p.client.post(f"/api/tenants/{tid}/suspend", headers=root).status_code == 204
    r = p.client.get(f"/api/images/{image_id}", headers=t["headers"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"
    r = upload(p, t, "b.jpg", encode(photo("chelsea.png")))
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"
    r = p.client.post("/api/auth/login", json={"email": t["email"], "password": t["password"]})
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"
    assert (
        p.client.post("/api/auth/refresh", json={"refreshToken": t["refreshToken"]}).status_code
        == 401
    )
    assert p.client.post(f"/api/tenants/{tid}/reactivate", headers=root).status_code == 204
    assert p.client.get(f"/api/images/{image_id}", headers=t["headers"]).status_code == 200


def test_deleted_tenant_is_purged_by_the_sweeper_and_slug_reused(platform: Platform) -> None:
    p = platform
    t = p.signup("Gone Soon")
    other = p.signup("Stays")
    image_id = upload(p, t, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    upload(p, other, "b.jpg", encode(photo("coffee.png")))
    for d in queued(p):
        from events.codec import from_json

        ev = from_json(d["event"])
        for path in ("/events/process-image", "/events/extract", "/events/index-vector"):
            _, ev = deliver(p, path, ev, "binary")  # type: ignore[assignment]
    tid = t["tenant"]["id"]
    space = t["tenant"]["qdrantCollectionName"]
    assert p.container.vectors.count(space, tenant_id=uuid.UUID(tid)) == 1
    assert p.client.delete(f"/api/tenants/{tid}", headers=t["headers"]).status_code == 204
    assert p.client.get(f"/api/images/{image_id}", headers=t["headers"]).status_code in (401, 404)
    again = p.client.post(
        "/api/tenants",
        json={
            "name": "Gone Soon",
            "slug": "gone-soon",
            "adminEmail": "new@example.com",
            "adminPassword": "password-123",
        },
    )
    assert again.status_code == 201
    tick = Event(type="dev.knative.sources.ping", source="/ping", data={})
    h, body = encode_binary(tick)
    h.update(p.event_headers)
    r = p.client.post("/events/sweeper", headers=h, content=body)
    assert r.status_code == 202 and r.json()["tenantsPurged"] == 1
    assert not (p.container.storage.root / t["tenant"]["minioBucketName"]).exists()
    assert p.container.vectors.count(space, tenant_id=uuid.UUID(tid)) == 0
    assert p.container.vectors.count(space, tenant_id=uuid.UUID(other["tenant"]["id"])) == 1
    for table in ("tenants", "users", "images", "usage_daily"):
        column = "id" if table == "tenants" else "tenant_id"
        assert rows(p, f"SELECT count(*) FROM {table} WHERE {column} = %s", tid)[0][0] == 0


def test_collections_admin(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    t = p.signup()
    assert p.client.get("/api/collections", headers=t["headers"]).status_code == 403
    r = p.client.post("/api/collections/experiments", headers=root, json={"vectorSize": 64})
    assert r.status_code == 201
    assert (
        p.client.post(
            "/api/collections/experiments", headers=root, json={"vectorSize": 64}
        ).status_code
        == 409
    )
    listed = {c["name"]: c for c in p.client.get("/api/collections", headers=root).json()}
    assert listed["experiments"]["dimension"] == 64
    assert listed[t["tenant"]["qdrantCollectionName"]]["dimension"] == 1280
    in_use = t["tenant"]["qdrantCollectionName"]
    # The active space is never deleted, force or not, nor re-created with another size.
    for suffix in ("", "?force=true"):
        r = p.client.delete(f"/api/collections/{in_use}{suffix}", headers=root)
        assert r.status_code == 409 and r.json()["error"]["code"] == "collection_active"
    r = p.client.post(f"/api/collections/{in_use}", headers=root, json={"vectorSize": 64})
    assert r.status_code == 409 and r.json()["error"]["code"] == "collection_active"
    assert listed[in_use]["dimension"] == 1280
    assert p.client.delete("/api/collections/experiments", headers=root).status_code == 204


def test_failed_events_list_inspect_replay(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    a, b = p.signup("A"), p.signup("B")
    image_id = upload(p, a, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    from events.codec import from_json

    original = from_json(queued(p)[0]["event"])
    with p.container.db.tx() as conn:  # pretend it exhausted its retries
        conn.execute("DELETE FROM broker_deliveries")
    h, body = encode_binary(original)
    h.update({"ce-knativeerrorcode": "500", "ce-knativeerrordata": "boom", **p.event_headers})
    assert p.client.post("/events/dead-letter", headers=h, content=body).status_code == 202
    listed = p.client.get("/api/admin/failed-events", headers=a["headers"]).json()
    assert [x["eventId"] for x in listed] == [original.id] and listed[0]["error"] == "boom"
    assert p.client.get("/api/admin/failed-events", headers=b["headers"]).json() == []
    assert len(p.client.get("/api/admin/failed-events", headers=root).json()) == 1
    fid = listed[0]["id"]
    detail = p.client.get(f"/api/admin/failed-events/{fid}", headers=a["headers"]).json()
    assert detail["event"]["data"]["imageId"] == image_id
    assert p.client.get(f"/api/admin/failed-events/{fid}", headers=b["headers"]).status_code == 404
    replayed = p.client.post(f"/api/admin/failed-events/{fid}/replay", headers=a["headers"])
    assert replayed.status_code == 200 and replayed.json()["replayedAt"]
    [d] = queued(p)
    ev = from_json(d["event"])
    assert ev.id == original.id
    code, reply = deliver(p, "/events/process-image", ev, "binary")
    assert code == 200 and reply is not None


def test_tenant_cli(
    platform: Platform,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from shared.cli import main

    p = platform
    t = p.signup("Cli Co")
    monkeypatch.setenv("DEEPLENS_DATABASE_URL", database_url)
    monkeypatch.setenv("DEEPLENS_BCRYPT_ROUNDS", "4")
    assert main(["tenant", "set-tier", "cli-co", "Professional"]) == 0
    assert main(["tenant", "set-limit", "cli-co", "--calls", "3"]) == 0
    assert main(["tenant", "list"]) == 0
    out = capsys.readouterr().out
    assert "cli-co" in out and "Professional" in out
    for _ in range(3):
        assert p.client.get("/api/images", headers=t["headers"]).status_code == 200
    assert p.client.get("/api/images", headers=t["headers"]).status_code == 429
    assert main(["tenant", "suspend", "cli-co"]) == 0
    # The CLI is another process in real use: its change reaches this one by NOTIFY (~1 ms).
    deadline = time.monotonic() + 1.0
    while (r := p.client.get("/api/images", headers=t["headers"])).status_code != 403:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.005)
    assert r.json()["error"]["code"] == "tenant_suspended"
    assert main(["tenant", "reactivate", "cli-co"]) == 0
    assert main(["tenant", "usage", "cli-co"]) == 0
    assert "apiCallLimit     3" in capsys.readouterr().out
