"""The identity system end to end on the real PostgreSQL, over the real ASGI handlers."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import Platform

pytestmark = pytest.mark.integration


def test_signup_login_me_refresh_rotation_reuse_and_logout(identity: Platform) -> None:
    c = identity.client
    t = identity.signup("Acme Photos")
    assert t["tenant"]["slug"] == "acme-photos"
    assert t["tenant"]["tier"] == "Free" and t["tenant"]["maxUsers"] == 5
    assert t["user"]["role"] == "TenantOwner"

    r = c.post("/api/auth/login", json={"email": t["email"], "password": t["password"]})
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert set(tokens) >= {"accessToken", "refreshToken", "expiresIn", "user"}

    me = c.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert me.status_code == 200
    assert me.json()["user"]["email"] == t["email"]
    assert me.json()["tenant"]["id"] == t["tenant"]["id"]

    r1 = c.post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert r1.status_code == 200
    new = r1.json()
    assert new["refreshToken"] != tokens["refreshToken"]

    # The old token no longer works, and presenting it revokes the new one too.
    again = c.post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]})
    assert again.status_code == 401
    assert again.json()["error"]["code"] == "refresh_token_reused"
    revoked = c.post("/api/auth/refresh", json={"refreshToken": new["refreshToken"]})
    assert revoked.status_code == 401

    # A fresh session, then logout revokes it.
    fresh = c.post("/api/auth/login", json={"email": t["email"], "password": t["password"]}).json()
    assert (
        c.post("/api/auth/logout", json={"refreshToken": fresh["refreshToken"]}).status_code == 204
    )
    after = c.post("/api/auth/refresh", json={"refreshToken": fresh["refreshToken"]})
    assert after.status_code == 401


def test_wrong_password_and_unknown_email_answer_the_same(identity: Platform) -> None:
    t = identity.signup()
    a = identity.client.post("/api/auth/login", json={"email": t["email"], "password": "nope-nope"})
    b = identity.client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "nope-nope"}
    )
    assert a.status_code == b.status_code == 401
    assert (
        a.json()
        == b.json()
        == {"error": {"code": "invalid_credentials", "message": "invalid email or password"}}
    )


def _forge(claims: dict[str, Any], key: Any, alg: str, kid: str | None) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


def test_bad_tokens_are_401(identity: Platform) -> None:
    t = identity.signup()
    token = t["accessToken"]
    good = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    me = "/api/auth/me"

    def status(tok: str) -> tuple[int, str]:
        r = identity.client.get(me, headers={"Authorization": f"Bearer {tok}"})
        return r.status_code, r.json()["error"]["code"] if r.status_code != 200 else ""

    assert status(token)[0] == 200
    # expired: signed by the real key
    keys = identity.container.keys
    expired = dict(good, exp=int(time.time()) - 10, iat=int(time.time()) - 100)
    private = keys._private  # the test is the operator here
    assert status(_forge(expired, private, "EdDSA", kid)) == (401, "token_expired")
    # tampered payload, original signature
    head, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["role"] = "SystemAdmin"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    assert status(f"{head}.{forged}.{sig}")[0] == 401
    # signed by another key with our kid
    other = ed25519.Ed25519PrivateKey.generate()
    assert status(_forge(good, other, "EdDSA", kid))[0] == 401
    # alg none
    none_tok = _forge(good, None, "none", kid)
    assert status(none_tok)[0] == 401
    # HS256 with the public key as secret (algorithm confusion)
    pub = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac  # noqa: E401

    hs_header = json.dumps({"alg": "HS256", "kid": kid}).encode()
    signing_input = base64.urlsafe_b64encode(hs_header).rstrip(b"=").decode() + "." + payload
    mac = (
        base64.urlsafe_b64encode(hmac.new(pub, signing_input.encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    assert status(f"{signing_input}.{mac}")[0] == 401
    # no credentials at all
    r = identity.client.get(me)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_credentials"


def test_tenant_isolation_and_roles(identity: Platform) -> None:
    c = identity.client
    a = identity.signup("Tenant A")
    b = identity.signup("Tenant B")
    # A reads B: 404, never 403 or data
    r = c.get(f"/api/tenants/{b['tenant']['id']}", headers=a["headers"])
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"
    assert (
        c.get(f"/api/tenants/slug/{b['tenant']['slug']}", headers=a["headers"]).status_code == 404
    )
    assert c.get(f"/api/tenants/{b['tenant']['id']}/users", headers=a["headers"]).status_code == 404
    assert c.get("/api/tenants", headers=a["headers"]).json()[0]["id"] == a["tenant"]["id"]
    assert len(c.get("/api/tenants", headers=a["headers"]).json()) == 1

    # An ordinary user of A gets 403 on admin-only routes.
    inv = c.post(
        f"/api/tenants/{a['tenant']['id']}/users",
        headers=a["headers"],
        json={"email": "user@example.com", "password": "user-password-1"},
    )
    assert inv.status_code == 201
    login = c.post(
        "/api/auth/login", json={"email": "user@example.com", "password": "user-password-1"}
    ).json()
    uh = {"Authorization": f"Bearer {login['accessToken']}"}
    r = c.post(f"/api/tenants/{a['tenant']['id']}/api-keys", headers=uh, json={"name": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_role"
    assert c.get(f"/api/tenants/{a['tenant']['id']}/users", headers=uh).status_code == 403
    # The owner cannot raise the tier (operator only).
    r = c.put(
        f"/api/tenants/{a['tenant']['id']}", headers=a["headers"], json={"tier": "Enterprise"}
    )
    assert r.status_code == 403
    r = c.put(f"/api/tenants/{a['tenant']['id']}", headers=a["headers"], json={"name": "A2"})
    assert r.status_code == 200 and r.json()["name"] == "A2"


def test_conflicts_are_409(identity: Platform) -> None:
    c = identity.client
    a = identity.signup("Same Name")
    b = identity.signup("Same Name")
    assert b["tenant"]["slug"] == "same-name-2"
    r = c.post(
        "/api/tenants",
        json={
            "name": "X",
            "slug": a["tenant"]["slug"],
            "adminEmail": "x@example.com",
            "adminPassword": "password-1",
        },
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    inv = {"email": a["email"].upper(), "password": "password-12"}
    r = c.post(f"/api/tenants/{a['tenant']['id']}/users", headers=a["headers"], json=inv)
    assert r.status_code == 409


def test_bad_requests_get_the_error_shape(identity: Platform) -> None:
    c = identity.client
    r = c.post(
        "/api/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = c.post("/api/auth/login", json={"email": "a@example.com"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    assert "password" in r.json()["error"]["message"]
    big = b'{"email": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    r = c.post("/api/auth/login", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = c.get("/api/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.post("/api/tenants", json={"name": "x", "adminEmail": "bad", "adminPassword": "short"})
    assert r.status_code == 422
    for body in (r.text,):
        assert "Traceback" not in body and "SELECT" not in body


def test_api_key_works_until_revoked(identity: Platform) -> None:
    c = identity.client
    a = identity.signup()
    tid = a["tenant"]["id"]
    r = c.post(f"/api/tenants/{tid}/api-keys", headers=a["headers"], json={"name": "ingest"})
    assert r.status_code == 201
    key, key_id = r.json()["key"], r.json()["apiKey"]["id"]
    assert key.startswith("dl_") and r.json()["apiKey"]["keyPrefix"] == key[:11]
    listed = c.get(f"/api/tenants/{tid}/api-keys", headers=a["headers"]).json()
    assert "key" not in listed[0] and "keyHash" not in listed[0]
    assert c.get("/api/auth/me", headers={"X-API-Key": key}).json()["via"] == "api_key"
    assert c.get("/api/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert c.get("/api/auth/me", headers={"X-API-Key": key[:-2] + "xx"}).status_code == 401
    assert (
        c.delete(f"/api/tenants/{tid}/api-keys/{key_id}", headers=a["headers"]).status_code == 204
    )
    r = c.get("/api/auth/me", headers={"X-API-Key": key})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_jwks_verifies_issued_tokens(identity: Platform) -> None:
    t = identity.signup()
    jwks = identity.client.get("/.well-known/jwks.json").json()
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(t["accessToken"], key.key, algorithms=["EdDSA"], audience="deeplens-api")
    assert claims["tid"] == t["tenant"]["id"] and claims["role"] == "TenantOwner"
    assert {"sub", "tid", "role", "exp", "iat", "jti", "iss", "aud"} <= set(claims)
