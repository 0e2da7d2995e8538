"""auth: sign-in, registration, token refresh and logout, the caller's identity, and the JWKS.

Routes: POST /api/auth/login, /api/auth/register, /api/auth/refresh, /api/auth/logout;
GET /api/auth/me; GET /.well-known/jwks.json. The only function that holds the signing key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from shared.http import Auth, Services, client_ip
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
async def login(body: LoginIn, request: Request, c: Services) -> TokenPair:
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
def register(body: RegisterIn, request: Request, c: Services) -> TokenPair:
    """Self-registration into a tenant that allows it (settings.allowSelfRegistration).
    Counted with the public sign-ups per client address (each costs a bcrypt hash)."""
    c.signups.take(client_ip(request))
    return c.sessions.register(
        tenant_slug=body.tenant_slug,
        email=body.email,
        password=body.password,
        first_name=body.first_name,
        last_name=body.last_name,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )


@router.post("/api/auth/refresh", response_model=TokenPair)
def refresh(body: RefreshIn, request: Request, c: Services) -> TokenPair:
    return c.sessions.refresh(
        body.refresh_token, ip=client_ip(request), user_agent=request.headers.get("user-agent")
    )


@router.post("/api/auth/logout", status_code=204)
def logout(body: RefreshIn, c: Services) -> Response:
    c.sessions.logout(body.refresh_token)
    return Response(status_code=204)


@router.get("/api/auth/me", response_model=MeOut)
def me(principal: Auth, c: Services) -> MeOut:
    user, tenant = c.users.me(principal)
    return MeOut(
        user=UserOut.of(user) if user else None,
        tenant=TenantOut.of(tenant) if tenant else None,
        role=principal.role,
        via="api_key" if principal.api_key_id else "token",
    )


@router.get("/.well-known/jwks.json")
def jwks(c: Services) -> dict[str, Any]:
    return c.keys.jwks
