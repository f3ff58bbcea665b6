"""Decode scans ahead of inference: a small thread pool, results in input order, bounded memory.

Pillow releases the GIL while it decodes and resizes, and the inference runtimes release it while
they run, so decoding the next scans overlaps the model call on the current ones.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Value = TypeVar("Value")

DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
"""Decoding threads: two keep the model fed on a 2-core machine without crowding the model's own threads."""


def decode_ahead(
    function: Callable[[Item], Value], items: Iterable[Item], ahead: int, workers: int = DEFAULT_WORKERS
) -> Iterator[tuple[Item, Future[Value]]]:
    """Yield (item, future of `function(item)`) in input order, with at most `ahead` items in flight.

    `items` is read lazily; the caller takes each result (or its exception) with `future.result()`.
    Leaving the loop early cancels what has not started.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tumorscan-decode")
    pending: deque[tuple[Item, Future[Value]]] = deque()
    try:
        for item in items:
            pending.append((item, pool.submit(function, item)))
            if len(pending) > ahead:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
