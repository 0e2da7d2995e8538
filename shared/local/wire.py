"""HTTP/1.1 on asyncio streams for the local ingress (shared/local/ingress.py): head parsing,
message framing (Content-Length or chunked, both refused together), bodies copied in chunks,
never buffered whole, and a keep-alive connection pool per function process."""

from __future__ import annotations

import asyncio
import json
import socket
import time

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
