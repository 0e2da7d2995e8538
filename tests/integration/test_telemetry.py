"""The spans of one login form the seed's tree: user.authenticate over the users query, token
generation, the refresh-token insert and the last_login_at update, with the seed's tags."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.telemetry import setup_telemetry
from tests.conftest import Platform

pytestmark = pytest.mark.integration


def test_login_span_tree(identity: Platform) -> None:
    exporter = InMemorySpanExporter()
    setup_telemetry("test", extra_processor=SimpleSpanProcessor(exporter))
    t = identity.signup()
    exporter.clear()
    r = identity.client.post(
        "/api/auth/login", json={"email": t["email"], "password": t["password"]}
    )
    assert r.status_code == 200
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [auth] = [s for s in spans if s.name == "user.authenticate"]
    assert auth.attributes is not None
    assert auth.attributes["auth.result"] == "success"
    assert auth.attributes["user.id"] == t["user"]["id"]
    assert auth.attributes["tenant.id"] == t["tenant"]["id"]

    def under(span: ReadableSpan, ancestor: ReadableSpan) -> bool:
        parent = span.parent
        while parent is not None:
            if parent.span_id == ancestor.context.span_id:
                return True
            p = by_id.get(parent.span_id)
            parent = p.parent if p else None
        return False

    def one(name: str) -> ReadableSpan:
        matches = [s for s in spans if s.name == name and under(s, auth)]
        assert matches, f"no {name} under user.authenticate: {[s.name for s in spans]}"
        return matches[0]

    users_query = one("db.select users")
    assert users_query.attributes == {
        "db.system": "postgresql",
        "db.table": "users",
        "db.operation": "SELECT",
    }
    token = one("token.generate")
    insert = one("db.insert refresh_tokens")
    assert under(insert, token)
    assert insert.attributes is not None and insert.attributes["db.operation"] == "INSERT"
    update = one("db.update users")
    assert update.attributes is not None and update.attributes["db.table"] == "users"
    # FastAPI's own server span for the route is the root of it all.
    [http] = [s for s in spans if s.name == "POST /api/auth/login"]
    assert http.parent is None
    assert under(auth, http)
    # No secret in any attribute.
    for s in spans:
        for v in (s.attributes or {}).values():
            assert t["password"] not in str(v)
