"""The authenticated hot path (shared/hotpath.py), on the real PostgreSQL.

Issue 13's findings, as tests:
- "stale rights for 15 minutes": a demoted or deactivated user, a revoked API key and a
  suspended tenant lose their rights at once — in the process that made the change and, through
  LISTEN/NOTIFY, in another process that had them cached;
- "noisy neighbour / each refused request costs a DB write": past its quota a tenant is refused
  from memory, with no database write and before its request body is read.
Plus the meter's bound: one process is exact; several exceed the limit by at most
MAX_PENDING calls each, and every admitted call is counted once.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.errors import DeepLensError, QuotaExceeded
from shared.hotpath import MAX_PENDING, Gate
from tests.conftest import Platform, make_platform

pytestmark = pytest.mark.integration


def sql(url: str, query: str, *args: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else None


def invite(p: Platform, t: dict[str, Any], email: str, role: str) -> dict[str, Any]:
    tid = t["tenant"]["id"]
    r = p.client.post(
        f"/api/tenants/{tid}/users",
        headers=t["headers"],
        json={"email": email, "password": "password-123", "role": role},
    )
    assert r.status_code == 201, r.text
    login = p.client.post("/api/auth/login", json={"email": email, "password": "password-123"})
    assert login.status_code == 200
    body: dict[str, Any] = login.json()
    body["id"] = r.json()["user"]["id"]
    body["headers"] = {"Authorization": f"Bearer {body['accessToken']}"}
    return body


def eventually(check: Any, within: float) -> float:
    """Seconds until check() holds (fails past ``within``)."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"not within {within}s")
        time.sleep(0.002)
    return time.monotonic() - t0


