"""Object I/O on a bounded thread pool: the rule for every loop over many objects.

On GCS every object read or written is a round trip of tens of milliseconds; 3,000 files one
after another are minutes of waiting. The store clients release the GIL while they wait, so a
pool of ``MARKET_DATA_IO_CONCURRENCY`` threads overlaps the waits on a local folder and on GCS
alike. A failure fails the whole call naming the object (the first failure; the rest of the
submitted work is cancelled or awaited, never left running behind the caller's back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from market_data_assets.storage.base import StoreError

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_IO_CONCURRENCY = 32
"""Requests in flight per step: enough to hide ~30 ms of GCS latency behind 2 cores of work."""


class ObjectIOError(StoreError):
    """One object of a concurrent batch failed; the message names it."""


def map_objects(
    fn: Callable[[T], R], items: Iterable[T], name: Callable[[T], str], concurrency: int
) -> list[R]:
    """``[fn(item) for item in items]`` on up to ``concurrency`` threads, results in input order."""
    items = list(items)
    if concurrency <= 1 or len(items) <= 1:
        out = []
        for item in items:
            try:
                out.append(fn(item))
            except Exception as exc:
                raise ObjectIOError(f"{name(item)}: {exc}") from exc
        return out
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        futures: list[Future[R]] = [pool.submit(fn, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for item, future in zip(items, futures, strict=True):
            if future in done and future.exception() is not None:
                for f in futures:
                    f.cancel()
                exc = future.exception()
                raise ObjectIOError(f"{name(item)}: {exc}") from exc
        return [f.result() for f in futures]
