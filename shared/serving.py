"""Options for the HTTP server ``deeplens up`` runs (uvicorn), so slow clients cannot pin
connections (slowloris) and client addresses are not taken from headers.

- uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` but drops that
  timer at the first byte, so a client that sends headers slowly is never cut off:
  :class:`HeaderTimeoutH11` closes any connection whose request headers are not complete
  within ``header_timeout_seconds``;
- bodies: every read is bounded by ``body_read_timeout_seconds`` in shared/guards.py (any
  server);
- ``proxy_headers=False``: uvicorn would otherwise take X-Forwarded-For from any local client;
  shared/clientip.py believes it only from ``DEEPLENS_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.config import Settings


class HeaderTimeoutH11(H11Protocol):
    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # uvicorn cancels its keep-alive timer on any byte; ours runs until a request's
        # headers are complete (h11 leaves IDLE), and again while the next one's arrive.
        if self.conn.their_state is h11.IDLE:
            self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.timeout_keep_alive_handler()  # closes the connection


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    protocol = type(
        "DeepLensH11", (HeaderTimeoutH11,), {"header_timeout": settings.header_timeout_seconds}
    )
    return {"http": protocol, "proxy_headers": False, "timeout_keep_alive": 5}
