"""The local ingress of ``deeplens up``: one public port, paths routed to function processes
from the route table that infra/knative/routes.yaml is generated from (functions/routes.py).

A small HTTP/1.1 reverse proxy on asyncio streams: keep-alive on both sides, bodies streamed
(Content-Length or chunked, never buffered whole), ``Expect: 100-continue`` answered here.
It never routes ``/events/*`` (404, as for any unrouted path): only the broker reaches the
event endpoints, as cluster-local services on Knative. It answers ``/health/liveness``
itself, ``/health/readiness`` from the functions' readiness, and serves ``/docs`` and
``/openapi.json`` merged from the public functions. Clients' own ``X-Forwarded-*`` headers are
replaced with what the ingress saw.

Several ingress processes may share the port (SO_REUSEPORT); each holds its own connection pools.

    DEEPLENS_INGRESS_BACKENDS='{"auth": ["127.0.0.1:9001"], ...}' \\
        python -m shared.local.ingress --host 127.0.0.1 --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import time
from collections import defaultdict
from typing import Any

from functions.routes import ROUTES, route

log = logging.getLogger("deeplens.ingress")

HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"upgrade",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
}
MAX_HEAD = 64 * 1024
IDLE_BACKEND = 3.0  # hypercorn closes idle keep-alive connections after 5 s
CHUNK = 256 * 1024


class BadRequest(Exception):
    pass


class Backend:
    """A keep-alive connection pool to one function process."""

    def __init__(self, address: str):
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.inflight = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        now = time.monotonic()
        while self.idle:
            t, reader, writer = self.idle.pop()
            if now - t < IDLE_BACKEND and not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer, False

    def release(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.idle) < 64:
            self.idle.append((time.monotonic(), reader, writer))
        else:
            writer.close()


def parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadRequest("malformed header")
        headers.append((name.lower(), value.strip()))
    return lines[0], headers


def framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """(content length, chunked) of a message; a message with both is refused."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise BadRequest("bad content-length")
            length = int(value)
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked":
                raise BadRequest("unsupported transfer-encoding")
            chunked = True
    if chunked and length is not None:
        raise BadRequest("content-length with chunked")
    return length, chunked


async def copy_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        data = await reader.read(min(n, CHUNK))
        if not data:
            raise ConnectionError("peer closed mid-body")
        writer.write(data)
        n -= len(data)
        await writer.drain()


