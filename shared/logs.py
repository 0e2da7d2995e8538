"""Structured logs: one JSON object per line off a terminal, readable text on one.

Each JSON line has ``timestamp``, ``level``, ``logger``, ``message``, ``function`` and, where
known, ``trace_id`` / ``span_id`` (the current OpenTelemetry span, so a log line finds its
trace), ``tenant_id`` and ``event_id`` (bound by the use-case span and the event endpoints).
``DEEPLENS_LOG_FORMAT=json|text`` overrides the terminal test.

Secrets never reach a log by construction (SecretStr, no request bodies logged); as a second
wall every line is scrubbed of anything shaped like a bearer token, a JWT, an API key or a
refresh token before it is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)
EVENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
_service = {"name": "deeplens"}

SECRET_SHAPES = re.compile(
    r"(?i)(bearer\s+)\S+"  # Authorization values
    r"|eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"  # JWTs
    r"|\bdl_[A-Za-z0-9]+_[A-Za-z0-9_-]{8,}"  # API keys
    r"|((?:password|secret|token|api[_-]?key)[\"']?\s*[:=]\s*)"
    r"(?:\"[^\"]*\"|'[^']*'|[^\s\"',}]+)"
)


def scrub(text: str) -> str:
    """Mask anything shaped like a credential (the second wall; see the module doc)."""
    return SECRET_SHAPES.sub(lambda m: (m.group(1) or m.group(2) or "") + "[redacted]", text)


@contextmanager
def bound(*, tenant_id: object = None, event_id: object = None) -> Iterator[None]:
    """Attach a tenant and/or event id to every log line written inside the block."""
    tokens = []
    if tenant_id is not None:
        tokens.append((TENANT, TENANT.set(str(tenant_id))))
    if event_id is not None:
        tokens.append((EVENT, EVENT.set(str(event_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_event(event_id: str, tenant_id: str | None) -> None:
    """For the rest of this request's context (an event endpoint's handling)."""
    EVENT.set(event_id)
    if tenant_id:
        TENANT.set(tenant_id)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "function": _service["name"],
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            doc["trace_id"] = format(ctx.trace_id, "032x")
            doc["span_id"] = format(ctx.span_id, "016x")
        tenant, event = TENANT.get(), EVENT.get()
        if tenant:
            doc["tenant_id"] = tenant
        if event:
            doc["event_id"] = event
        if record.exc_info:
            doc["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is now (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _is_console(h: logging.Handler) -> bool:
    return type(h) in (logging.StreamHandler, _StderrHandler) and getattr(h, "stream", None) in (
        sys.stderr,
        sys.stdout,
    )


def json_logs(fmt: str = "auto") -> bool:
    """Whether log lines are JSON: asked for, or automatic and stderr is not a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def setup_logging(function: str, fmt: str = "auto", *, level: int | None = None) -> None:
    """Format every console handler of the root logger (func-python's basicConfig one
    included) as JSON or text; add one on stderr when there is none. Idempotent."""
    _service["name"] = function
    use_json = json_logs(fmt)
    formatter: logging.Formatter = JsonFormatter() if use_json else TextFormatter()
    root = logging.getLogger()
    consoles = [h for h in root.handlers if _is_console(h)]
    if not consoles:
        handler = _StderrHandler()
        root.addHandler(handler)
        consoles = [handler]
    for h in consoles:
        h.setFormatter(formatter)
    if level is not None:
        root.setLevel(level)
