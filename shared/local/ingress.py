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

from functions.routes import route
from shared.local.answers import SelfAnswers
from shared.local.wire import (
    CHUNK,
    HOP,
    MAX_HEAD,
    Backend,
    BadRequest,
    copy_chunked,
    copy_exact,
    error_json,
    framing,
    parse_head,
    simple_response,
)

log = logging.getLogger("deeplens.ingress")
SMALL_BODY = 64 * 1024  # answers up to this size are forwarded in one write


class Ingress(SelfAnswers):
    """The proxy: one request at a time per client connection, forwarded to the least busy
    replica of the routed function (the answers it gives itself: shared/local/answers.py)."""

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
        stopping = False
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
        except asyncio.CancelledError:
            # The ingress is stopping with this client's request in flight: close quietly
            # (Python 3.11's stream callback logs a cancelled client task as an error).
            stopping = True
            return
        finally:
            if not stopping:
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
        except asyncio.CancelledError:
            b_writer.close()  # stopping: the function's connection is not left to the GC
            raise
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
        try:
            if not no_body and r_length and r_length <= SMALL_BODY:
                # A small answer (most are) leaves in one write, head and body together: one
                # send instead of two, and the client reads it whole.
                resp.append(await b_reader.readexactly(r_length))
                no_body = True
            writer.write(b"".join(resp))
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
    from shared.config import Settings
    from shared.logs import setup_logging

    settings = Settings.from_env(os.environ)
    setup_logging("ingress", settings.log_format, level=logging.INFO)
    backends = json.loads(settings.ingress_backends)
    from shared.local.funcserve import fast_loop

    fast_loop(os.environ)
    asyncio.run(serve(args.host, args.port, backends, fd=args.fd))


if __name__ == "__main__":
    main()
