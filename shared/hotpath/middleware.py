"""``QuotaGate``: the data plane's ASGI middleware, and the credentials of a request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.auth.principal import Principal
from shared.errors import DeepLensError
from shared.hotpath.identity import NeedsDatabase
from shared.hotpath.meter import Gate
from shared.http import PRINCIPAL_KEY, Message, Receive, Scope, Send, send_error

DATA_PLANE = ("/api/images",)
# Counted against the daily quota too, though not gated before the body: a user's own calls to
# the extract function (its internal callers present the platform's secret and are not counted).
METERED = (*DATA_PLANE, "/extract")
CONTROL_PLANE = ("/api/tenants", "/api/admin")  # where tenants, users and keys change
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def credentials(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(API key, bearer token) from request headers (lower-case names)."""
    api_key = headers.get("x-api-key")
    auth = headers.get("authorization")
    token = auth[7:].strip() if auth and auth[:7].lower() == "bearer " else None
    if api_key is None and token is not None and token.startswith("dl_"):
        api_key, token = token, None
    return api_key, token


class QuotaGate:
    """ASGI middleware for the data plane: authenticate, check the tenant and count the call
    before the application (or its body parsing) runs. The principal is left in the request
    scope, where ``shared.http.authenticated`` finds it."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], gate: Callable[[], Gate]):
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith(DATA_PLANE):
            if scope["method"] in SAFE_METHODS or not scope["path"].startswith(CONTROL_PLANE):
                await self.app(scope, receive, send)
                return
            # A change of rights made here applies to this process's next request even
            # before its NOTIFY comes back: drop the cache before the answer leaves.
            gate = self.gate()

            async def send_after_change(message: Message) -> None:
                if message["type"] == "http.response.start":
                    gate.local_change()
                await send(message)

            await self.app(scope, receive, send_after_change)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        api_key, token = credentials(headers)
        if api_key is None and token is None:
            await self.app(scope, receive, send)  # the route answers 401
            return
        gate = self.gate()
        try:
            try:
                principal = gate.principal(api_key, token, db=False)
                if principal.tenant_id is not None:
                    gate.admit(principal.tenant_id, db=False)
            except NeedsDatabase:
                from starlette.concurrency import run_in_threadpool

                principal = await run_in_threadpool(self._slow, gate, api_key, token)
        except DeepLensError as exc:
            await send_error(send, exc)
            return
        scope[PRINCIPAL_KEY] = principal  # never scope["state"]: hypercorn shares it
        await self.app(scope, receive, send)

    @staticmethod
    def _slow(gate: Gate, api_key: str | None, token: str | None) -> Principal:
        principal = gate.principal(api_key, token)
        if principal.tenant_id is not None:
            gate.admit(principal.tenant_id)
        return principal
