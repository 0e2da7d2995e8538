"""Background lanes: bulk and backfill work runs on threads of a lower OS scheduling priority.

A live upload and a ``deeplens ingest`` share the same function processes and the same cores.
The broker already serves live deliveries first (the ``priority`` extension) and keeps a slot
free for them, but once a live event is in a process it competes for the CPU with every bulk
image already in flight there. Here, an event whose ``priority`` extension is ``bulk`` or
``low`` runs its handler on a thread pool whose threads have nice ``BACKGROUND_NICE``: the
kernel gives live threads the cores first (a nice-10 thread gets about a tenth of a core
against a nice-0 one), and bulk work still takes every idle cycle, so an ingest alone runs as
fast as before. On Linux, nice is per thread; raising one's own nice needs no privilege, so it
works in an unprivileged container too. The heavy parts of a handler (JPEG decoding, resizing,
WebP encoding, ORB, ONNX Runtime inference) release the interpreter lock, which is where the
kernel's priority takes effect. ``DEEPLENS_BACKGROUND_LANE=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from events.codec import Event

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKGROUND_NICE = 10
BACKGROUND_PRIORITIES = frozenset({"bulk", "low"})
_THREADS = 16  # bounded by the broker's deliveries in flight per replica anyway


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (OSError, AttributeError) as exc:  # not Linux, or refused: same lane, no nice
        log.debug("background lane without a lower priority: %s", exc)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        _THREADS, thread_name_prefix="background", initializer=_lower_priority
    )


# Per event loop (a semaphore belongs to the loop it was first used on; an in-process test
# client runs each request on a loop of its own), forgotten with the loop.
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def bulk_gate(at_once: int) -> asyncio.Semaphore:
    """This event loop's gate for bulk uploads: at most ``at_once`` are read, checked and
    stored at a time; the rest wait, their bodies unread, while live requests go straight
    through. Eight import clients would otherwise keep eight uploads in the process at once,
    and a live upload or a live index-vector delivery queued behind all of them."""
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    gate = gates.get(at_once)
    if gate is None:
        gate = gates[at_once] = asyncio.Semaphore(max(1, at_once))
    return gate


def is_background(event: Event) -> bool:
    return event.extensions.get("priority") in BACKGROUND_PRIORITIES


async def run_for(event: Event, enabled: bool, fn: Callable[..., T], *args: Any) -> T:
    """Run the handler ``fn(*args)`` off the event loop: on the background lane for bulk and
    backfill events (when ``enabled``), else on the usual worker threads."""
    return await run_in_lane(enabled and is_background(event), fn, *args)


async def run_in_lane(background: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the background lane, or on the usual worker threads."""
    if background:
        ctx = contextvars.copy_context()  # the log and trace context travel, as with to_thread
        call = functools.partial(ctx.run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(_pool(), call)
    return await run_in_threadpool(fn, *args)
