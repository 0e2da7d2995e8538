"""One-line recorders shared/ and events/ call where a decorator does not fit: database
statements, model calls, upload-to-indexed latency, the broker's publications and deliveries."""

from __future__ import annotations

from shared.metrics.instruments import (
    DB_DURATION,
    DEAD,
    DELIVERED,
    EXTRACT_BATCH,
    EXTRACT_DURATION,
    EXTRACTED,
    PUBLISHED,
    RETRIED,
    UPLOAD_TO_INDEXED,
    _state,
)


def db_statement(table: str, operation: str, seconds: float) -> None:
    if _state["on"]:
        DB_DURATION.labels(table, operation).observe(seconds)


def extracted(model: str, images: int, seconds: float) -> None:
    if _state["on"]:
        EXTRACT_BATCH.observe(images)
        EXTRACT_DURATION.labels(model).observe(seconds)
        EXTRACTED.labels(model).inc(images)


def indexed_after(seconds: float) -> None:
    if _state["on"]:
        UPLOAD_TO_INDEXED.observe(max(0.0, seconds))


def _trigger(subscriber: str) -> str:
    from events.triggers import TRIGGERS

    for t in TRIGGERS:
        if t.path == subscriber:
            return t.name
    return subscriber.rsplit("/", 1)[-1] or "unknown"


def trigger_names() -> set[str]:
    from events.triggers import TRIGGERS

    return {t.name for t in TRIGGERS}


def published(event_type: str) -> None:
    if _state["on"]:
        PUBLISHED.labels(event_type).inc()


def delivery(outcome: str, event_type: str, subscriber: str) -> None:
    """A broker delivery's fate: delivered, retried or dead (by event type and trigger)."""
    if _state["on"]:
        metric = {"delivered": DELIVERED, "retried": RETRIED, "dead": DEAD}[outcome]
        metric.labels(event_type, _trigger(subscriber)).inc()
