"""Slow clients against the server ``deeplens up`` runs (uvicorn with shared/serving.py's
options): a connection that never finishes its headers is closed after the header timeout."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from shared.config import Settings
from shared.guards import InputGuard
from shared.serving import uvicorn_options


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def serve(asgi: Any, settings: Settings) -> tuple[uvicorn.Server, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(asgi, log_level="warning", lifespan="off", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, port


def closed_within(port: int, payload: bytes, seconds: float) -> float | None:
    """Send ``payload`` and wait; the time until the server closed, or None."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(payload)
        s.settimeout(seconds)
        t0 = time.monotonic()
        try:
            while True:
                data = s.recv(1024)
                if not data:
                    return time.monotonic() - t0
        except TimeoutError:
            return None


def test_slow_headers_are_cut_off() -> None:
    settings = Settings.from_env({"DEEPLENS_HEADER_TIMEOUT_SECONDS": "1"})
    server, port = serve(app, settings)
    try:
        # 16 slowloris connections: all closed by the server within ~1 s.
        results: list[float | None] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(
                    closed_within(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ", 5)
                )
            )
            for _ in range(16)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(results) == 16 and all(r is not None and r < 3 for r in results), results
        # A normal request is unaffected.
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True


def test_slow_bodies_are_cut_off() -> None:
    settings = Settings.from_env({"DEEPLENS_HEADER_TIMEOUT_SECONDS": "5"})
    server, port = serve(InputGuard(app, body_timeout=1.0), settings)
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 100\r\n\r\nabc"
            )
            s.settimeout(5)
            assert b" 408 " in s.recv(1024).split(b"\r\n")[0] + b" "
    finally:
        server.should_exit = True
