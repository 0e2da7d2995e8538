"""The entry point func's Python scaffolding imports: ``from function import new``.

``new()`` returns one function instance following func-python's contract: async ASGI
``handle``, ``start(cfg)``, ``stop()``, ``alive()``, ``ready()``. ``FUNCTION_TARGET`` picks
the function to serve (one Knative Service each); a comma-separated list serves a group in one
process (``deeplens up``'s layout); unset, every function is served (single-process mode).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Unpack

from fastapi import FastAPI

from functions import FUNCTIONS
from shared import apidocs
from shared.config import Settings
from shared.guards import InputGuard
from shared.http import BodyLimit, Receive, Scope, Send, install_error_handlers
from shared.logs import setup_logging
from shared.observe import App as ASGI
from shared.observe import observe
from shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from events.broker import LocalBroker
    from shared.bootstrap import Adapters, Container

log = logging.getLogger("deeplens")


def new(
    target: str | None = None, *, only: list[str] | None = None, **overrides: Unpack[Adapters]
) -> DeepLensFunction:
    """Construct the function instance (func-python calls this with no arguments)."""
    return DeepLensFunction(target, only=only, **overrides)


class DeepLensFunction:
    def __init__(
        self,
        target: str | None = None,
        *,
        only: list[str] | None = None,
        **overrides: Unpack[Adapters],
    ):
        if target is None:  # func-python's new() takes no arguments: the platform's variable
            target = Settings.from_env(os.environ).function_target
        self.target = target or None
        if self.target and "," in self.target:  # a group of functions in one process
            only, self.target = [n.strip() for n in self.target.split(",") if n.strip()], None
        for name in [self.target] if self.target else (only or []):
            if name not in FUNCTIONS:
                raise ValueError(f"unknown FUNCTION_TARGET {name!r}; one of {sorted(FUNCTIONS)}")
        self.only = only
        self.overrides = overrides
        self.container: Container | None = None
        self.app: FastAPI | None = None
        self.broker: LocalBroker | None = None
        self.modules: list[ModuleType] = []

    @property
    def names(self) -> list[str]:
        if self.target:
            return [self.target]
        return list(self.only) if self.only else list(FUNCTIONS)

    def start(self, cfg: Mapping[str, str]) -> None:
        """Open the pool, clients and model; called once before the first request."""
        from shared.bootstrap import Container

        settings = Settings.from_env(cfg)
        setup_logging(self.target or settings.process or "deeplens", settings.log_format)
        setup_telemetry(f"deeplens-{self.target or 'all'}", traces_file=settings.traces_file)
        self.modules = [importlib.import_module(FUNCTIONS[n]) for n in self.names]
        container = Container(settings, **self.overrides)
        container.open()
        self.container = container
        app = FastAPI(
            title=f"DeepLens {self.target or 'platform'}",
            version="0.1.0",
            docs_url=None,
            redoc_url=None,
        )
        app.state.container = container
        install_error_handlers(app)
        apidocs.install(app)
        for module in self.modules:
            app.include_router(module.router)
        for module in self.modules:
            warm = getattr(module, "warm", None)
            if warm is not None:
                warm(container)
        self.app = app
        inner: ASGI = app
        for module in self.modules:  # reads served before FastAPI (shared/hotpath/fastread.py)
            hot = getattr(module, "hot", None)
            if hot is not None:
                inner = hot(inner, container)
        # FastAPI itself opens a server span per request ("POST /api/auth/login").
        from shared.hotpath import QuotaGate

        # Outermost the metrics (every answer counted, 429s included); then data-plane calls
        # are authenticated and counted before any body is read; then body limits and guards.
        self._asgi = observe(  # RED metrics per route, GET /metrics (shared/observe.py)
            QuotaGate(
                BodyLimit(
                    InputGuard(inner, body_timeout=settings.body_read_timeout_seconds),
                    json_limit=settings.max_json_bytes,
                    upload_limit=settings.max_upload_bytes,
                ),
                lambda: container.gate,
            ),
            settings,
            container.db,
        )
        if settings.broker == "local" and self.target is None and settings.broker_autostart:
            from events.broker import LocalBroker
            from events.publisher import LocalPublisher

            broker = self.broker = LocalBroker(
                container.db,
                self.handle,
                settings,
                lease_seconds=settings.broker_lease_seconds,
                sweep_every=settings.sweeper_interval_seconds,
            )
            publisher = container.publisher
            if isinstance(publisher, LocalPublisher):
                broker.wakeup = publisher.wakeup  # an upload wakes the broker at once
            broker.start(reclaim=True)
        log.info("started %s", ", ".join(self.names))

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.container is not None:
            self.container.close()
            self.container = None
        self.app = None

    def alive(self) -> tuple[bool, str]:
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        if self.app is None or self.container is None:
            return False, "starting"
        if not self.container.db.healthy():
            return False, "database unavailable"
        return True, "ready"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served by func-python or deeplens up, not here
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            return
        if self.app is None:
            body = b'{"error":{"code":"not_ready","message":"function is starting"}}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self._asgi(scope, receive, send)
