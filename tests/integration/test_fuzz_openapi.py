"""The standing attack suite, part 3: schemathesis over the whole OpenAPI document, with every
role (anonymous, User, TenantOwner, API key, system admin), valid and invalid data: zero 5xx
and zero answers that break the documented schema (errors included: every 4xx is the
platform's error body).

Bounded for CI: ``DEEPLENS_FUZZ_EXAMPLES`` examples per operation and mode (default 12), so a
run is a couple of minutes; raise it locally for a deeper run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import ADMIN_URL, _url_for, make_platform
from tests.photos import encode, photo

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("DEEPLENS_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[Any]:
    name = f"deeplens_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    data: Path = tmp_path_factory.mktemp("fuzz")
    p = make_platform(
        _url_for(name),
        data,
        embedder=embedder,
        env={"DEEPLENS_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000"},
    )
    try:
        owner = p.signup("Fuzzed")
        tid = owner["tenant"]["id"]
        p.container.users.create_system_admin(email="root@fuzz.test", password="root-password-1")
        r = p.client.post(
            "/api/auth/login", json={"email": "root@fuzz.test", "password": "root-password-1"}
        )
        root = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        # Enough quota that the fuzzer keeps reaching the handlers, not the 429.
        p.client.put(f"/api/tenants/{tid}", headers=root, json={"maxApiCallsPerDay": 10**9})
        p.client.post(
            f"/api/tenants/{tid}/users",
            headers=owner["headers"],
            json={"email": "user@fuzz.test", "role": "User", "password": "user-password"},
        )
        r = p.client.post(
            "/api/auth/login", json={"email": "user@fuzz.test", "password": "user-password"}
        )
        user = {"Authorization": f"Bearer {r.json()['accessToken']}"}
        key = p.client.post(
            f"/api/tenants/{tid}/api-keys", headers=owner["headers"], json={"name": "fuzz"}
        ).json()["key"]
        p.client.post(
            "/api/images/upload",
            headers=owner["headers"],
            files={"file": ("a.jpg", encode(photo("coffee.png")))},
        )
        roles = {
            "anonymous": {},
            "user": user,
            "owner": owner["headers"],
            "api_key": {"X-API-Key": key},
            "system_admin": root,
        }
        yield p, roles
    finally:
        p.fn.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_fuzz_every_operation_with_every_role(fuzz_target: Any) -> None:
    p, roles = fuzz_target
    schema = schemathesis.openapi.from_asgi("/openapi.json", p.fn.handle)
    operations = [op.ok() for op in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 30
    assert not [op for op in operations if op.path.startswith("/events/")]
    failures: list[str] = []
    calls = 0

    def fuzz(operation: Any, mode: GenerationMode) -> None:
        label = f"{operation.method.upper()} {operation.path} ({mode.value})"

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            nonlocal calls
            for role, headers in roles.items():
                response = case.call(headers=headers)
                calls += 1
                try:
                    case.validate_response(
                        response, checks=[not_a_server_error, response_schema_conformance]
                    )
                except Exception as exc:  # noqa: BLE001 - collected, reported below
                    failures.append(f"{label} as {role}: {str(exc)[:400]}")

        try:
            run()
        except Unsatisfiable:
            # Nothing to make invalid (no parameters, no body): positive mode covers it.
            assert mode is GenerationMode.NEGATIVE

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    print(f"schemathesis: {calls} requests over {len(operations)} operations, 5 roles")
    assert failures == [], "\n".join(failures[:20])
