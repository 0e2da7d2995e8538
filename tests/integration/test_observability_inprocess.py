"""In one process with the in-process broker (today's `deeplens up`): the in-memory span
exporter shows each image's stages in one trace under the upload request, and a poison event
moves the retried and dead-lettered counters by exactly its attempts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from events.broker import LocalBroker
from events.codec import Event
from shared.telemetry import setup_telemetry
from tests.conftest import Platform, wait_for
from tests.metrics_scrape import Scrape
from tests.photos import encode, photo

pytestmark = pytest.mark.integration
UPLOADED = "io.deeplens.image.uploaded.v1"
TRIGGER = "process-image-on-uploaded"


def test_stages_share_the_upload_trace_and_dead_letters_are_counted(platform: Platform) -> None:
    exporter = InMemorySpanExporter()
    setup_telemetry("test", extra_processor=SimpleSpanProcessor(exporter))
    p = platform
    settings = p.container.settings.model_copy(
        update={"broker_max_attempts": 2, "broker_backoff_seconds": 0.05}
    )
    broker = LocalBroker(p.container.db, p.fn.handle, settings, sweep_every=3600)
    broker.wakeup = p.container.publisher.wakeup
    broker.start()
    try:
        before = Scrape(p.client.get("/metrics").text)
        t = p.signup()
        ids = []
        for name in ("rocket.jpg", "coffee.png"):
            r = p.client.post(
                "/api/images/upload",
                headers=t["headers"],
                files={"file": (name.split(".")[0] + ".jpg", encode(photo(name)))},
            )
            ids.append(r.json()["imageId"])

        def indexed() -> bool:
            return all(
                p.client.get(f"/api/images/{i}", headers=t["headers"]).json()["status"] == "indexed"
                for i in ids
            )

        wait_for(indexed)
        spans = exporter.get_finished_spans()
        by_id = {s.context.span_id: s for s in spans}

        def root(s: ReadableSpan) -> ReadableSpan:
            while s.parent is not None and s.parent.span_id in by_id:
                s = by_id[s.parent.span_id]
            return s

        for image_id in ids:
            stages = [
                s
                for s in spans
                if (s.attributes or {}).get("image.id") == image_id
                and s.name in ("image.process", "image.extract", "image.index")
            ]
            assert sorted(s.name for s in stages) == [
                "image.extract",
                "image.index",
                "image.process",
            ]
            assert len({s.context.trace_id for s in stages}) == 1
            roots = {root(s).name for s in stages}
            assert roots == {"POST /api/images/upload"}, roots

        poison = Event(
            type=UPLOADED,
            source="/test",
            data={"imageId": str(uuid.uuid4())},
            extensions={"tenantid": t["tenant"]["id"]},
        )
        p.container.publisher.publish(poison)

        def dead() -> Any:
            with p.container.db.tx() as conn:
                return conn.execute(
                    "SELECT 1 FROM failed_events WHERE event_id = %s", (poison.id,)
                ).fetchone()

        wait_for(dead)
        after = Scrape(p.client.get("/metrics").text)

        def moved(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        assert moved("deeplens_events_retried_total", type=UPLOADED, trigger=TRIGGER) == 1
        assert moved("deeplens_events_dead_lettered_total", type=UPLOADED, trigger=TRIGGER) == 1
        assert moved("deeplens_events_delivered_total", type=UPLOADED, trigger=TRIGGER) == 2
        assert moved("deeplens_events_published_total", type=UPLOADED) == 3
        assert moved("deeplens_pipeline_stage_total", stage="process-image", outcome="ok") == 2
        # The state gauges are read from the database (cached 5 s).
        wait_for(
            lambda: Scrape(p.client.get("/metrics").text).value("deeplens_failed_events") == 1,
            timeout=15,
            interval=0.5,
        )
    finally:
        broker.stop()
