"""Options for the HTTP server ``deeplens up`` runs (uvicorn), so slow clients cannot pin
connections (slowloris) and client addresses are not taken from headers.

- uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` but sets no timer
  on a NEW connection until its headers are complete: :class:`HeaderTimeoutH11` arms the same
  timer when the connection is made, so headers must arrive within ``header_timeout_seconds``;
- bodies: every read is bounded by ``body_read_timeout_seconds`` in shared/guards.py (any
  server);
- ``proxy_headers=False``: uvicorn would otherwise take X-Forwarded-For from any local client;
  shared/clientip.py believes it only from ``DEEPLENS_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.config import Settings


class HeaderTimeoutH11(H11Protocol):
    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Cancelled by uvicorn itself once the request line and headers are in.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.header_timeout, self.timeout_keep_alive_handler
        )


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    protocol = type(
        "DeepLensH11", (HeaderTimeoutH11,), {"header_timeout": settings.header_timeout_seconds}
    )
    return {"http": protocol, "proxy_headers": False, "timeout_keep_alive": 5}
