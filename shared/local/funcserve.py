"""One function process of ``deeplens up``: exactly what func's Python scaffolding runs in
production (``func_python.http.serve(new)``: hypercorn around ``function.new()``, lifespan
calling start/stop, /health/* answered from alive()/ready()), with ``FUNCTION_TARGET`` and
``LISTEN_ADDRESS`` (127.0.0.1 only) set by the supervisor.

    FUNCTION_TARGET=auth LISTEN_ADDRESS=127.0.0.1:9001 python -m shared.local.funcserve
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from shared.http import Receive, Scope, Send

if TYPE_CHECKING:
    from function import DeepLensFunction

ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


def trust_ingress(handle: ASGI) -> ASGI:
    """The client address is the one the local ingress saw: it replaces any X-Forwarded-For
    a client sent with the peer address, so one hop is trusted (sign-in throttling per address
    keeps working behind it). Function ports listen on 127.0.0.1 only."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    scope["client"] = (value.decode("latin-1").rsplit(",", 1)[-1].strip(), 0)
                    break
        await handle(scope, receive, send)

    return app


def new() -> DeepLensFunction:
    """func-python's constructor, with the ingress's client address applied."""
    import function

    fn = function.new()
    fn.handle = trust_ingress(fn.handle)  # type: ignore[method-assign,assignment]
    return fn


def fast_loop(env: Mapping[str, str]) -> bool:
    """libuv's event loop (uvloop) under func-python's ``asyncio.run`` when it is installed
    (DEEPLENS_UVLOOP=false keeps asyncio's own): the same server, less CPU per request."""
    if env.get("DEEPLENS_UVLOOP", "true").lower() in ("0", "false", "no", "off"):
        return False
    try:
        import uvloop
    except ImportError:
        return False

    class Policy(uvloop.EventLoopPolicy):  # type: ignore[misc]
        def _loop_factory(self) -> uvloop.Loop:
            loop = uvloop.new_event_loop()
            loop.set_exception_handler(_quiet_cancellation)
            return loop

    asyncio.set_event_loop_policy(Policy())
    return True


def _quiet_cancellation(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A connection's task cancelled at shutdown is no error: under uvloop, Python 3.11's
    stream callback reports each such task ("Exception in callback ... CancelledError")."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def main() -> None:
    from func_python.http import serve

    from shared.config import Settings
    from shared.logs import setup_logging

    # JSON lines off a terminal, text on one (shared/logs.py), from the first line on.
    settings = Settings.from_env(os.environ)
    setup_logging(settings.process or "fn", settings.log_format, level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    # func-python builds hypercorn's Config itself; hypercorn writes its own lines through a
    # handler of its own unless errorlog is a Logger, which it then uses as it is: ours, so
    # its lines come out in the platform's format too.
    import hypercorn.config

    hypercorn.config.Config.errorlog = logging.getLogger("hypercorn.error")
    # Imported while the supervisor starts the database; served once it is up (gate.py).
    from shared.local.gate import preload, wait_at_gate

    preload(settings.function_target)
    wait_at_gate(os.environ)
    fast_loop(os.environ)
    serve(new)


if __name__ == "__main__":
    main()
