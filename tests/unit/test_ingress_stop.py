"""The local ingress stops quietly: a client whose request is still at a function when the
ingress shuts down is closed without an asyncio error in the platform's log."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from shared.local.ingress import Ingress


def test_stopping_with_a_request_in_flight_logs_no_error() -> None:
    errors: list[dict[str, Any]] = []
    reached = asyncio.Event()

    async def silent_function(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        reached.set()
        try:
            await asyncio.sleep(3600)  # never answers
        except asyncio.CancelledError:
            w.close()  # (this stand-in function closes quietly; the ingress is under test)

    async def main() -> socket.socket:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        fn = await asyncio.start_server(silent_function, "127.0.0.1", 0)
        port = fn.sockets[0].getsockname()[1]
        ingress = Ingress({"images": [f"127.0.0.1:{port}"]})
        front = await asyncio.start_server(ingress.serve_client, "127.0.0.1", 0)
        client = socket.create_connection(front.sockets[0].getsockname()[:2])
        client.sendall(b"GET /api/images/abc HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.wait_for(reached.wait(), 5)
        fn.close()  # the listeners; the connections stay open until the loop stops
        front.close()
        return client  # asyncio.run now cancels the ingress's client task, as at a stop

    client = asyncio.run(main())
    client.close()
    assert [c.get("message") for c in errors] == []
