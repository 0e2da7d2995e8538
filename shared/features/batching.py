"""The micro-batcher: concurrent single-image requests merged into one forward pass (the
torch path; on a GPU it is what makes single requests fast)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from shared.features.extractor import Extractor


class _Job:
    __slots__ = ("arr", "regions", "done", "result", "error")

    def __init__(self, arr: np.ndarray, regions: bool):
        self.arr, self.regions = arr, regions
        self.done = threading.Event()
        self.result: tuple[np.ndarray, np.ndarray | None] | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Merges concurrent single-image requests into one batch: the first caller waits up to
    ``max_wait_ms`` for others, up to ``max_batch`` images, then one forward pass serves all.
    Requests for region vectors (the pipeline's) batch too: the pass pools the windows when
    any request in it asked for them, from the same feature map."""

    def __init__(self, extractor: Extractor, *, max_batch: int = 16, max_wait_ms: int = 5):
        self.extractor, self.max_batch, self.max_wait = extractor, max_batch, max_wait_ms / 1000
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()
        self.batches = 0

    def embed(self, data: bytes) -> np.ndarray:
        return self._submit(data, regions=False)[0]

    def embed_regions(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        whole, parts = self._submit(data, regions=True)
        assert parts is not None
        return whole, parts

    def _submit(self, data: bytes, *, regions: bool) -> tuple[np.ndarray, np.ndarray | None]:
        job = _Job(self.extractor.preprocess(data), regions)  # decoding in the caller's thread
        with self._cond:
            if self._stop:
                raise RuntimeError("the micro-batcher is closed")
            self._queue.append(job)
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    for job in self._queue:
                        job.error = RuntimeError("the micro-batcher is closed")
                        job.done.set()
                    self._queue = []
                    return
                deadline = time.monotonic() + self.max_wait
                while len(self._queue) < self.max_batch:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                arrays = np.stack([job.arr for job in batch])
                if any(job.regions for job in batch):
                    whole, parts = self.extractor.embed_batch_regions(arrays)
                else:
                    whole, parts = self.extractor.embed_arrays(arrays), None
                self.batches += 1
                for i, job in enumerate(batch):
                    job.result = (whole[i], None if parts is None or not job.regions else parts[i])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                for job in batch:
                    job.error = exc
            for job in batch:
                job.done.set()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
