"""A function mapped over a stream on a few threads, results in input order.

The colour conversions around the model (YUV → RGB after decoding, RGB → YUV before encoding)
run in swscale, which releases the GIL: a 1080p frame costs several milliseconds of one core
each way, which on a fast GPU is the whole frame budget of a single reader or writer thread.
Spreading them over a few threads keeps decoding and encoding ahead of the model.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# One conversion thread per this many cores, at most _MAX_THREADS: on a 2-core machine the
# conversions stay inline (the cores belong to the model and FFmpeg), on 16 cores 4 threads.
_CORES_PER_THREAD = 4
_MAX_THREADS = 4


def conversion_threads(cores: int | None = None) -> int:
    """Threads for the colour conversion on each side of the model, sized to the machine."""
    cores = cores or os.cpu_count() or 1
    return max(1, min(_MAX_THREADS, cores // _CORES_PER_THREAD))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int, *, name: str = "convert",
                ahead: int | None = None) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in order, computing up to ``ahead`` at once.

    With ``threads`` <= 1 it is a plain generator on the calling thread. Exceptions raised by
    ``fn`` or by iterating ``items`` reach the caller at the item they belong to.
    """
    if threads <= 1:
        for item in items:
            yield fn(item)
        return
    ahead = ahead or 2 * threads
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
