"""Reading ahead of the networks and writing behind them, in worker threads: decoding and
encoding image files (PIL releases the GIL while it does) overlaps the computation."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(items: Iterable[T], read: Callable[[T], R], workers: int = 2) -> Iterator[tuple[T, R | Exception]]:
    """`(item, read(item))` in the items' order, with up to `workers` items read ahead (each
    may be a large image); an exception that `read` raises comes in place of its result."""
    items = iter(items)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="read")
    try:
        pending = deque((item, pool.submit(read, item)) for item in itertools.islice(items, workers))
        while pending:
            item, future = pending.popleft()
            for nxt in itertools.islice(items, 1):
                pending.append((nxt, pool.submit(read, nxt)))
            try:
                yield item, future.result()
            except Exception as e:  # noqa: BLE001 - handed to the caller, who reports it
                yield item, e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class WriteBehind(Generic[T]):
    """Runs writes in worker threads and hands back their results in submission order, with
    a tag each; at most `workers` are in flight, so finished images do not pile up in memory."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="write")
        self.pending: deque[tuple[T, Future]] = deque()

    def submit(self, tag: T, write: Callable[[], R]) -> list[tuple[T, R]]:
        """Queue `write`; returns the (tag, result) of earlier writes that have finished."""
        self.pending.append((tag, self.pool.submit(write)))
        return self.finished(wait=len(self.pending) > self.workers)

    def finished(self, wait: bool = False) -> list[tuple[T, R]]:
        """Results of the finished writes at the front of the queue (the oldest, if `wait`)."""
        done = []
        while self.pending and (self.pending[0][1].done() or wait):
            tag, future = self.pending.popleft()
            done.append((tag, future.result()))
            wait = False
        return done

    def close(self) -> list[tuple[T, R]]:
        """Wait for every write; their results."""
        done = [(tag, future.result()) for tag, future in self.pending]
        self.pending.clear()
        self.pool.shutdown()
        return done
