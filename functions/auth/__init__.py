"""auth: sign-in, registration, token refresh and logout, the caller's identity, and the JWKS.

Routes: POST /api/auth/login, /api/auth/register, /api/auth/refresh, /api/auth/logout;
GET /api/auth/me; GET /.well-known/jwks.json. The only function that holds the signing key.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from shared.auth.principal import Principal
from shared.errors import Forbidden
from shared.http import authenticated, client_ip, container
from shared.models import ApiModel, TenantOut, TokenPair, UserOut
from shared.validation import AnyPassword, Email, Password, ShortText, Slug, Token

router = APIRouter(tags=["auth"])


class LoginIn(ApiModel):
    email: Email
    password: AnyPassword
    tenant_slug: Slug | None = None


class RegisterIn(ApiModel):
    email: Email
    password: Password
    tenant_slug: Slug
    first_name: ShortText | None = None
    last_name: ShortText | None = None


class RefreshIn(ApiModel):
    refresh_token: Token


class MeOut(ApiModel):
    user: UserOut | None
    tenant: TenantOut | None
    role: str
    via: str


@router.post("/api/auth/login", response_model=TokenPair, response_model_by_alias=True)
async def login(body: LoginIn, request: Request) -> TokenPair:
    c = container(request)
    # An account under attack answers slowly (never refuses: shared/usage.py LoginThrottle);
    # the wait is on the event loop, so it holds no thread.
    delay = await run_in_threadpool(c.throttle.delay, body.email)
    if delay:
        await asyncio.sleep(delay)
    # bcrypt takes ~0.2 s at cost 12: off the event loop, or one login stalls every request.
    return await run_in_threadpool(
        c.sessions.login,
        body.email,
        body.password,
        tenant_slug=body.tenant_slug,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )


@router.post("/api/auth/register", response_model=TokenPair, status_code=201)
def register(body: RegisterIn, request: Request) -> TokenPair:
    """Self-registration into a tenant that allows it (settings.allowSelfRegistration)."""
    c = container(request)
    tenant = c.tenants.get_by_slug_internal(body.tenant_slug)
    # One answer whether the slug is unknown, closed or suspended: registration must not tell
    # outsiders which tenants exist.
    if (
        tenant is None
        or not tenant.settings.get("allowSelfRegistration")
        or (tenant.status != "Active")
    ):
        raise Forbidden(
            "no tenant with this slug accepts self-registration", code="registration_closed"
        )
    c.users.register(
        tenant_id=tenant.id,
        email=body.email,
        password=body.password,
        first_name=body.first_name,
        last_name=body.last_name,
    )
    return c.sessions.login(
        body.email,
        body.password,
        tenant_slug=tenant.slug,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )


@router.post("/api/auth/refresh", response_model=TokenPair)
def refresh(body: RefreshIn, request: Request) -> TokenPair:
    return container(request).sessions.refresh(
        body.refresh_token, ip=client_ip(request), user_agent=request.headers.get("user-agent")
    )


@router.post("/api/auth/logout", status_code=204)
def logout(body: RefreshIn, request: Request) -> Response:
    container(request).sessions.logout(body.refresh_token)
    return Response(status_code=204)


@router.get("/api/auth/me", response_model=MeOut)
def me(request: Request, principal: Annotated[Principal, Depends(authenticated)]) -> MeOut:
    c = container(request)
    user = c.users.get_any(principal.user_id) if principal.user_id else None
    tenant = (
        c.tenants.get(principal, principal.tenant_id) if principal.tenant_id is not None else None
    )
    return MeOut(
        user=UserOut.of(user) if user else None,
        tenant=TenantOut.of(tenant) if tenant else None,
        role=principal.role,
        via="api_key" if principal.api_key_id else "token",
    )


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> dict[str, Any]:
    return container(request).keys.jwks
