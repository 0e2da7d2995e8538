"""The observability middleware every function instance wraps its app in (one line in
``function.new().start``): RED metrics per route template, and ``GET /metrics``.

``/metrics`` is served by every function process, before routing, so a Knative pod answers
its own scrape and, in the local runtime's multiprocess mode, any process answers for all.
When ``DEEPLENS_METRICS_TOKEN`` is set, a scrape must present it as a bearer token (what
Prometheus' ``authorization`` scrape setting sends); it is then safe to expose the port.
Either way nothing in it identifies a tenant, user or image (see shared/metrics/).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from shared import metrics, scrape
from shared.http import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from shared.db import Database

App = Callable[[Scope, Receive, Send], Awaitable[None]]
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_sampler: dict[str, threading.Thread] = {}


class Observed:
    """Pure ASGI (no BaseHTTPMiddleware: it would cost a task per request)."""

    def __init__(self, app: App, *, db: Database | None, token: str | None = None):
        self.app, self.db, self.token = app, db, token
        if db is not None:
            scrape.watch_pool(db)
        if scrape.multiprocess_dir() and "pools" not in _sampler:
            # Other processes' pools are only seen through their own samples.
            _sampler["pools"] = t = threading.Thread(target=_sample, daemon=True)
            t.start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            await self._scrape(scope, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            label = template if isinstance(template, str) else "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "_OTHER"
            code = str(status)
            metrics.HTTP_REQUESTS.labels(label, method, code).inc()
            metrics.HTTP_DURATION.labels(label, method, code).observe(time.perf_counter() - t0)

    async def _scrape(self, scope: Scope, send: Send) -> None:
        if self.token is not None:
            auth = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(auth, b"Bearer " + self.token.encode()):
                await _answer(send, 401, b"metrics token required\n", "text/plain")
                return
        import asyncio

        body, ctype = await asyncio.to_thread(scrape.scrape, self.db)
        await _answer(send, 200, body, ctype)


async def _answer(send: Send, status: int, body: bytes, ctype: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _sample() -> None:
    while True:
        scrape.sample_pools()
        time.sleep(5)


def observe(app: App, settings: object, db: Database | None) -> App:
    """Wrap ``app`` unless metrics are off (``DEEPLENS_METRICS=false``, for benchmarks)."""
    on = bool(getattr(settings, "metrics", True))
    metrics.configure(on)
    if not on:
        return app
    token = getattr(settings, "metrics_token", None)
    secret = token.get_secret_value() if token is not None else None
    return Observed(app, db=db, token=secret or None)
