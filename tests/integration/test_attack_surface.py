"""The standing attack suite, part 1: the route inventory and the cross-tenant matrix.

- Every route of every function is either public by the written list below, or refuses a
  request without credentials (401) — event routes and /extract included. A new route that is
  neither fails here until someone decides.
- The cross-tenant matrix is generated from the OpenAPI document: every operation with an id in
  its path, called by tenant B (owner JWT and API key) with tenant A's ids: zero 2xx, and A's
  data is unchanged afterwards.
"""

from __future__ import annotations

import importlib
import re
import uuid
from typing import Any

import pytest
from fastapi.routing import APIRoute

from functions import FUNCTIONS
from tests.conftest import Platform
from tests.integration.test_pipeline import upload
from tests.integration.test_tiers import sysadmin
from tests.photos import encode, photo

pytestmark = pytest.mark.integration

# The written list: routes anyone may call. Everything else needs credentials.
PUBLIC = {
    ("POST", "/api/tenants"),  # sign-up (rate-limited per address)
    ("POST", "/api/auth/login"),  # throttled per account+address
    ("POST", "/api/auth/register"),  # only into tenants that allow it
    ("POST", "/api/auth/refresh"),  # needs a refresh token in the body
    ("POST", "/api/auth/logout"),  # needs a refresh token in the body
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/models"),  # the model registry (names, dimensions)
    ("GET", "/health"),
    ("GET", "/"),  # the web UI's page and its static files
    ("GET", "/static/{name}"),
    ("GET", "/docs"),
    ("GET", "/docs/app.js"),
    ("GET", "/docs/docs.css"),
    ("GET", "/openapi.json"),
}


def _routes() -> list[tuple[str, str, str]]:
    """(function, method, path) for every route of every function module."""
    out = []
    for name, module in FUNCTIONS.items():
        for route in importlib.import_module(module).router.routes:
            assert isinstance(route, APIRoute), route
            for method in sorted((route.methods or set()) - {"HEAD"}):
                out.append((name, method, route.path))
    return out


def _fill(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}", lambda m: "256" if m.group(0) == "{size}" else str(uuid.uuid4()), path
    )


def test_every_route_is_public_by_the_list_or_refuses_anonymous_callers(
    platform: Platform,
) -> None:
    p = platform
    routes = _routes()
    doc_routes = {("GET", "/docs"), ("GET", "/docs/app.js"), ("GET", "/docs/docs.css")}
    doc_routes |= {("GET", "/openapi.json")}
    known = {(m, path) for _, m, path in routes} | doc_routes
    assert {r for r in PUBLIC if r not in known} == set(), "stale entries in PUBLIC"
    refused = []
    for function, method, path in routes:
        if (method, path) in PUBLIC:
            continue
        r = p.client.request(method, _fill(path), json={} if method in ("POST", "PUT") else None)
        assert r.status_code == 401, (function, method, path, r.status_code, r.text)
        code = r.json()["error"]["code"]
        if path.startswith("/events/"):
            assert code == "event_sender_required"
        else:
            assert code == "missing_credentials"
        refused.append((method, path))
    assert ("POST", "/extract") in refused and ("POST", "/extract/batch") in refused
    assert sum(1 for _, path in refused if path.startswith("/events/")) == 5
    print(f"route inventory: {len(routes)} routes, {len(refused)} refused anonymous callers")


# --- the cross-tenant matrix ---------------------------------------------------------------

BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/tenants/{tenant_id}"): {"name": "pwned", "description": "pwned"},
    ("POST", "/api/tenants/{tenant_id}/users"): {
        "email": "intruder@example.com",
        "role": "Admin",
        "password": "intruder-password",
    },
    ("PUT", "/api/tenants/{tenant_id}/users/{user_id}"): {"isActive": False},
    ("POST", "/api/tenants/{tenant_id}/api-keys"): {"name": "intruder"},
}


def test_cross_tenant_matrix_from_the_openapi_document(platform: Platform) -> None:
    p = platform
    root = sysadmin(p)
    a, b = p.signup("Victim"), p.signup("Intruder")
    image_id = upload(p, a, "a.jpg", encode(photo("coffee.png"))).json()["imageId"]
    tid = a["tenant"]["id"]
    key = p.client.post(f"/api/tenants/{tid}/api-keys", headers=a["headers"], json={"name": "k"})
    a_key = key.json()
    invited = p.client.post(
        f"/api/tenants/{tid}/users",
        headers=a["headers"],
        json={"email": "member@victim.test", "role": "User", "password": "member-password"},
    ).json()["user"]
    b_key = p.client.post(
        f"/api/tenants/{b['tenant']['id']}/api-keys", headers=b["headers"], json={"name": "k"}
    ).json()["key"]
    ids = {
        "tenant_id": tid,
        "image_id": image_id,
        "user_id": invited["id"],
        "key_id": a_key["apiKey"]["id"],
        "slug": a["tenant"]["slug"],
        "size": "256",
        "event_id": str(uuid.uuid4()),
        "name": a["tenant"]["qdrantCollectionName"],
    }
    doc = p.client.get("/openapi.json").json()
    callers = {"jwt": b["headers"], "api_key": {"X-API-Key": b_key}}
    attempts = 0
    leaks = []
    for template, item in doc["paths"].items():
        params = re.findall(r"\{([^}]+)\}", template)
        if not params:
            continue
        path = template
        for param in params:
            assert param in ids, f"no id of tenant A for {{{param}}} in {template}"
            path = path.replace(f"{{{param}}}", ids[param])
        for method in item:
            body = BODIES.get((method.upper(), template), {})
            for caller, headers in callers.items():
                r = p.client.request(
                    method.upper(),
                    path,
                    headers=headers,
                    json=body if method in ("post", "put") else None,
                )
                attempts += 1
                if 200 <= r.status_code < 300:
                    leaks.append((caller, method, template, r.status_code))
    assert leaks == []
    assert attempts >= 40
    # A's data is untouched.
    me = p.client.get(f"/api/tenants/{tid}", headers=a["headers"]).json()
    assert me["name"] == "Victim"
    users = p.client.get(f"/api/tenants/{tid}/users", headers=a["headers"]).json()
    assert all(u["isActive"] for u in users) and len(users) == 2
    assert p.client.get(f"/api/images/{image_id}", headers=a["headers"]).status_code == 200
    assert p.client.get("/api/images", headers={"X-API-Key": a_key["key"]}).status_code == 200
    assert root  # the system admin exists, so admin-only routes were tried with real data
    print(f"cross-tenant matrix: {attempts} attempts, 0 leaks")
