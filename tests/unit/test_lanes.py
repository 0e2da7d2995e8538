"""Bulk and backfill events run on lower-priority threads; live ones do not (shared/lanes)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading

from events.codec import Event
from shared import lanes

where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="unset")


def event(priority: str | None) -> Event:
    ext = {"priority": priority} if priority else {}
    return Event(
        id="e1", type="dev.deeplens.image.uploaded", source="/test", data={}, extensions=ext
    )


def observe() -> tuple[int, str, str]:
    nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    return nice, threading.current_thread().name, where.get()


def test_bulk_and_backfill_events_run_at_a_lower_os_priority_live_ones_do_not() -> None:
    async def go(priority: str | None, enabled: bool = True) -> tuple[int, str, str]:
        where.set("request")
        return await lanes.run_for(event(priority), enabled, observe)

    base = os.getpriority(os.PRIO_PROCESS, 0)
    for priority in ("bulk", "low"):
        nice, thread, ctx = asyncio.run(go(priority))
        assert nice == base + lanes.BACKGROUND_NICE and thread.startswith("background")
        assert ctx == "request"  # the caller's context (logs, traces) travels
    nice, thread, ctx = asyncio.run(go(None))
    assert nice == base and not thread.startswith("background") and ctx == "request"
    nice, thread, _ = asyncio.run(go("bulk", enabled=False))  # DEEPLENS_BACKGROUND_LANE=false
    assert nice == base and not thread.startswith("background")
    # The lowered priority stays on the lane's threads, not on the process.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def test_the_bulk_gate_belongs_to_its_event_loop() -> None:
    """An in-process client runs each request on a new loop: each gets a gate of its own (a
    semaphore used on one loop fails on another), and a closed loop's gate is forgotten."""
    import gc

    async def hold() -> asyncio.Semaphore:
        gate = lanes.bulk_gate(1)
        async with gate:
            assert lanes.bulk_gate(1) is gate  # the same loop: the same gate
        return gate

    first = asyncio.run(hold())
    second = asyncio.run(hold())
    assert first is not second
    gc.collect()
    assert len(lanes._GATES) == 0
