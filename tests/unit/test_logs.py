"""Structured logs: JSON lines with trace/span/tenant/event ids, text on a terminal, and the
credential scrubber as a second wall."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from shared.logs import JsonFormatter, TextFormatter, bind_event, bound, scrub, setup_logging


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("deeplens.test", logging.INFO, __file__, 1, msg, args, None)


def test_json_line_carries_trace_tenant_and_event_ids() -> None:
    tracer = TracerProvider().get_tracer("t")
    fmt = JsonFormatter()
    with tracer.start_as_current_span("x") as span, bound(tenant_id="t-1", event_id="e-1"):
        doc = json.loads(fmt.format(record("hello %s", "world")))
        ctx = span.get_span_context()
    assert doc["message"] == "hello world"
    assert doc["level"] == "info" and doc["logger"] == "deeplens.test"
    assert doc["trace_id"] == format(ctx.trace_id, "032x")
    assert doc["span_id"] == format(ctx.span_id, "016x")
    assert doc["tenant_id"] == "t-1" and doc["event_id"] == "e-1"
    assert doc["timestamp"].endswith("+00:00")
    # Outside the block: none of them.
    doc = json.loads(fmt.format(record("bye")))
    assert "trace_id" not in doc and "tenant_id" not in doc and "event_id" not in doc


def test_bind_event_lasts_for_the_context() -> None:
    import contextvars

    def inner() -> dict[str, str]:
        bind_event("ev-9", "ten-9")
        out: dict[str, str] = json.loads(JsonFormatter().format(record("m")))
        return out

    doc = contextvars.copy_context().run(inner)
    assert doc["event_id"] == "ev-9" and doc["tenant_id"] == "ten-9"


def test_scrub_masks_credentials_but_not_words() -> None:
    jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjM0NTYifQ.c2lnbmF0dXJlLWJ5dGVz"
    line = (
        f"Authorization: Bearer {jwt} key=dl_ab12cd_Zm9vYmFyYmF6cXV4 "
        '{"password": "correct horse", "refreshToken": "abc"} token=xyz'
    )
    out = scrub(line)
    for secret in (jwt, "dl_ab12cd_Zm9vYmFyYmF6cXV4", "correct horse", "xyz"):
        assert secret not in out
    assert scrub("refresh token expired for user") == "refresh token expired for user"
    assert scrub("3 tokens issued") == "3 tokens issued"


def test_text_on_a_terminal_json_otherwise(monkeypatch: object) -> None:
    import sys

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        for tty, expected in ((True, TextFormatter), (False, JsonFormatter)):
            stream = Tty() if tty else io.StringIO()
            monkeypatch.setattr(sys, "stderr", stream)  # type: ignore[attr-defined]
            setup_logging("unit", "auto")
            consoles = [h for h in root.handlers if isinstance(h.formatter, expected)]
            assert consoles, expected
            logging.getLogger("deeplens.unit").warning("token=abc123 seen")
            written = stream.getvalue()
            assert "abc123" not in written and "[redacted]" in written
            if not tty:
                assert json.loads(written.splitlines()[-1])["function"] == "unit"
        setup_logging("unit", "text")
        assert any(isinstance(h.formatter, TextFormatter) for h in root.handlers)
    finally:
        root.handlers[:] = saved
