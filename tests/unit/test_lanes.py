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

    gc.collect()
    before = len(lanes._GATES)  # other tests' loops may still be alive
    first = asyncio.run(hold())
    second = asyncio.run(hold())
    assert first is not second
    gc.collect()
    assert len(lanes._GATES) <= before  # both loops' gates are gone with them


def test_threads_and_models_started_from_the_lane_run_at_normal_priority() -> None:
    """A thread inherits its creator's nice and cannot lower it again: a worker, batcher or
    model runtime first started by bulk work would serve live work at the lane's priority for
    good. Threads a lane thread starts, and what it runs through at_normal_priority, are
    started at the process's priority."""
    base = os.getpriority(os.PRIO_PROCESS, 0)

    def start_a_thread() -> tuple[int, int, int]:
        seen: list[int] = []
        t = threading.Thread(target=lambda: seen.append(observe()[0]))
        t.start()
        t.join()
        here = observe()[0]
        loaded = lanes.at_normal_priority(lambda: observe()[0])
        return here, seen[0], loaded

    async def go() -> tuple[int, int, int]:
        return await lanes.run_for(event("bulk"), True, start_a_thread)

    here, child, loaded = asyncio.run(go())
    assert here == base + lanes.BACKGROUND_NICE
    assert child == base and loaded == base

    # Errors come back to the caller.
    def fail() -> None:
        raise ValueError("boom")

    async def go_fail() -> None:
        await lanes.run_for(event("bulk"), True, lambda: lanes.at_normal_priority(fail))

    import pytest

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(go_fail())
