"""OpenTelemetry: the API is used everywhere in shared/; the SDK is configured once in start().

Spans are named by use case (``user.authenticate``, ``image.upload``) and carry ``tenant.id``.
OTLP export is configured by the standard OTEL_* variables when the exporter is installed.
``DEEPLENS_TRACES_FILE`` also appends every finished span as one JSON line to a file, which is
how the tests follow one image's trace across processes (each process appends its spans).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from shared.config import otlp_configured
from shared.logs import bound

log = logging.getLogger(__name__)
tracer = trace.get_tracer("deeplens")

_provider: TracerProvider | None = None
_files: set[Path] = set()


class JsonLinesExporter(SpanExporter):
    """One JSON object per finished span: name, ids, parent, service, attributes."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            ctx = s.get_span_context()
            if ctx is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "name": s.name,
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_id": format(s.parent.span_id, "016x") if s.parent else None,
                        "service": s.resource.attributes.get("service.name"),
                        "pid": os.getpid(),
                        "start": s.start_time,
                        "end": s.end_time,
                        "attributes": {k: str(v) for k, v in (s.attributes or {}).items()},
                    }
                )
            )
        # One write per batch with O_APPEND: processes sharing the file never interleave lines.
        data = "".join(line + "\n" for line in lines).encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return SpanExportResult.SUCCESS


def setup_telemetry(
    service_name: str,
    *,
    extra_processor: SpanProcessor | None = None,
    traces_file: Path | None = None,
) -> None:
    """Install the SDK tracer provider once per process (idempotent)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if otlp_configured():
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPSpanExporter,
                )

                _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            except ImportError:
                log.warning("OTEL endpoint set but opentelemetry-exporter-otlp is not installed")
        trace.set_tracer_provider(_provider)
    if extra_processor is not None:
        _provider.add_span_processor(extra_processor)
    if traces_file is not None and traces_file not in _files:
        _files.add(traces_file)
        _provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(traces_file)))


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A use-case span; attribute names use dots (``tenant_id`` → ``tenant.id``)."""
    attrs = {k.replace("_", "."): str(v) for k, v in attributes.items() if v is not None}
    with (
        tracer.start_as_current_span(name, attributes=attrs) as s,
        bound(tenant_id=attributes.get("tenant_id")),
    ):
        yield s
