"""What func-python does around a function instance, for ``deeplens up``: lifespan calls
start/stop, /health/liveness and /health/readiness answer from alive()/ready()."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from shared.http import Receive, Scope, Send

if TYPE_CHECKING:
    from function import DeepLensFunction


class LocalServer:
    def __init__(
        self,
        fn: DeepLensFunction,
        env: Mapping[str, str],
        on_stop: Callable[[], None] | None = None,
    ):
        self.fn, self.env, self.on_stop = fn, env, on_stop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        self.fn.start(self.env)
                    except Exception as exc:  # noqa: BLE001 - reported to the server
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.fn.stop()
                    if self.on_stop is not None:
                        self.on_stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http" and scope["path"] in ("/health/liveness", "/health/readiness"):
            ok, msg = self.fn.alive() if scope["path"].endswith("liveness") else self.fn.ready()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200 if ok else 500,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": str(msg).encode()})
            return
        await self.fn.handle(scope, receive, send)
