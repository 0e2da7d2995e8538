"""shared/tenants/policy.py: slugs, operator-only settings and fields, a tenant's space."""

from __future__ import annotations

import uuid

import pytest

from shared.auth.principal import SYSTEM_ADMIN, Principal
from shared.errors import Forbidden
from shared.tenants.policy import (
    SLUG_RE,
    check_operator_fields,
    check_operator_settings,
    collection_for,
    slugify,
)

OWNER = Principal(tenant_id=uuid.uuid4(), role="TenantOwner", user_id=uuid.uuid4())
OPERATOR = Principal(tenant_id=None, role=SYSTEM_ADMIN)


def test_slugs() -> None:
    assert slugify("  Acme Photo, Inc.  ") == "acme-photo-inc"
    assert slugify("!!!") == "tenant"
    assert len(slugify("x" * 200)) == 48
    assert SLUG_RE.match(slugify("Acme Photo"))
    assert not SLUG_RE.match("-acme") and not SLUG_RE.match("Acme")


def test_operator_only_settings() -> None:
    with pytest.raises(Forbidden) as refused:
        check_operator_settings(OWNER, {"isolatedVectors": True}, {})
    assert refused.value.code == "operator_only_setting"
    with pytest.raises(Forbidden):
        check_operator_settings(None, {"isolatedVectors": True}, {})  # sign-up
    # A tenant replacing its settings keeps the operator's values.
    kept = check_operator_settings(OWNER, {"theme": "dark"}, {"isolatedVectors": True})
    assert kept == {"theme": "dark", "isolatedVectors": True}
    assert check_operator_settings(OPERATOR, {"isolatedVectors": True}, {}) == {
        "isolatedVectors": True
    }


def test_operator_only_fields() -> None:
    check_operator_fields(OWNER, {"name": "x", "settings": {}})
    for field in ("tier", "status", "max_storage_bytes", "max_users", "max_api_calls_per_day"):
        with pytest.raises(Forbidden):
            check_operator_fields(OWNER, {field: 1})
        check_operator_fields(OPERATOR, {field: 1})


def test_collection_for() -> None:
    tid = uuid.uuid4()
    assert collection_for(tid, "images_effnet", {}) == "images_effnet"
    assert collection_for(tid, "images_effnet", {"isolatedVectors": True}) == f"tenant_{tid}_images"
