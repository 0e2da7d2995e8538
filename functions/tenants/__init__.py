"""tenants: sign up a tenant, read and update it, manage its users and API keys.

Routes: POST/GET /api/tenants; GET/PUT /api/tenants/{id}; GET /api/tenants/slug/{slug};
GET/POST /api/tenants/{id}/users, PUT/DELETE /api/tenants/{id}/users/{userId};
GET/POST /api/tenants/{id}/api-keys, DELETE /api/tenants/{id}/api-keys/{keyId}.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import model_validator

from shared.http import Auth, Services, client_ip
from shared.models import ApiKeyOut, ApiModel, TenantOut, UserOut
from shared.validation import (
    Bytes,
    Count,
    Domain,
    Email,
    JsonObject,
    Limit,
    Name,
    Offset,
    Password,
    Role,
    ShortText,
    Slug,
    TenantStatus,
    Text,
    Tier,
)

router = APIRouter(tags=["tenants"])


class TenantCreateIn(ApiModel):
    name: Name
    slug: Slug | None = None
    description: Text | None = None
    domain: Domain | None = None
    admin_email: Email
    admin_password: Password
    admin_first_name: ShortText | None = None
    admin_last_name: ShortText | None = None
    settings: JsonObject | None = None


class TenantCreatedOut(ApiModel):
    tenant: TenantOut
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int


class TenantUpdateIn(ApiModel):
    """Fields left out are unchanged; ``null`` clears description and domain only."""

    name: Name | None = None
    description: Text | None = None
    domain: Domain | None = None
    settings: JsonObject | None = None
    tier: Tier | None = None
    status: TenantStatus | None = None
    max_storage_bytes: Bytes | None = None
    max_users: Count | None = None
    max_api_calls_per_day: Count | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> TenantUpdateIn:
        nulls = {k for k in self.model_fields_set if getattr(self, k) is None} - {
            "description",
            "domain",
        }
        if nulls:
            raise ValueError(f"{', '.join(sorted(nulls))} cannot be null")
        return self


class InviteIn(ApiModel):
    email: Email
    role: Role = "User"
    password: Password | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None


class InvitedOut(ApiModel):
    user: UserOut
    temporary_password: str | None


class UserUpdateIn(ApiModel):
    role: Role | None = None
    is_active: bool | None = None


class ApiKeyCreateIn(ApiModel):
    name: Name


class ApiKeyCreatedOut(ApiModel):
    api_key: ApiKeyOut
    key: str


@router.post("/api/tenants", response_model=TenantCreatedOut, status_code=201)
def create_tenant(body: TenantCreateIn, request: Request, c: Services) -> TenantCreatedOut:
    """Public sign-up: a Free tenant with its owner, signed in. Tiers are changed by an
    operator (PUT as system admin). Rate-limited per client address."""
    tenant, pair = c.tenants.sign_up(
        name=body.name,
        slug=body.slug,
        description=body.description,
        domain=body.domain,
        admin_email=body.admin_email,
        admin_password=body.admin_password,
        admin_first_name=body.admin_first_name,
        admin_last_name=body.admin_last_name,
        settings=body.settings,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return TenantCreatedOut(
        tenant=TenantOut.of(tenant),
        user=pair.user,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.expires_in,
    )


@router.get("/api/tenants", response_model=list[TenantOut])
def list_tenants(
    principal: Auth,
    c: Services,
    limit: Annotated[Limit, Query()] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> list[TenantOut]:
    return [TenantOut.of(t) for t in c.tenants.list(principal, limit=limit, offset=offset)]


@router.get("/api/tenants/slug/{slug}", response_model=TenantOut)
def tenant_by_slug(slug: Annotated[Slug, Path()], principal: Auth, c: Services) -> TenantOut:
    return TenantOut.of(c.tenants.get_by_slug(principal, slug))


@router.get("/api/tenants/{tenant_id}", response_model=TenantOut)
def get_tenant(tenant_id: uuid.UUID, principal: Auth, c: Services) -> TenantOut:
    return TenantOut.of(c.tenants.get(principal, tenant_id=tenant_id))


@router.put("/api/tenants/{tenant_id}", response_model=TenantOut)
def update_tenant(
    tenant_id: uuid.UUID, body: TenantUpdateIn, principal: Auth, c: Services
) -> TenantOut:
    changes = body.model_dump(exclude_unset=True)
    return TenantOut.of(c.tenants.update(principal, tenant_id=tenant_id, changes=changes))


@router.get("/api/tenants/{tenant_id}/users", response_model=list[UserOut])
def list_users(
    tenant_id: uuid.UUID,
    principal: Auth,
    c: Services,
    limit: Annotated[Limit, Query()] = 50,
    offset: Annotated[Offset, Query()] = 0,
) -> list[UserOut]:
    rows = c.users.list(principal, tenant_id=tenant_id, limit=limit, offset=offset)
    return [UserOut.of(u) for u in rows]


@router.post("/api/tenants/{tenant_id}/users", response_model=InvitedOut, status_code=201)
def invite_user(tenant_id: uuid.UUID, body: InviteIn, principal: Auth, c: Services) -> InvitedOut:
    user, temporary = c.users.invite(
        principal,
        tenant_id=tenant_id,
        email=body.email,
        role=body.role,
        password=body.password,
        first_name=body.first_name,
        last_name=body.last_name,
    )
    return InvitedOut(user=UserOut.of(user), temporary_password=temporary)


@router.put("/api/tenants/{tenant_id}/users/{user_id}", response_model=UserOut)
def update_user(
    tenant_id: uuid.UUID, user_id: uuid.UUID, body: UserUpdateIn, principal: Auth, c: Services
) -> UserOut:
    user = c.users.update(
        principal, tenant_id=tenant_id, user_id=user_id, role=body.role, is_active=body.is_active
    )
    return UserOut.of(user)


@router.delete("/api/tenants/{tenant_id}/users/{user_id}", status_code=204)
def deactivate_user(
    tenant_id: uuid.UUID, user_id: uuid.UUID, principal: Auth, c: Services
) -> Response:
    c.users.update(principal, tenant_id=tenant_id, user_id=user_id, is_active=False)
    return Response(status_code=204)


@router.get("/api/tenants/{tenant_id}/api-keys", response_model=list[ApiKeyOut])
def list_api_keys(tenant_id: uuid.UUID, principal: Auth, c: Services) -> list[ApiKeyOut]:
    return [ApiKeyOut.of(k) for k in c.api_keys.list(principal, tenant_id=tenant_id)]


@router.post("/api/tenants/{tenant_id}/api-keys", response_model=ApiKeyCreatedOut, status_code=201)
def create_api_key(
    tenant_id: uuid.UUID, body: ApiKeyCreateIn, principal: Auth, c: Services
) -> ApiKeyCreatedOut:
    row, key = c.api_keys.create(principal, tenant_id=tenant_id, name=body.name)
    return ApiKeyCreatedOut(api_key=ApiKeyOut.of(row), key=key)


@router.delete("/api/tenants/{tenant_id}/api-keys/{key_id}", status_code=204)
def revoke_api_key(
    tenant_id: uuid.UUID, key_id: uuid.UUID, principal: Auth, c: Services
) -> Response:
    c.api_keys.revoke(principal, tenant_id=tenant_id, key_id=key_id)
    return Response(status_code=204)