async def copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Forward a chunked body as is (framing included), up to and including the trailer."""
    while True:
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise BadRequest("bad chunk size") from exc
        if size == 0:
            while True:  # trailer lines, then the empty line
                trailer = await reader.readuntil(b"\r\n")
                writer.write(trailer)
                if trailer == b"\r\n":
                    await writer.drain()
                    return
        await copy_exact(reader, writer, size + 2)


def simple_response(
    status: int, body: bytes, ctype: bytes = b"application/json", *, close: bool = False
) -> bytes:
    reason = {
        200: b"OK",
        400: b"Bad Request",
        404: b"Not Found",
        502: b"Bad Gateway",
        503: b"Service Unavailable",
    }.get(status, b"Error")
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
        status,
        reason,
        ctype,
        len(body),
    )
    if close:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body


def error_json(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class Ingress:
    def __init__(self, backends: dict[str, list[str]]):
        self.backends = {fn: [Backend(a) for a in addrs] for fn, addrs in backends.items()}
        self._ready_at = 0.0
        self._ready = False
        self._openapi: bytes | None = None

    def pick(self, fn: str) -> Backend:
        pool = self.backends[fn]
        return pool[0] if len(pool) == 1 else min(pool, key=lambda b: b.inflight)

    async def serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = peer[0] if peer else ""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                except asyncio.LimitOverrunError:
                    writer.write(
                        simple_response(
                            400, error_json("bad_request", "headers too large"), close=True
                        )
                    )
                    return
                try:
                    keep = await self.one_request(head, reader, writer, client_ip)
                except BadRequest as exc:
                    writer.write(
                        simple_response(400, error_json("bad_request", str(exc)), close=True)
                    )
                    return
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        finally:
            try:
                await writer.drain()
            except ConnectionError:
                pass
            writer.close()

    async def one_request(
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_ip: str,
    ) -> bool:
        request_line, headers = parse_head(head)
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise BadRequest("malformed request line")
        method, target, version = parts
        length, chunked = framing(headers)
        conn_tokens = b",".join(v.lower() for n, v in headers if n == b"connection")
        keep = (b"close" not in conn_tokens) and (
            version == b"HTTP/1.1" or b"keep-alive" in conn_tokens
        )
        path = target.split(b"?", 1)[0].decode("latin-1")
        m = method.decode("latin-1")
        local = await self.local(m, path)
        fn = route(m, path) if local is None else None
        if fn is None and local is None and path == "/metrics":
            # The platform's scrape (not in the public route table: on Knative Prometheus
            # scrapes each pod). In multiprocess mode any process answers for all of them.
            fn = "admin"
        if local is not None or fn is None:
            if length:  # drain a small body so the connection stays usable
                if length > 1024 * 1024:
                    keep = False
                else:
                    await reader.readexactly(length)
            elif chunked:
                keep = False
            status, body, ctype = local or (
                404,
                error_json("not_found", "Not Found"),
                b"application/json",
            )
            writer.write(simple_response(status, body, ctype, close=not keep))
            await writer.drain()
            return keep
        if any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        host = next((v for n, v in headers if n == b"host"), b"")
        out = [method + b" " + target + b" HTTP/1.1\r\n"]
        for name, value in headers:
            if name not in HOP:
                out.append(name + b": " + value + b"\r\n")
        out.append(b"x-forwarded-for: " + client_ip.encode() + b"\r\n")
        out.append(b"x-forwarded-proto: http\r\nx-forwarded-host: " + host + b"\r\n\r\n")
        backend = self.pick(fn)
        backend.inflight += 1
        try:
            try:
                b_reader, b_writer, reused = await backend.connect()
            except OSError:
                if length:
                    keep = keep and length <= 1024 * 1024
                    if keep:
                        await reader.readexactly(length)
                else:
                    keep = keep and not chunked
                writer.write(
                    simple_response(
                        503,
                        error_json("unavailable", f"the {fn} function is not available"),
                        close=not keep,
                    )
                )
                return keep
            return await self.exchange(
                method, out, reader, writer, b_reader, b_writer, backend, length, chunked, keep
            )
        finally:
            backend.inflight -= 1

    async def exchange(
        self,
        method: bytes,
        out: list[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        b_reader: asyncio.StreamReader,
        b_writer: asyncio.StreamWriter,
        backend: Backend,
        length: int | None,
        chunked: bool,
        keep: bool,
    ) -> bool:
        try:
            b_writer.write(b"".join(out))
            if chunked:
                await copy_chunked(reader, b_writer)
            elif length:
                await copy_exact(reader, b_writer, length)
            else:
                await b_writer.drain()
            while True:
                rhead = await b_reader.readuntil(b"\r\n\r\n")
                status_line, rheaders = parse_head(rhead)
                status = int(status_line.split(b" ", 2)[1])
                if status >= 200:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest, ValueError):
            b_writer.close()
            writer.write(
                simple_response(502, error_json("bad_gateway", "the function failed"), close=True)
            )
            return False
        r_length, r_chunked = framing(rheaders)
        b_conn = b",".join(v.lower() for n, v in rheaders if n == b"connection")
        no_body = method == b"HEAD" or status in (204, 304)
        until_close = not no_body and r_length is None and not r_chunked
        reusable = b"close" not in b_conn and not until_close
        keep = keep and not until_close
        resp = [status_line + b"\r\n"]
        for name, value in rheaders:
            if name not in HOP:
                resp.append(name + b": " + value + b"\r\n")
        resp.append(b"connection: keep-alive\r\n\r\n" if keep else b"connection: close\r\n\r\n")
        writer.write(b"".join(resp))
        try:
            if not no_body:
                if r_chunked:
                    await copy_chunked(b_reader, writer)
                elif r_length:
                    await copy_exact(b_reader, writer, r_length)
                elif until_close:
                    while data := await b_reader.read(CHUNK):
                        writer.write(data)
                        await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, BadRequest):
            b_writer.close()
            return False
        if reusable:
            backend.release(b_reader, b_writer)
        else:
            b_writer.close()
        return keep

    # --- what the ingress answers itself -----------------------------------------------------
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


async def serve(host: str, port: int, backends: dict[str, list[str]], *, fd: int | None) -> None:
    ingress = Ingress(backends)
    if fd is not None:
        sock = socket.socket(fileno=fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    server = await asyncio.start_server(
        ingress.serve_client, sock=sock, limit=MAX_HEAD, backlog=1024
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="deeplens-ingress")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fd", type=int, default=None, help="an inherited listening socket")
    args = parser.parse_args(argv)
    from shared.logs import setup_logging

    setup_logging("ingress", os.environ.get("DEEPLENS_LOG_FORMAT", "auto"), level=logging.INFO)
    backends = json.loads(os.environ["DEEPLENS_INGRESS_BACKENDS"])
    asyncio.run(serve(args.host, args.port, backends, fd=args.fd))


if __name__ == "__main__":
    main()
