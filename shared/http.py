"""The HTTP runtime shared by every function: one error shape, body limits, auth dependencies.

Errors always answer ``{"error": {"code": "...", "message": "..."}}``; nothing from a stack
trace, a driver or SQL reaches a response body.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.auth.principal import Principal
from shared.bootstrap import Container
from shared.errors import DeepLensError, InvalidInput, PayloadTooLarge, Unauthorized

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DeepLensError)
    async def _deeplens(_: Request, exc: DeepLensError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed: %s (%s)", exc.code, exc.message)
        return JSONResponse(
            error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("invalid_json", "the request body is not valid JSON"), status_code=400
            )
        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())[1:]),
                "message": str(e.get("msg", "")),
            }
            for e in errors
        ]
        first = details[0] if details else {"field": "", "message": "invalid request"}
        return JSONResponse(
            error_body(
                "validation_error",
                f"{first['field'] or 'body'}: {first['message']}",
                details=details,
            ),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(
            error_body(code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)


# Headers a request may carry once: the guards and the parsers must read the same value.
_SINGLE = frozenset({b"content-type", b"content-length", b"transfer-encoding"})


class BodyLimit:
    """Refuse bodies over the limit before reading them (Content-Length) and while streaming
    (chunked uploads), so a 10 MB JSON body never reaches a parser."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        json_limit: int,
        upload_limit: int,
    ):
        self.app, self.json_limit, self.upload_limit = app, json_limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("headers") or []
        headers = dict(raw)
        if sum(1 for k, _ in raw if k in _SINGLE) > len({k for k, _ in raw if k in _SINGLE}):
            # Two Content-Types: this guard would read the last and the body parser the first
            # (a JSON body past the upload's limit and the depth check).
            await send_error(
                send,
                InvalidInput("a header repeats that must appear once", code="duplicate_header"),
            )
            return
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.upload_limit + 65536 if ctype.startswith("multipart/") else self.json_limit
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await send_error(send, PayloadTooLarge(f"request body over {limit} bytes"))
            return
        seen = 0
        over = answered = False

        async def limited() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge(f"request body over {limit} bytes")
            return message

        async def guarded(message: Message) -> None:
            # Past the limit, whatever the app answers (a parser may turn the error into a
            # 400) is replaced by the 413: a chunked body over the limit is "too large".
            nonlocal answered
            if not over:
                await send(message)
            elif not answered and message["type"] == "http.response.start":
                answered = True
                await send_error(send, _TooLarge(f"request body over {limit} bytes"))

        try:
            await self.app(scope, limited, guarded)
        except _TooLarge as exc:
            if not answered:
                answered = True
                await send_error(send, exc)


class _TooLarge(PayloadTooLarge):
    pass


async def send_error(send: Send, exc: DeepLensError) -> None:
    """Answer with the platform's error body from ASGI middleware (before any route runs)."""
    import json

    body = json.dumps(error_body(exc.code, exc.message)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    try:
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # noqa: BLE001 - a response already started: nothing more to say
        return


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


PRINCIPAL_KEY = "deeplens.principal"


async def authenticated(request: Request) -> Principal:
    """FastAPI dependency: a JWT (Bearer) or an API key (X-API-Key, or Bearer dl_…), with the
    account's current rights (shared/hotpath/). Data-plane calls were already authenticated
    and counted by the QuotaGate middleware; elsewhere suspended tenants are refused but calls
    are not counted (a tenant over its quota can still sign in and read its usage)."""
    # In the request's own scope: func-python's server (hypercorn) shares one ``state`` dict
    # between all requests, so request.state must never carry a principal.
    done: Principal | None = request.scope.get(PRINCIPAL_KEY)
    if done is not None:
        return done  # no threadpool hop on the data plane's hot path
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_authenticate, request)


def _authenticate(request: Request) -> Principal:
    from shared.hotpath import METERED, credentials

    c = container(request)
    api_key, token = credentials(dict(request.headers.items()))
    if api_key is None and token is None:
        raise Unauthorized(
            "authentication required",
            code="missing_credentials",
            headers={"WWW-Authenticate": "Bearer"},
        )
    gate = c.gate
    principal = gate.principal(api_key, token)
    if principal.tenant_id is not None:
        if request.url.path.startswith(METERED):
            gate.admit(principal.tenant_id)  # served without the middleware
        else:
            gate.tenant(principal.tenant_id)
            gate.flush_tenant(principal.tenant_id)  # usage reads see this process's calls
    request.scope[PRINCIPAL_KEY] = principal
    return principal


async def services(request: Request) -> Container:
    """``container`` as a dependency: async, so FastAPI does not spend a threadpool hop on it."""
    return container(request)


# Declared once for every handler module: the caller (authenticated) and the services.
Auth = Annotated[Principal, Depends(authenticated)]
Services = Annotated[Container, Depends(services)]


def client_ip(request: Request) -> str | None:
    from shared.clientip import client_address

    return client_address(request, container(request).settings.trusted_proxies)
