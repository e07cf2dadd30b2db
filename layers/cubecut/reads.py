"""Byte-range reads, and the one policy for how many run at once.

Every pixel read of cubecut (cube rows for cutouts, bulk runs and moving targets; FFI rows
for ingest and FFI cutouts) goes through :func:`read_range` (one range, checked for
length) and, when there are several, :func:`concurrently`. The policy: reads wait on the
network, not the CPU, so with ``threads="auto"`` **every read needed is in flight at
once** — a 30-row cutout is one round trip — whatever the CPU count, up to
:data:`MAX_IN_FLIGHT` (one S3 client's connection pool) and to :data:`BYTES_IN_FLIGHT`
of buffers. The threads are a process-wide pool kept between calls: starting 30 threads
costs more than the reads' own CPU (each ``Thread.start`` waits for the new thread to
run; measured ~1 ms each on a busy 2-CPU machine), so a warm process starts none. Requests
and bytes are counted by the source (its
:class:`~cubecut.storage.ReadStats`); ``If-Match`` pinning is the source's too
(:func:`cubecut.cutout.reader.open_cube`, :func:`cubecut.storage.open_source` with an
ETag).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Literal, Sequence, TypeVar

from .errors import InputError
from .storage import MAX_POOL_CONNECTIONS, RangeSource, carrying_deadlines

#: Reads in flight at once for ``threads="auto"``: one S3 client's connection pool.
MAX_IN_FLIGHT = MAX_POOL_CONNECTIONS
#: Bytes of concurrent reads' buffers for ``threads="auto"`` (fewer reads run at once
#: when each is larger than ``BYTES_IN_FLIGHT / MAX_IN_FLIGHT``).
BYTES_IN_FLIGHT = 1024 * 1024 * 1024

#: Concurrent reads: ``"auto"`` (the policy above) or a positive number (1 = one by one).
Threads = int | Literal["auto"]

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_in_pool = threading.local()


def _forget_pool_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own (the
    parent's would queue work that no thread of the child ever runs)."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _shared_pool() -> ThreadPoolExecutor:
    """The process's read threads (started on demand, up to two calls' worth of reads)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2 * MAX_IN_FLIGHT, thread_name_prefix="cubecut-read")
        return _pool


def workers(threads: Threads, nreads: int, largest: int = 0) -> int:
    """Threads for ``nreads`` reads of at most ``largest`` bytes each.

    ``"auto"``: one per read, at most :data:`MAX_IN_FLIGHT` and :data:`BYTES_IN_FLIGHT`
    worth of buffers; a number: that many, at most one per read. Raises InputError for
    anything else.
    """
    if threads == "auto":
        budget = BYTES_IN_FLIGHT // largest if largest > 0 else MAX_IN_FLIGHT
        return max(1, min(MAX_IN_FLIGHT, nreads, budget))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer or 'auto', got {threads!r}")
    return max(1, min(threads, nreads))


def concurrently(function: Callable[[T], R], items: Iterable[T], threads: Threads, largest: int = 0) -> list[R]:
    """``[function(item) for item in items]``, the calls run on :func:`workers` threads.

    ``largest``: the most bytes one call holds at once (bounds the threads for ``"auto"``).
    The calls run in ``count`` lanes (lane ``k`` makes calls ``k, k + count, ...``) on the
    shared pool; a call that itself calls :func:`concurrently` gets threads of its own
    (so lanes never wait on the pool they run in). Returns when every lane has finished;
    the first exception raised by a call is raised here.
    """
    return started(function, items, threads, largest)()


def started(function: Callable[[T], R], items: Iterable[T], threads: Threads,
            largest: int = 0) -> Callable[[], list[R]]:
    """:func:`concurrently`, started: returns once every lane is making its first call (so
    reads are in flight and the caller's work, holding the GIL, does not hold them back),
    with a function that waits for all the calls and gives their results (or raises the
    first exception a call raised): the caller works while the reads wait on the network.
    With one thread (``threads=1``) the calls run, one by one, when that function is called."""
    items = list(items)
    function = carrying_deadlines(function)  # the lanes read under the caller's S3 deadlines
    count = workers(threads, len(items), largest)
    if count == 1:
        return lambda: [function(item) for item in items]
    if getattr(_in_pool, "lane", False):
        pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="cubecut-read-nested")
        calls = [pool.submit(function, item) for item in items]

        def nested() -> list[R]:
            try:
                return [call.result() for call in calls]
            finally:
                pool.shutdown(wait=True)

        return nested
    results: list = [None] * len(items)
    begun = threading.Semaphore(0)
    running, done, lock = [count], threading.Event(), threading.Lock()

    def lane(first: int) -> None:
        _in_pool.lane = True
        begun.release()
        try:
            for i in range(first, len(items), count):
                results[i] = function(items[i])
        finally:
            _in_pool.lane = False
            with lock:
                running[0] -= 1
                if not running[0]:
                    done.set()  # the caller wakes once, when the last lane is done

    futures = [_shared_pool().submit(lane, k) for k in range(count)]
    for _ in futures:  # every lane is making its first call: the caller's work cannot delay them
        begun.acquire()

    def wait() -> list[R]:
        done.wait()
        errors = [future.exception() for future in futures]
        first_error = next((error for error in errors if error is not None), None)
        if first_error is not None:
            raise first_error
        return results

    return wait


def in_background(function: Callable[[], R]) -> Callable[[], R]:
    """``function()`` started on the shared pool; the returned function waits for its
    result (or raises what it raised)."""
    return _shared_pool().submit(carrying_deadlines(function)).result


def read_range(source: RangeSource, start: int, stop: int, error: type[Exception],
               what: str) -> bytes | memoryview:
    """Bytes ``[start, stop)`` of ``source``; raises ``error`` naming ``what`` if fewer came
    (a truncated object: the sources retry bodies that break off)."""
    data = source.read(start, stop)
    if len(data) != stop - start:
        raise error(f"{source.location.url}: truncated: bytes [{start}, {stop}) of {what} returned "
                    f"{len(data)} bytes")
    return data


def read_ranges(source: RangeSource, ranges: Sequence[tuple[int, int]], threads: Threads,
                error: type[Exception], what: str) -> list[bytes | memoryview]:
    """:func:`read_range` of each ``(start, stop)`` of ``ranges``, concurrently, in order."""
    largest = max((stop - start for start, stop in ranges), default=0)
    return concurrently(lambda r: read_range(source, r[0], r[1], error, what), ranges, threads, largest)
