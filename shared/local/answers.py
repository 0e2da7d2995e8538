"""What the local ingress answers itself: ``/health/liveness``, ``/health/readiness`` from the
functions' readiness, and ``/docs`` and ``/openapi.json`` merged from the public functions'
own documents (``/events/*`` left out: only the broker reaches them)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

from functions.routes import ROUTES
from shared.local.wire import Backend


class SelfAnswers:
    def __init__(self, backends: dict[str, list[str]]):
        self.backends = {fn: [Backend(a) for a in addrs] for fn, addrs in backends.items()}
        self._ready_at = 0.0
        self._ready = False
        self._openapi: bytes | None = None

    async def local(self, method: str, path: str) -> tuple[int, bytes, bytes] | None:
        if path == "/health/liveness":
            return 200, b"alive", b"text/plain"
        if path == "/health/readiness":
            ok = await self.ready()
            return (200, b"ready", b"text/plain") if ok else (503, b"starting", b"text/plain")
        if path == "/openapi.json" and method in ("GET", "HEAD"):
            return 200, await self.openapi(), b"application/json"
        if path == "/docs" and method in ("GET", "HEAD"):
            from fastapi.openapi.docs import get_swagger_ui_html

            html = get_swagger_ui_html(openapi_url="/openapi.json", title="DeepLens API")
            return 200, bytes(html.body), b"text/html; charset=utf-8"
        return None

    def public_functions(self) -> list[str]:
        return sorted({fn for _, _, _, fn in ROUTES if fn in self.backends})

    async def _get(self, backend: Backend, path: str) -> tuple[int, bytes]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(backend.host, backend.port), 2
        )
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nhost: ingress\r\nconnection: close\r\n\r\n".encode()
            )
            data = await asyncio.wait_for(reader.read(-1), 5)
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    async def ready(self) -> bool:
        """Ready when one replica of every function is, the pipeline's included (cached for a
        second): a platform that answers but cannot index is not ready."""
        if time.monotonic() - self._ready_at < 1.0:
            return self._ready
        ok = True
        checked: set[int] = set()
        for fn in sorted(self.backends):
            if self.backends[fn][0].port in checked:
                continue
            checked.add(self.backends[fn][0].port)
            try:
                status, _ = await self._get(self.backends[fn][0], "/health/readiness")
            except (TimeoutError, OSError, ValueError, IndexError):
                status = 0
            if status != 200:
                ok = False
                break
        self._ready, self._ready_at = ok, time.monotonic()
        return ok

    async def openapi(self) -> bytes:
        """One document for the public API, merged from the public functions' own."""
        if self._openapi is not None:
            return self._openapi
        doc: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": "DeepLens API", "version": "0.1.0"},
            "paths": {},
            "components": {"schemas": {}},
        }
        seen: dict[int, Any] = defaultdict(int)
        complete = True
        for fn in self.public_functions():
            backend = self.backends[fn][0]
            if seen[backend.port]:
                continue
            seen[backend.port] = 1
            try:
                status, body = await self._get(backend, "/openapi.json")
                part = json.loads(body) if status == 200 else None
            except (TimeoutError, OSError, ValueError):
                part = None
            if part is None:
                complete = False
                continue
            for path, ops in part.get("paths", {}).items():
                if not path.startswith("/events/"):
                    doc["paths"][path] = ops
            doc["components"]["schemas"].update(part.get("components", {}).get("schemas", {}))
        text = json.dumps(doc).encode()
        if complete:
            self._openapi = text
        return text
