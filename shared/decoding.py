"""The memory budget for decoding images (used by shared/imaging.py).

A pixel limit alone does not bound memory: a 160 KB zero-filled 7000×7000 PNG passes it and
decodes to ~200 MB (Pillow keeps RGB at 4 bytes a pixel), and a few at once took a server to
gigabytes that it kept. So:

- each decode's cost is estimated from its header (width × height × bytes per pixel, plus the
  RGB copy a conversion makes) and refused past ``max_decoded_bytes`` (413);
- the decodes running at once in a process share ``budget_bytes``: a decode waits until its
  cost fits (one decode larger than the whole budget still runs, alone);
- big allocations are served by mmap (a fixed glibc threshold) and the heap is trimmed after a
  big decode, so resident memory comes back down after a burst instead of staying at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
_M_MMAP_THRESHOLD = -3
_BIG = 32 * 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    try:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name) if name else None
        if lib is not None and hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt"):
            return lib
    except OSError:
        pass
    return None


_LIBC = _libc()


class DecodeBudget:
    def __init__(self, budget_bytes: int, max_decoded_bytes: int):
        self.budget, self.max_decoded = budget_bytes, max_decoded_bytes
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        cost = max(0, min(cost, self.budget))
        with self._cond:
            # A decode bigger than the budget runs when nothing else does.
            while self.used and self.used + cost > self.budget:
                self._cond.wait()
            self.used += cost
        try:
            yield
        finally:
            with self._cond:
                self.used -= cost
                self._cond.notify_all()
            if cost >= _BIG:
                trim()


def trim() -> None:
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


_budget = DecodeBudget(512 * 1024 * 1024, 256 * 1024 * 1024)


def configure(budget_bytes: int, max_decoded_bytes: int) -> None:
    """Set this process's budget (called once at start from the settings)."""
    global _budget
    _budget = DecodeBudget(budget_bytes, max_decoded_bytes)
    if _LIBC is not None:
        # A fixed threshold (glibc otherwise raises it after each big free) keeps image
        # buffers in mmap, returned to the system as soon as they are freed.
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 4 * 1024 * 1024)


def budget() -> DecodeBudget:
    return _budget
