"""Issue 13's findings, one test each (each failed on the code before the fix): event routes,
owner protection, settings null, operator-only settings, slug leak, login throttling that
cannot lock out the owner, proxy headers, sign-up rate, collections, multipart, body limits,
API docs without a CDN."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from events.codec import Event, encode_binary
from tests.conftest import Platform, make_platform
from tests.integration.test_tiers import sysadmin
from tests.photos import encode, photo

pytestmark = pytest.mark.integration


def identity_platform(database_url: str, tmp_path: Path, **env: str) -> Platform:
    """The auth and tenants functions only, with these settings."""
    return make_platform(database_url, tmp_path, only=["auth", "tenants"], env=env)


def count(p: Platform, sql: str) -> int:
    with p.container.db.tx() as conn:
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


# --- event endpoints ---------------------------------------------------------------------


def test_event_routes_refuse_callers_without_the_broker_token(platform: Platform) -> None:
    p = platform
    t = p.signup()
    # The example: a failed event injected into tenant A's list without credentials.
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "x1",
        "ce-source": "/a",
        "ce-type": "io.deeplens.image.uploaded.v1",
        "ce-tenantid": t["tenant"]["id"],
        "content-type": "application/json",
    }
    for auth in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic eDp5"}):
        r = p.client.post("/events/dead-letter", headers={**headers, **auth}, content=b"{}")
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "event_sender_required"
    assert count(p, "SELECT count(*) FROM failed_events") == 0
    tick = Event(type="dev.knative.sources.ping", source="/ping", data={})
    h, body = encode_binary(tick)
    for path in ("/events/sweeper", "/events/index-vector", "/events/process-image"):
        assert p.client.post(path, headers=h, content=body).status_code == 401
    r = p.client.post("/events/dead-letter", headers={**headers, **p.event_headers}, content=b"{}")
    assert r.status_code == 202
    assert count(p, "SELECT count(*) FROM failed_events") == 1
    # ... and they are not part of the public API's document.
    paths = p.client.get("/openapi.json").json()["paths"]
    assert not [x for x in paths if x.startswith("/events/")]


def test_index_vector_rechecks_space_against_the_database(platform: Platform) -> None:
    from events.codec import from_json
    from tests.integration.test_pipeline import deliver, queued, state, upload

    p = platform
    t = p.signup()
    image_id = upload(p, t, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    event = from_json(queued(p)[0]["event"])
    _, event = deliver(p, "/events/process-image", event, "binary")  # type: ignore[assignment]
    _, extracted = deliver(p, "/events/extract", event, "binary")  # type: ignore[arg-type]
    assert extracted is not None
    forged = dict(extracted.data)
    forged["space"] = "attacker_space"
    ev = Event(type=extracted.type, source="/x", data=forged, subject=extracted.subject)
    code, reply = deliver(p, "/events/index-vector", ev, "binary")
    assert code == 202 and reply is None
    assert "attacker_space" not in {s.name for s in p.container.vectors.spaces()}
    assert state(p, image_id)[0] == "extracted"


# --- tenants and users -------------------------------------------------------------------


def test_admin_cannot_deactivate_demote_or_delete_the_owner(identity: Platform) -> None:
    p = identity
    owner = p.signup("Owned")
    tid = owner["tenant"]["id"]
    r = p.client.post(
        f"/api/tenants/{tid}/users",
        headers=owner["headers"],
        json={"email": "admin@owned.test", "role": "Admin", "password": "admin-password"},
    )
    assert r.status_code == 201
    login = p.client.post(
        "/api/auth/login", json={"email": "admin@owned.test", "password": "admin-password"}
    )
    admin = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    owner_id = owner["user"]["id"]
    for call in (
        lambda: p.client.delete(f"/api/tenants/{tid}/users/{owner_id}", headers=admin),
        lambda: p.client.put(
            f"/api/tenants/{tid}/users/{owner_id}", headers=admin, json={"isActive": False}
        ),
        lambda: p.client.put(
            f"/api/tenants/{tid}/users/{owner_id}", headers=admin, json={"role": "User"}
        ),
    ):
        r = call()
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_role"
    me = p.client.get("/api/auth/me", headers=owner["headers"]).json()
    assert me["user"]["isActive"] is True and me["user"]["role"] == "TenantOwner"


def test_settings_null_is_a_400_and_changes_nothing(identity: Platform) -> None:
    p = identity
    t = p.signup()
    tid = t["tenant"]["id"]
    for field in ("settings", "name"):
        r = p.client.put(f"/api/tenants/{tid}", headers=t["headers"], json={field: None})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert p.client.get("/api/auth/me", headers=t["headers"]).status_code == 200
    assert p.client.get(f"/api/tenants/{tid}", headers=t["headers"]).json()["settings"] == {}
    # description and domain may be cleared.
    r = p.client.put(f"/api/tenants/{tid}", headers=t["headers"], json={"description": None})
    assert r.status_code == 200


def test_operator_only_settings_are_kept_from_tenants(identity: Platform) -> None:
    p = identity
    root = sysadmin(p)
    t = p.signup()
    tid = t["tenant"]["id"]
    r = p.client.put(
        f"/api/tenants/{tid}", headers=t["headers"], json={"settings": {"isolatedVectors": True}}
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "operator_only_setting"
    r = p.client.put(
        f"/api/tenants/{tid}", headers=root, json={"settings": {"isolatedVectors": True}}
    )
    assert r.status_code == 200
    # The tenant's own settings change keeps the operator's grant.
    r = p.client.put(
        f"/api/tenants/{tid}", headers=t["headers"], json={"settings": {"theme": "dark"}}
    )
    assert r.status_code == 200
    assert r.json()["settings"] == {"theme": "dark", "isolatedVectors": True}


def test_register_does_not_reveal_whether_a_slug_exists(identity: Platform) -> None:
    p = identity
    t = p.signup("Closed Shop")
    body = {"email": "new@example.com", "password": "password-123"}
    known = p.client.post("/api/auth/register", json={**body, "tenantSlug": t["tenant"]["slug"]})
    unknown = p.client.post("/api/auth/register", json={**body, "tenantSlug": "no-such-slug"})
    assert known.status_code == unknown.status_code == 403
    assert known.json() == unknown.json()


def test_api_key_for_an_unknown_tenant_is_404(identity: Platform) -> None:
    p = identity
    root = sysadmin(p)
    r = p.client.post(f"/api/tenants/{uuid.uuid4()}/api-keys", headers=root, json={"name": "k"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"


# --- sign-in and sign-up -----------------------------------------------------------------


def test_login_throttling_cannot_lock_out_the_owner(database_url: str, tmp_path: Path) -> None:
    p = make_platform(
        database_url,
        tmp_path,
        only=["auth", "tenants"],
        env={
            "DEEPLENS_LOGIN_MAX_FAILURES_PER_ACCOUNT": "3",
            "DEEPLENS_TRUSTED_PROXIES": "127.0.0.0/8",
        },
    )
    # Requests arrive through a proxy on 127.0.0.1 that says who the client is.
    via_proxy = TestClient(p.fn.handle, client=("127.0.0.1", 40000))
    try:
        t = p.signup()
        p.container.throttle.max_delay = 0.5  # keep the test short

        def login(password: str, address: str) -> Any:
            return via_proxy.post(
                "/api/auth/login",
                headers={"X-Forwarded-For": address},
                json={"email": t["email"], "password": password},
            )

        for _ in range(3):
            assert login("wrong-password", "203.0.113.9").status_code == 401
        # The attacker's address is refused for this account ...
        r = login("wrong-password", "203.0.113.9")
        assert r.status_code == 429 and r.json()["error"]["code"] == "login_throttled"
        # ... and the owner, elsewhere, still signs in (after a short, progressive delay).
        assert p.container.throttle.delay(t["email"]) > 0
        assert login(t["password"], "198.51.100.7").status_code == 200
    finally:
        p.fn.stop()


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    database_url: str, tmp_path: Path
) -> None:
    from shared.clientip import parse_proxies, resolve

    proxies = parse_proxies("10.0.0.0/8, 192.0.2.1")
    assert resolve("203.0.113.5", "1.2.3.4", proxies) == "203.0.113.5"  # not a proxy: ignored
    assert resolve("10.1.2.3", "1.2.3.4, 10.9.9.9", proxies) == "1.2.3.4"
    assert resolve("192.0.2.1", "spoofed, 198.51.100.2", proxies) == "198.51.100.2"
    assert resolve("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"
    # Without a trusted proxy, a client that varies X-Forwarded-For is still one address.
    p = identity_platform(database_url, tmp_path, DEEPLENS_LOGIN_MAX_FAILURES_PER_ADDRESS="4")
    try:
        codes = [
            p.client.post(
                "/api/auth/login",
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
                json={"email": f"u{i}@example.com", "password": "wrong-password"},
            ).status_code
            for i in range(6)
        ]
        assert codes[:4] == [401] * 4 and codes[4:] == [429, 429]
    finally:
        p.fn.stop()


def test_signups_are_rate_limited_per_address(database_url: str, tmp_path: Path) -> None:
    p = identity_platform(database_url, tmp_path, DEEPLENS_SIGNUPS_PER_ADDRESS_PER_HOUR="3")
    try:
        codes = []
        for i in range(5):
            r = p.client.post(
                "/api/tenants",
                json={
                    "name": f"Spam {i}",
                    "adminEmail": f"s{i}@example.com",
                    "adminPassword": "password-123",
                },
            )
            codes.append(r.status_code)
        assert codes == [201, 201, 201, 429, 429]
        assert r.json()["error"]["code"] == "signup_throttled" and "Retry-After" in r.headers
        assert count(p, "SELECT count(*) FROM tenants") == 3
    finally:
        p.fn.stop()


def test_self_registrations_count_as_signups_per_address(database_url: str, tmp_path: Path) -> None:
    """Each registration costs a bcrypt hash: an address that registered its hour's worth of
    accounts gets 429 with nothing created (adversarial review: register had no limit)."""
    p = identity_platform(database_url, tmp_path, DEEPLENS_SIGNUPS_PER_ADDRESS_PER_HOUR="2")
    try:
        t = p.signup()  # the first sign-up of this address
        tid = t["tenant"]["id"]
        settings = {"settings": {"allowSelfRegistration": True}}
        assert p.client.put(f"/api/tenants/{tid}", headers=t["headers"], json=settings).is_success
        slug = t["tenant"]["slug"]
        answers = [
            p.client.post(
                "/api/auth/register",
                json={"email": f"self{n}@example.com", "password": "pw-123456", "tenantSlug": slug},
            )
            for n in range(3)
        ]
        assert [a.status_code for a in answers] == [201, 429, 429]
        r = answers[-1]
        assert r.json()["error"]["code"] == "signup_throttled"
        assert count(p, "SELECT count(*) FROM users") == 2  # the owner and self0
    finally:
        p.fn.stop()


def test_a_search_query_over_the_operators_pixel_limit_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    """DEEPLENS_MAX_IMAGE_PIXELS bounds queries as it bounds uploads: search by image decoded
    a query three times with only the built-in 50 MP limit (adversarial review)."""
    p = make_platform(database_url, tmp_path, env={"DEEPLENS_MAX_IMAGE_PIXELS": "100000"})
    try:
        t = p.signup()
        small = encode(photo("coffee.png").resize((300, 200)), "PNG")
        big = encode(photo("coffee.png").resize((400, 300)), "PNG")
        ok = p.client.post(
            "/api/images/search", headers=t["headers"], files={"file": ("q.png", small)}
        )
        assert ok.status_code == 200, ok.text
        r = p.client.post(
            "/api/images/search", headers=t["headers"], files={"file": ("q.png", big)}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_many_pixels"
        assert count(p, "SELECT coalesce(sum(searches), 0) FROM usage_daily") == 1
    finally:
        p.fn.stop()


# --- uploads and bodies ------------------------------------------------------------------


def test_two_file_parts_are_refused_not_half_taken(platform: Platform) -> None:
    p = platform
    t = p.signup()
    blob = encode(photo("coffee.png"))
    r = p.client.post(
        "/api/images/upload",
        headers=t["headers"],
        files=[("file", ("a.jpg", blob)), ("file", ("b.jpg", blob))],
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_files"
    assert count(p, "SELECT count(*) FROM images") == 0


async def _asgi(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, dict[str, Any], int]:
    """Call the ASGI app directly; returns status, JSON body and the body bytes it read."""
    read = 0
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        nonlocal read
        if not pending:
            await asyncio.sleep(3600)
        chunk = pending.pop(0)
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "root_path": "",
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body or b"null"), read


def test_upload_is_authenticated_before_its_body_is_read(platform: Platform) -> None:
    chunk = b"x" * (1024 * 1024)
    status, body, read = asyncio.run(
        _asgi(
            platform.fn.handle,
            "POST",
            "/api/images/upload",
            [(b"content-type", b"multipart/form-data; boundary=zzz")],
            [chunk] * 15,
        )
    )
    assert status == 401 and body["error"]["code"] == "missing_credentials"
    assert read == 0


def test_chunked_body_over_the_limit_is_413(platform: Platform) -> None:
    t = platform.signup()
    limit = platform.container.settings.max_upload_bytes
    head = (
        b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    chunk = b"x" * (1024 * 1024)
    status, body, _ = asyncio.run(
        _asgi(
            platform.fn.handle,
            "POST",
            "/api/images/upload",
            [
                (b"content-type", b"multipart/form-data; boundary=zzz"),
                (b"authorization", t["headers"]["Authorization"].encode()),
            ],
            [head] + [chunk] * (limit // len(chunk) + 3),
        )
    )
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert count(platform, "SELECT count(*) FROM images") == 0


def test_docs_are_self_hosted_with_a_csp(identity: Platform) -> None:
    r = identity.client.get("/docs")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "http" not in r.text.replace("http-equiv", "")  # no external URL at all
    js = identity.client.get("/docs/app.js")
    assert js.status_code == 200 and "openapi.json" in js.text
    assert identity.client.get("/redoc").status_code == 404


def test_retry_of_an_upload_whose_answer_was_lost_restarts_it_at_once(platform: Platform) -> None:
    """The process died after the row was written, before the object and the event: the
    client's retry (same bytes) stores the original and emits again, no sweeper wait."""
    from tests.integration.test_pipeline import queued, upload

    p = platform
    t = p.signup()
    blob = encode(photo("coffee.png"))
    first = upload(p, t, "a.jpg", blob).json()
    bucket = t["tenant"]["minioBucketName"]
    with p.container.db.tx() as conn:
        conn.execute("DELETE FROM broker_deliveries")
    p.container.storage.delete(bucket, f"images/{first['imageId']}/original")
    again = upload(p, t, "a.jpg", blob)
    assert again.status_code == 200 and again.json()["imageId"] == first["imageId"]
    [delivery] = queued(p)
    assert delivery["event"]["data"]["imageId"] == first["imageId"]
    assert p.container.storage.get(bucket, f"images/{first['imageId']}/original") == blob
