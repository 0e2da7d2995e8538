"""The camelCase API schemas, built from the row types of shared/store/."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from shared.store.api_keys import ApiKeyRow
from shared.store.tenants import TenantRow
from shared.store.users import UserRow

# TenantRow is re-exported while modules outside identity and tenancy still import it from here.
__all__ = ["ApiKeyOut", "ApiModel", "TenantOut", "TenantRow", "TokenPair", "UserOut"]


class ApiModel(BaseModel):
    """JSON bodies in and out are camelCase, as in the seed's endpoint tables."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TenantOut(ApiModel):
    id: uuid.UUID
    name: str
    slug: str
    description: str | None
    domain: str | None
    status: str
    tier: str
    minio_bucket_name: str
    qdrant_collection_name: str
    max_storage_bytes: int
    max_users: int
    max_api_calls_per_day: int
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, t: TenantRow) -> TenantOut:
        return cls.model_validate(t, from_attributes=True)


class UserOut(ApiModel):
    id: uuid.UUID
    tenant_id: uuid.UUID | None
    email: str
    first_name: str | None
    last_name: str | None
    role: str
    is_active: bool
    email_verified: bool
    last_login_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, u: UserRow) -> UserOut:
        return cls.model_validate(u, from_attributes=True)


class ApiKeyOut(ApiModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    key_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, k: ApiKeyRow) -> ApiKeyOut:
        return cls.model_validate(k, from_attributes=True)


class TokenPair(ApiModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
    user: UserOut
