"""The threads of cubecut: one process-wide pool, and plain futures on it.

Work that waits (reads, writes, an index GET while the input is parsed) runs on one pool
kept between calls: starting 30 threads costs more than the reads' own CPU (each
``Thread.start`` waits for the new thread to run; measured ~1 ms each on a busy 2-CPU
machine), so a warm process starts none. :func:`lanes` runs a function over items in a
given number of lanes (the read policy, :mod:`cubecut.reads`, picks the number);
:func:`in_background` runs one call. Both carry the caller's S3 deadlines into the pool
threads, and give plain futures' results (or the first exception raised).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Callable, Sequence, TypeVar

from .storage import MAX_POOL_CONNECTIONS, carrying_deadlines

T = TypeVar("T")
R = TypeVar("R")

#: Threads of the shared pool: two calls' worth of reads at one S3 client's connection pool each.
POOL_THREADS = 2 * MAX_POOL_CONNECTIONS

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
#: Per thread: whether it is running a lane (a lane that starts lanes gets threads of its own).
_in_lane = threading.local()


def _forget_pool_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own (the
    parent's would queue work that no thread of the child ever runs)."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def shared_pool() -> ThreadPoolExecutor:
    """The process's pool (threads started on demand, at most :data:`POOL_THREADS`)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="cubecut-read")
        return _pool


def lanes(function: Callable[[T], R], items: Sequence[T], count: int) -> Callable[[], list[R]]:
    """``[function(item) for item in items]`` in ``count`` lanes (lane ``k`` makes calls ``k,
    k + count, ...``) on the shared pool, started: returns once every lane is making its
    first call (so the caller's work, holding the GIL, does not hold them back), with a
    function that waits for the lanes and gives the results in order (or raises the first
    exception a call raised). With ``count`` 1 the calls run, one by one, when that
    function is called. A lane that itself starts lanes gets threads of its own (so lanes
    never wait on the pool they run in)."""
    function = carrying_deadlines(function)  # the lanes run under the caller's S3 deadlines
    if count <= 1:
        return lambda: [function(item) for item in items]
    nested = getattr(_in_lane, "active", False)
    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="cubecut-read-nested") if nested \
        else shared_pool()
    begun = threading.Semaphore(0)

    def lane(first: int) -> list[R]:
        _in_lane.active = True
        begun.release()
        try:
            return [function(items[i]) for i in range(first, len(items), count)]
        finally:
            _in_lane.active = False

    futures: list[Future[list[R]]] = [pool.submit(lane, k) for k in range(count)]
    if not nested:
        for _ in futures:  # every lane is making its first call
            begun.acquire()

    def wait() -> list[R]:
        wait_for(futures)  # every lane is done before an error is raised
        if nested:
            pool.shutdown(wait=True)
        done = [future.result() for future in futures]
        results: list[R] = [None] * len(items)  # type: ignore[list-item]  # every slot is set below
        for k, part in enumerate(done):
            results[k::count] = part
        return results

    return wait


def in_background(function: Callable[[], R]) -> Callable[[], R]:
    """``function()`` started on the shared pool; the returned function waits for its
    result (or raises what it raised)."""
    return shared_pool().submit(carrying_deadlines(function)).result