def test_demoted_and_deactivated_users_lose_rights_at_once(
    data_plane: Platform, other_gate: Gate
) -> None:
    p = data_plane
    t = p.signup("Rights Co")
    tid = t["tenant"]["id"]
    admin = invite(p, t, "admin@rights.test", "Admin")
    token = admin["accessToken"]
    # An Admin may create API keys; the other process has the account cached.
    assert (
        p.client.post(
            f"/api/tenants/{tid}/api-keys", headers=admin["headers"], json={"name": "k1"}
        ).status_code
        == 201
    )
    assert other_gate.principal(None, token).role == "Admin"

    # Demoted: the very next request with the same (unexpired) token has the User role.
    r = p.client.put(
        f"/api/tenants/{tid}/users/{admin['id']}", headers=t["headers"], json={"role": "User"}
    )
    assert r.status_code == 200, r.text
    r = p.client.post(f"/api/tenants/{tid}/api-keys", headers=admin["headers"], json={"name": "k2"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_role"
    took = eventually(lambda: other_gate.principal(None, token).role == "User", within=1.0)
    print(f"\ndemotion reached the other process in {took * 1000:.1f} ms")

    # Deactivated: refused everywhere, at once.
    r = p.client.put(
        f"/api/tenants/{tid}/users/{admin['id']}", headers=t["headers"], json={"isActive": False}
    )
    assert r.status_code == 200, r.text
    r = p.client.get("/api/images", headers=admin["headers"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "account_disabled"
    r = p.client.get("/api/auth/me", headers=admin["headers"])
    assert r.status_code == 401

    def refused() -> bool:
        try:
            other_gate.principal(None, token)
        except DeepLensError as exc:
            return exc.code == "account_disabled"
        return False

    took = eventually(refused, within=1.0)
    print(f"deactivation reached the other process in {took * 1000:.1f} ms")


def test_revoked_key_and_suspended_tenant_refused_at_once_in_another_process(
    data_plane: Platform, other_gate: Gate, database_url: str
) -> None:
    p = data_plane
    t = p.signup("Keys Co")
    tid = t["tenant"]["id"]
    created = p.client.post(
        f"/api/tenants/{tid}/api-keys", headers=t["headers"], json={"name": "k"}
    ).json()
    key = created["key"]
    principal = other_gate.principal(key, None)  # cached there now
    other_gate.tenant(principal.tenant_id)  # type: ignore[arg-type]
    assert (
        p.client.delete(
            f"/api/tenants/{tid}/api-keys/{created['apiKey']['id']}", headers=t["headers"]
        ).status_code
        == 204
    )
    assert p.client.get("/api/images", headers={"X-API-Key": key}).status_code == 401

    def key_refused() -> bool:
        try:
            other_gate.principal(key, None)
        except DeepLensError as exc:
            return exc.code == "invalid_api_key"
        return False

    eventually(key_refused, within=1.0)
    # An operator suspends the tenant from another process (deeplens tenant suspend).
    sql(database_url, "UPDATE tenants SET status = 'Suspended' WHERE id = %s", uuid.UUID(tid))

    def suspended() -> bool:
        try:
            other_gate.tenant(uuid.UUID(tid))
        except DeepLensError as exc:
            return exc.code == "tenant_suspended"
        return False

    eventually(suspended, within=1.0)
    r = p.client.get("/api/images", headers=t["headers"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"


def test_over_quota_refused_from_memory_before_the_body_and_control_plane_still_works(
    data_plane: Platform, database_url: str
) -> None:
    p = data_plane
    t = p.signup("Noisy Co")
    tid = t["tenant"]["id"]
    sql(
        database_url, "UPDATE tenants SET max_api_calls_per_day = 150 WHERE id = %s", uuid.UUID(tid)
    )
    time.sleep(0.1)  # the NOTIFY drops the cached limit
    codes = [p.client.get("/api/images", headers=t["headers"]).status_code for _ in range(151)]
    assert codes == [200] * 150 + [429]
    gate = p.container.gate
    gate.flush()
    writes = gate.db_writes
    calls_before = sql(
        database_url, "SELECT api_calls FROM usage_daily WHERE tenant_id = %s", uuid.UUID(tid)
    )
    for _ in range(200):
        r = p.client.get("/api/images", headers=t["headers"])
        assert r.status_code == 429 and r.json()["error"]["code"] == "quota_api_calls"
        assert int(r.headers["Retry-After"]) >= 1
    # A malformed upload is refused for the quota, not parsed (that would be a 4xx of its own).
    r = p.client.post(
        "/api/images/upload",
        headers={**t["headers"], "content-type": "multipart/form-data; boundary=x"},
        content=b"not multipart at all" * 1000,
    )
    assert r.status_code == 429
    gate.flush()
    assert gate.db_writes == writes  # 201 refusals, no database write
    assert (
        sql(database_url, "SELECT api_calls FROM usage_daily WHERE tenant_id = %s", uuid.UUID(tid))
        == calls_before
    )
    # The control plane is not metered: sign in, read usage and analytics.
    login = p.client.post("/api/auth/login", json={"email": t["email"], "password": t["password"]})
    assert login.status_code == 200
    assert p.client.get("/api/auth/me", headers=t["headers"]).status_code == 200
    stats = p.client.get(f"/api/tenants/{tid}/analytics", headers=t["headers"])
    assert stats.status_code == 200, stats.text
    assert stats.json()["apiCallsToday"] == 151
    # An operator raising the limit applies at once.
    sql(
        database_url,
        "UPDATE tenants SET max_api_calls_per_day = 1000 WHERE id = %s",
        uuid.UUID(tid),
    )
    eventually(lambda: p.client.get("/api/images", headers=t["headers"]).status_code == 200, 1.0)


def _hammer(gate: Gate, tenant: uuid.UUID, n: int) -> int:
    admitted = 0
    for _ in range(n):
        try:
            gate.admit(tenant)
            admitted += 1
        except QuotaExceeded:
            pass
    return admitted


def test_meter_is_exact_in_one_process_and_bounded_across_processes(
    data_plane: Platform, other_gate: Gate, database_url: str
) -> None:
    p = data_plane
    gate = p.container.gate
    for limit, gates in ((500, [gate]), (700, [gate, other_gate])):
        t = p.signup(f"Meter {limit}")
        tid = uuid.UUID(t["tenant"]["id"])
        sql(database_url, "UPDATE tenants SET max_api_calls_per_day = %s WHERE id = %s", limit, tid)
        for g in gates:
            eventually(
                lambda g=g, t=tid, n=limit: g.tenant(t).max_api_calls_per_day == n,  # type: ignore[misc]
                1.0,
            )
        with ThreadPoolExecutor(8) as pool:
            admitted = sum(
                pool.map(_hammer, [gates[i % len(gates)] for i in range(8)], [tid] * 8, [150] * 8)
            )
        for g in gates:
            g.flush()
        counted = sql(database_url, "SELECT api_calls FROM usage_daily WHERE tenant_id = %s", tid)[
            0
        ][0]
        print(f"\nlimit {limit}, {len(gates)} process(es): admitted {admitted}, counted {counted}")
        if len(gates) == 1:
            assert admitted == limit
        else:
            assert limit - MAX_PENDING * len(gates) <= admitted <= limit + MAX_PENDING * len(gates)
        # every admitted call is counted once; at most one refused call per thread is counted
        assert admitted <= counted <= admitted + 8


def test_flushes_are_batched(data_plane: Platform, database_url: str) -> None:
    p = data_plane
    t = p.signup("Batch Co")
    gate = p.container.gate
    p.client.get("/api/images", headers=t["headers"])  # first call: counted synchronously
    gate.flush()
    writes = gate.db_writes
    for _ in range(300):
        assert p.client.get("/api/images", headers=t["headers"]).status_code == 200
    gate.flush()
    # A write per BATCH calls or per FLUSH_SECONDS, whichever comes first: not one per call.
    print(f"\n300 calls, {gate.db_writes - writes} usage writes")
    assert gate.db_writes - writes <= 300 // 4
    calls = sql(
        database_url,
        "SELECT api_calls FROM usage_daily WHERE tenant_id = %s",
        uuid.UUID(t["tenant"]["id"]),
    )
    assert calls == [(301,)]


def test_remembered_token_still_expires(database_url: str, tmp_path: Path) -> None:
    p = make_platform(
        database_url,
        tmp_path,
        only=["auth", "tenants", "images"],
        env={"DEEPLENS_JWT__ACCESS_TTL_SECONDS": "2"},
    )
    try:
        t = p.signup("Short Lived")
        assert p.client.get("/api/images", headers=t["headers"]).status_code == 200
        assert t["accessToken"] in p.container.gate.verified  # verified once, remembered
        time.sleep(2.5)
        r = p.client.get("/api/images", headers=t["headers"])
        assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"
    finally:
        p.fn.stop()


def test_made_up_api_keys_do_not_grow_the_cache_without_bound(
    data_plane: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown key prefixes are remembered (one query each), within CACHE_MAX entries: a
    flood of made-up keys cannot grow a process's memory (adversarial review)."""
    from shared.hotpath import identity

    monkeypatch.setattr(identity, "CACHE_MAX", 40, raising=False)
    p = data_plane
    t = p.signup("Flood Co")
    gate = p.container.gate
    assert gate.wait_listening()
    for i in range(100):
        key = f"dl_{uuid.uuid4().hex[:8]}_{'x' * 24}"
        r = p.client.get("/api/images", headers={"X-API-Key": key})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", i
        assert len(gate.api_keys) <= 40
    assert p.client.get("/api/images", headers=t["headers"]).status_code == 200
