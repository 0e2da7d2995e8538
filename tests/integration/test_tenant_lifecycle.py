"""One tenant lifecycle (issue 11): suspending a tenant by ``PUT /api/tenants/{id}`` with a
status and by ``POST /api/tenants/{id}/suspend`` has the same effects — its refresh tokens are
revoked, its access tokens and API keys are refused at once (in this process and, through
NOTIFY, in another that had them cached) — and reactivating by either route restores access."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import DeepLensError
from shared.hotpath import Gate
from tests.conftest import Platform
from tests.integration.test_tiers import sysadmin

pytestmark = pytest.mark.integration


def suspend_by_put(p: Platform, root: dict[str, str], tid: str) -> int:
    return p.client.put(
        f"/api/tenants/{tid}", headers=root, json={"status": "Suspended"}
    ).status_code


def suspend_by_admin(p: Platform, root: dict[str, str], tid: str) -> int:
    return p.client.post(f"/api/tenants/{tid}/suspend", headers=root).status_code


def reactivate_by_put(p: Platform, root: dict[str, str], tid: str) -> int:
    return p.client.put(f"/api/tenants/{tid}", headers=root, json={"status": "Active"}).status_code


def reactivate_by_admin(p: Platform, root: dict[str, str], tid: str) -> int:
    return p.client.post(f"/api/tenants/{tid}/reactivate", headers=root).status_code


Route = Callable[[Platform, dict[str, str], str], int]


def _code(r: Any) -> tuple[int, str | None]:
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    error = body.get("error") if isinstance(body, dict) else None
    return r.status_code, (error or {}).get("code")


def _other_process(gate: Gate, tid: uuid.UUID, key: str) -> tuple[str, str]:
    """What another process answers for a data-plane call with the tenant's API key (from its
    cache when it has the key and the tenant): the principal, then the tenant's admission."""
    try:
        principal = gate.principal(key, None)
        assert principal.tenant_id == tid
    except DeepLensError as exc:
        return exc.code, "-"
    try:
        gate.admit(tid)
    except DeepLensError as exc:
        return "ok", exc.code
    return "ok", "ok"


def effects(
    p: Platform, gate: Gate, root: dict[str, str], suspend: Route, reactivate: Route
) -> dict[str, Any]:
    t = p.signup(f"Lifecycle {uuid.uuid4().hex[:6]}")
    tid = t["tenant"]["id"]
    r = p.client.post(f"/api/tenants/{tid}/api-keys", headers=t["headers"], json={"name": "k"})
    key = r.json()["key"]
    by_key = {"X-API-Key": key}
    # Everything works, and the other process has the tenant and the key cached.
    assert p.client.get("/api/auth/me", headers=t["headers"]).status_code == 200
    assert p.client.get("/api/images", headers=by_key).status_code == 200
    assert _other_process(gate, uuid.UUID(tid), key) == ("ok", "ok")

    assert suspend(p, root, tid) == (200 if suspend is suspend_by_put else 204)
    seen: dict[str, Any] = {
        "status": p.client.get(f"/api/tenants/{tid}", headers=root).json()["status"],
        "refresh": _code(
            p.client.post("/api/auth/refresh", json={"refreshToken": t["refreshToken"]})
        ),
        "login": _code(
            p.client.post("/api/auth/login", json={"email": t["email"], "password": t["password"]})
        ),
        "me_token": _code(p.client.get("/api/auth/me", headers=t["headers"])),
        "me_key": _code(p.client.get("/api/auth/me", headers=by_key)),
        "images_token": _code(p.client.get("/api/images", headers=t["headers"])),
        "images_key": _code(p.client.get("/api/images", headers=by_key)),
    }
    with p.container.db.tx() as conn:
        row = conn.execute(
            "SELECT count(*) FROM refresh_tokens r JOIN users u ON u.id = r.user_id"
            " WHERE u.tenant_id = %s AND r.revoked_at IS NULL",
            (tid,),
        ).fetchone()
    seen["live_refresh_tokens"] = row[0] if row else None
    # The other process drops the tenant on NOTIFY (milliseconds; at most 2 s here).
    deadline = time.monotonic() + 2
    while _other_process(gate, uuid.UUID(tid), key)[1] == "ok" and time.monotonic() < deadline:
        time.sleep(0.01)
    seen["other_process"] = _other_process(gate, uuid.UUID(tid), key)

    assert reactivate(p, root, tid) == (200 if reactivate is reactivate_by_put else 204)
    login = p.client.post("/api/auth/login", json={"email": t["email"], "password": t["password"]})
    fresh = {"Authorization": f"Bearer {login.json().get('accessToken')}"}
    seen["after_reactivation"] = {
        "login": login.status_code,
        "old_refresh": _code(
            p.client.post("/api/auth/refresh", json={"refreshToken": t["refreshToken"]})
        ),
        "new_refresh": p.client.post(
            "/api/auth/refresh", json={"refreshToken": login.json().get("refreshToken")}
        ).status_code,
        "me_token": p.client.get("/api/auth/me", headers=t["headers"]).status_code,
        "images_token": p.client.get("/api/images", headers=fresh).status_code,
        "images_key": p.client.get("/api/images", headers=by_key).status_code,
    }
    deadline = time.monotonic() + 2
    while _other_process(gate, uuid.UUID(tid), key)[1] != "ok" and time.monotonic() < deadline:
        time.sleep(0.01)
    seen["after_reactivation"]["other_process"] = _other_process(gate, uuid.UUID(tid), key)
    return seen


def test_suspension_by_either_route_has_the_same_effects(
    data_plane: Platform, other_gate: Gate
) -> None:
    root = sysadmin(data_plane)
    by_put = effects(data_plane, other_gate, root, suspend_by_put, reactivate_by_put)
    by_admin = effects(data_plane, other_gate, root, suspend_by_admin, reactivate_by_admin)
    assert by_put == by_admin
    suspended = (403, "tenant_suspended")
    # A revoked refresh token presented again reads as a leaked one (its family is revoked).
    revoked = (401, "refresh_token_reused")
    assert by_admin == {
        "status": "Suspended",
        "refresh": revoked,
        "login": suspended,
        "me_token": suspended,
        "me_key": suspended,
        "images_token": suspended,
        "images_key": suspended,
        "live_refresh_tokens": 0,
        "other_process": ("ok", "tenant_suspended"),
        "after_reactivation": {
            "login": 200,
            "old_refresh": revoked,
            "new_refresh": 200,
            "me_token": 200,
            "images_token": 200,
            "images_key": 200,
            "other_process": ("ok", "ok"),
        },
    }


def test_status_is_a_closed_set_on_both_routes(data_plane: Platform) -> None:
    root = sysadmin(data_plane)
    t = data_plane.signup()
    tid = t["tenant"]["id"]
    for status in ("Deleted", "Paused", "suspended", ""):
        r = data_plane.client.put(f"/api/tenants/{tid}", headers=root, json={"status": status})
        assert r.status_code == 422, (status, r.text)
    from shared.auth.principal import SYSTEM_ADMIN, Principal
    from shared.errors import InvalidInput

    operator = Principal(tenant_id=None, role=SYSTEM_ADMIN)
    for status in ("Deleted", "Paused"):
        with pytest.raises(InvalidInput):
            data_plane.container.tenants.set_status(
                operator, tenant_id=uuid.UUID(tid), status=status
            )
        with pytest.raises(InvalidInput):
            data_plane.container.tenants.update(
                operator, tenant_id=uuid.UUID(tid), changes={"status": status}
            )
    assert data_plane.client.get(f"/api/tenants/{tid}", headers=root).json()["status"] == "Active"
