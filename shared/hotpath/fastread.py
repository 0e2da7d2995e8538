"""``FastRead``: one authenticated read route served as plain ASGI, in front of FastAPI.

FastAPI spends most of a small read on itself: matching the path against every route of the
process, solving the dependencies, validating the returned model against ``response_model``
and serializing it again, and its own telemetry. For the data plane's hottest read
(``GET /api/images/{id}``) ``FastRead`` does only what the answer needs: the path is matched by
one regular expression, the principal is the one ``QuotaGate`` already authenticated and
counted, the read is one PostgreSQL round trip (awaited: the images function reads on the
event loop with psycopg's async driver, ``shared/hotpath/asyncread.py``), and the body is the
handler's own JSON bytes.

It answers only what it can answer exactly like the FastAPI route: a GET on a canonical id
with a principal in the scope. Anything else (no credentials, a malformed id, HEAD) goes on to
FastAPI, which stays the route's documentation and fallback. Errors have the platform's error
body and status (``shared.http``); the request gets the same server span name FastAPI gives it
and the route label for the RED metrics (``scope["route"]``).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from shared.auth.principal import Principal
from shared.errors import DeepLensError
from shared.http import PRINCIPAL_KEY, Receive, Scope, Send

ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]
log = logging.getLogger("deeplens.fastread")
_tracer = trace.get_tracer("deeplens.fastread")
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


@dataclass(frozen=True)
class Template:
    """A route template ``/api/images/{image_id}`` and the pattern of its canonical paths."""

    path_format: str
    pattern: re.Pattern[str]

    @property
    def path(self) -> str:  # what shared/observe.py reads for the metrics label
        return self.path_format


ONE_IMAGE = Template("/api/images/{image_id}", re.compile(rf"/api/images/({_UUID})\Z"))
Read = Callable[[Principal, uuid.UUID], Awaitable[bytes]]


class FastRead:
    def __init__(self, app: ASGI, template: Template, read: Read):
        self.app, self.template, self.read = app, template, read
        self.span_name = f"GET {template.path_format}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal | None = scope.get(PRINCIPAL_KEY)
        match = (
            self.template.pattern.match(scope["path"])
            if scope["type"] == "http" and scope["method"] == "GET" and principal is not None
            else None
        )
        if match is None or principal is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.template
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with _tracer.start_as_current_span(
            self.span_name,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "GET", "http.route": self.template.path_format},
        ) as span:
            status, body, headers = await self._answer(principal, uuid.UUID(match.group(1)))
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(
        self, principal: Principal, key: uuid.UUID
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        try:
            return 200, await self.read(principal, key), []
        except DeepLensError as exc:  # what shared.http's exception handler answers
            if exc.status >= 500:
                log.warning("request failed: %s (%s)", exc.code, exc.message)
            extra = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            return exc.status, _error(exc.code, exc.message), extra
        except Exception as exc:  # noqa: BLE001 - the platform's 500, as for any route
            log.exception("unhandled error", exc_info=exc)
            return 500, _error("internal_error", "internal server error"), []


def _error(code: str, message: str) -> bytes:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
