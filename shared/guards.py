"""Edge guards every function runs before routing (ASGI middleware, any server):

- URLs whose path or query carry NUL or control characters are refused (400), so no handler
  and no database sees them;
- JSON bodies nested deeper than ``max_json_depth`` are refused before any parser recurses
  into them (Python's json raises RecursionError near 1,000 levels: a 500 otherwise);
- a body that stops arriving is cut off after ``body_timeout`` seconds per read (408): a slow
  client cannot hold a worker forever, whatever the server in front does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_to_bytes

from shared.errors import DeepLensError, InvalidInput
from shared.http import Message, Receive, Scope, Send, send_error
from shared.validation import has_control

App = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestTimeout(DeepLensError):
    status = 408
    code = "request_timeout"


def json_depth(body: bytes, limit: int) -> int:
    """Nesting depth of a JSON document (brackets outside strings), scanning stops past
    ``limit``. Cheap for ordinary bodies: those with few brackets are not scanned at all."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _bad_url(scope: Scope) -> bool:
    path = scope.get("path", "")
    if has_control(path):
        return True
    query: bytes = scope.get("query_string", b"")
    if not query:
        return False
    try:
        decoded = unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return has_control(decoded)


class InputGuard:
    def __init__(self, app: App, *, max_json_depth: int = 32, body_timeout: float = 30.0):
        self.app, self.max_depth, self.body_timeout = app, max_json_depth, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _bad_url(scope):
            await send_error(
                send,
                InvalidInput(
                    "the URL must not contain NUL or control characters", code="invalid_url"
                ),
            )
            return
        timeout = self.body_timeout

        async def timed() -> Message:
            try:
                return await asyncio.wait_for(receive(), timeout)
            except TimeoutError:
                raise RequestTimeout(
                    f"no request body data for {timeout:g} s", code="request_timeout"
                ) from None

        headers = dict(scope.get("headers") or [])
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if scope.get("method") in ("POST", "PUT", "PATCH") and (
            ctype == b"application/json" or ctype.endswith(b"+json")
        ):
            # Buffer the (size-limited) JSON body once to check its depth, then replay it.
            chunks: list[bytes] = []
            try:
                while True:
                    message = await timed()
                    if message["type"] != "http.request":
                        break
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
            except DeepLensError as exc:
                await send_error(send, exc)
                return
            body = b"".join(chunks)
            if json_depth(body, self.max_depth) > self.max_depth:
                await send_error(
                    send,
                    InvalidInput(
                        f"JSON nested deeper than {self.max_depth} levels", code="json_too_deep"
                    ),
                )
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        try:
            await self.app(scope, timed, send)
        except RequestTimeout as exc:
            await send_error(send, exc)
