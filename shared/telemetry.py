"""OpenTelemetry: the API is used everywhere in shared/; the SDK is configured once in start().

Spans are named by use case (``user.authenticate``, ``image.upload``) and carry ``tenant.id``.
OTLP export is configured by the standard OTEL_* variables when the exporter is installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log = logging.getLogger(__name__)
tracer = trace.get_tracer("deeplens")

_provider: TracerProvider | None = None


def setup_telemetry(service_name: str, *, extra_processor: SpanProcessor | None = None) -> None:
    """Install the SDK tracer provider once per process (idempotent)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
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


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A use-case span; attribute names use dots (``tenant_id`` → ``tenant.id``)."""
    attrs = {k.replace("_", "."): str(v) for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, attributes=attrs) as s:
        yield s
