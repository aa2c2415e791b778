"""Dynamic batching: concurrent requests to one local model become one ``generate`` call.

Requests are queued; one worker thread owns the model. It takes the first waiting item,
waits up to ``max_wait_s`` for more (requests also pile up while a batch runs), groups what
it has by key (same model or adapter, same decoding params), and runs each group as one
call. Items whose requester has gone (a timed-out request) are skipped. One thread owning
the model also makes adapter switching safe: nothing else runs while an adapter is active.

This is the "continuous batching" idea of Orca (Yu et al. 2022) at request granularity:
batches are formed between, not inside, ``generate`` calls.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["BatchStats", "Batcher"]

T = TypeVar("T")
R = TypeVar("R")

Execute = Callable[[Hashable, Sequence[T]], Sequence[R]]


@dataclass
class BatchStats:
    """What the worker did: calls made and the items in each."""

    calls: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int) -> None:
        """Count one ``execute`` call of ``size`` items."""
        self.calls += 1
        self.items += size
        self.sizes.append(size)


@dataclass
class _Job(Generic[T, R]):
    key: Hashable
    item: T
    future: Future[R]


_STOP = object()


class Batcher(Generic[T, R]):
    """A queue and one worker thread that runs items in batches.

    Args:
        execute: ``execute(key, items) -> results``, one result per item, in order. Runs
            on the worker thread only. An exception fails every item of that call.
        max_batch_size: most items per call.
        max_wait_s: how long the worker waits for more items after the first one.
        enabled: False runs every item alone, at once (the baseline batching is measured
            against).
        on_batch: called with each call's size (for metrics).
    """

    def __init__(
        self,
        execute: Execute[T, R],
        *,
        max_batch_size: int = 16,
        max_wait_s: float = 0.01,
        enabled: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._execute = execute
        self.max_batch_size = max_batch_size if enabled else 1
        self.max_wait_s = max_wait_s if enabled else 0.0
        self.enabled = enabled
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="ladder-batcher", daemon=True)
        self._worker.start()

    def submit(self, key: Hashable, item: T) -> Future[R]:
        """Queue ``item``; items with equal ``key`` may share a call. Thread-safe."""
        future: Future[R] = Future()
        self._queue.put(_Job(key, item, future))
        return future

    async def run(self, key: Hashable, item: T, timeout: float | None = None) -> R:
        """Submit and await the result. On timeout (or cancellation) a queued item is dropped.

        Raises:
            TimeoutError: no result within ``timeout`` seconds.
        """
        future = self.submit(key, item)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def close(self) -> None:
        """Stop the worker after the items already queued."""
        self._queue.put(_STOP)
        self._worker.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs = [first]
            stop = self._collect(jobs)
            for key, group in _grouped(jobs):
                for start in range(0, len(group), self.max_batch_size):
                    self._run(key, group[start : start + self.max_batch_size])
            if stop:
                return

    def _collect(self, jobs: list[_Job[T, R]]) -> bool:
        """Add waiting jobs to ``jobs`` until the wait is over; True when told to stop."""
        if not self.enabled:
            return False
        deadline = time.monotonic() + self.max_wait_s
        cap = self.max_batch_size * 4  # room for several keys' batches in one round
        while len(jobs) < cap:
            remaining = deadline - time.monotonic()
            try:
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                return False
            if job is _STOP:
                return True
            jobs.append(job)
        return False

    def _run(self, key: Hashable, jobs: list[_Job[T, R]]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.stats.record(len(live))
        if self._on_batch is not None:
            self._on_batch(len(live))
        try:
            results = self._execute(key, [j.item for j in live])
            if len(results) != len(live):
                raise RuntimeError(f"execute returned {len(results)} results for {len(live)} items")
        except BaseException as exc:  # handed to every waiting request
            for job in live:
                job.future.set_exception(exc)
            return
        for job, result in zip(live, results, strict=True):
            job.future.set_result(result)


def _grouped(jobs: Sequence[_Job[T, R]]) -> list[tuple[Hashable, list[_Job[T, R]]]]:
    """Jobs grouped by key, groups in order of their first job, jobs in arrival order."""
    groups: dict[Hashable, list[_Job[T, R]]] = {}
    for job in jobs:
        groups.setdefault(job.key, []).append(job)
    return list(groups.items())
