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
import queue
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


_lane = threading.local()  # .background: this thread is one of the lane's


def _lower_priority() -> None:
    _lane.background = True
    try:
        tid = threading.get_native_id()
        # Relative to the process's own nice (an operator may already run it niced).
        nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (OSError, AttributeError) as exc:  # not Linux, or refused: same lane, no nice
        log.debug("background lane without a lower priority: %s", exc)


def in_lane() -> bool:
    return bool(getattr(_lane, "background", False))


# A thread inherits its creator's nice, and an unprivileged thread cannot lower its nice
# again: a worker pool, micro-batcher or model runtime first started from a lane thread (a
# backfill loading a model, say) would serve live work at the lane's priority for good. So
# threads a lane thread starts are started by a normal-priority spawner thread instead, and
# work that may start native threads (loading a model) runs there too.
_spawn_queue: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] = (
    queue.SimpleQueue()
)
_original_start = threading.Thread.start


def _spawner() -> None:
    while True:
        fn, slot, done = _spawn_queue.get()
        try:
            slot.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            slot.append((False, exc))
        done.set()


def at_normal_priority(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, run at the process's normal priority: on the spawner thread when called
    from a lane thread, else where it is."""
    if not in_lane():
        return fn(*args)
    slot: list[Any] = []
    done = threading.Event()
    _spawn_queue.put((functools.partial(fn, *args), slot, done))
    done.wait()
    ok, value = slot[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _start(self: threading.Thread) -> None:
    if in_lane():
        at_normal_priority(_original_start, self)
    else:
        _original_start(self)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # Made from a normal thread (the event loop's): the spawner, and the start() hook.
    _original_start(threading.Thread(target=_spawner, name="lane-spawner", daemon=True))
    threading.Thread.start = _start  # type: ignore[method-assign]
    return ThreadPoolExecutor(
        _THREADS, thread_name_prefix="background", initializer=_lower_priority
    )


# Per event loop (a semaphore belongs to the loop it was first used on; an in-process test
# client runs each request on a loop of its own), forgotten with the loop.
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def bulk_gate(at_once: int) -> asyncio.Semaphore:
    """This event loop's gate for bulk uploads: at most ``at_once`` are parsed, checked and
    stored at a time; the rest wait (their bodies received, as a live upload's are: a client
    that stalls mid-body never holds a slot) while live requests go straight through. Eight
    import clients would otherwise keep eight uploads in the process at once, and a live
    upload or a live index-vector delivery queued behind all of them."""
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
