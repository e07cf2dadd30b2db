"""Byte-range reads, and the one policy for how many run at once.

Every pixel read of cubecut (cube rows for cutouts, bulk runs and moving targets; FFI rows
for ingest and FFI cutouts) goes through :func:`read_range` (one range, checked for
length) and, when there are several, :func:`concurrently`. The policy: reads wait on the
network, not the CPU, so with ``threads="auto"`` **every read needed is in flight at
once** — a 30-row cutout is one round trip — whatever the CPU count, up to
:data:`MAX_IN_FLIGHT` (one S3 client's connection pool) and to :data:`BYTES_IN_FLIGHT`
of buffers. The threads are the process-wide pool of :mod:`cubecut.concurrency`. Requests
and bytes are counted by the source (its
:class:`~cubecut.storage.ReadStats`); ``If-Match`` pinning is the source's too
(:func:`cubecut.cutout.reader.open_cube`, :func:`cubecut.storage.open_source` with an
ETag).
"""
from __future__ import annotations

from typing import Callable, Iterable, Literal, TypeVar

from .concurrency import lanes
from .errors import InputError
from .storage import MAX_POOL_CONNECTIONS, RangeSource

#: Reads in flight at once for ``threads="auto"``: one S3 client's connection pool.
MAX_IN_FLIGHT = MAX_POOL_CONNECTIONS
#: Bytes of concurrent reads' buffers for ``threads="auto"`` (fewer reads run at once
#: when each is larger than ``BYTES_IN_FLIGHT / MAX_IN_FLIGHT``).
BYTES_IN_FLIGHT = 1024 * 1024 * 1024

#: Concurrent reads: ``"auto"`` (the policy above) or a positive number (1 = one by one).
Threads = int | Literal["auto"]

T = TypeVar("T")
R = TypeVar("R")


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
    The calls run in lanes on the shared pool (:func:`cubecut.concurrency.lanes`); returns
    when every lane has finished; the first exception raised by a call is raised here.
    """
    return started(function, items, threads, largest)()


def started(function: Callable[[T], R], items: Iterable[T], threads: Threads,
            largest: int = 0) -> Callable[[], list[R]]:
    """:func:`concurrently`, started (reads are in flight while the caller works): a function
    that waits for the calls and gives their results, as :func:`cubecut.concurrency.lanes`."""
    items = list(items)
    return lanes(function, items, workers(threads, len(items), largest))


def read_range(source: RangeSource, start: int, stop: int, error: type[Exception],
               what: str) -> bytes | memoryview:
    """Bytes ``[start, stop)`` of ``source``; raises ``error`` naming ``what`` if fewer came
    (a truncated object: the sources retry bodies that break off)."""
    data = source.read(start, stop)
    if len(data) != stop - start:
        raise error(f"{source.location.url}: truncated: bytes [{start}, {stop}) of {what} returned "
                    f"{len(data)} bytes")
    return data
