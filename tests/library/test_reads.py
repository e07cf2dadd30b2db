"""The one read policy (cubecut.reads): all reads in flight at once, on threads kept between calls."""
from __future__ import annotations

import threading

import pytest

from cubecut import reads
from cubecut.errors import FFIError, InputError
from cubecut.storage import FileSource, Location


def test_auto_puts_every_read_in_flight_whatever_the_cpu_count(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert reads.workers("auto", 30) == 30
    assert reads.workers("auto", 1000) == reads.MAX_IN_FLIGHT
    assert reads.workers("auto", 30, largest=reads.BYTES_IN_FLIGHT // 4) == 4  # the buffer budget
    assert reads.workers(3, 30) == 3 and reads.workers(8, 2) == 2
    for bad in (0, -1, True, "8", 2.5):
        with pytest.raises(InputError):
            reads.workers(bad, 3)  # type: ignore[arg-type]


def test_concurrently_runs_at_once_in_order_and_reuses_its_threads():
    barrier = threading.Barrier(20, timeout=10)  # only passes if all 20 calls run at the same time

    def call(i: int) -> tuple[int, str]:
        barrier.wait()
        return i * i, threading.current_thread().name

    first = reads.concurrently(call, range(20), "auto")
    assert [value for value, _ in first] == [i * i for i in range(20)]
    barrier.reset()
    threads_before = threading.active_count()
    second = reads.concurrently(call, range(20), "auto")
    assert threading.active_count() == threads_before, "no thread started for the second call"
    assert all(name.startswith("cubecut-read") for _, name in second)


def test_lanes_limit_the_threads_and_nested_calls_do_not_wait_on_the_pool():
    running, most = 0, 0
    lock = threading.Lock()

    def inner(i: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        threading.Event().wait(0.005)
        with lock:
            running -= 1
        return i

    assert reads.concurrently(inner, range(12), 3) == list(range(12))
    assert most <= 3
    # every outer call holds a pool thread while it waits for its inner reads
    outer = reads.concurrently(lambda k: sum(reads.concurrently(inner, range(5), "auto")), range(2 * reads.MAX_IN_FLIGHT),
                               "auto")
    assert outer == [10] * (2 * reads.MAX_IN_FLIGHT)


def test_started_reads_are_in_flight_before_the_caller_works_and_give_results_or_errors():
    begun = threading.Barrier(9, timeout=10)  # 8 calls and the caller: passes only if all 8 are running

    def call(i: int) -> int:
        if i < 8:
            begun.wait()
        if i == 9:
            raise FFIError("bad 9")
        return i

    wait = reads.started(call, range(8), "auto")
    begun.wait()  # the caller's work, while its reads are in flight
    assert wait() == list(range(8))
    begun.reset()
    failing = reads.started(call, range(8, 10), "auto")
    with pytest.raises(FFIError, match="bad 9"):
        failing()
    calls = []
    lazy = reads.started(lambda i: calls.append(i) or i, range(3), 1)
    assert calls == [] and lazy() == [0, 1, 2], "one thread: the calls run when awaited"


def test_the_first_error_is_raised():
    def call(i: int) -> int:
        if i in (3, 7):
            raise FFIError(f"bad {i}")
        return i

    with pytest.raises(FFIError, match="bad"):
        reads.concurrently(call, range(10), "auto")


def test_a_short_read_is_a_named_error(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(b"x" * 100)
    source = FileSource(Location.parse(str(path)))
    assert reads.read_range(source, 90, 100, FFIError, "rows") == b"x" * 10
    with pytest.raises(FFIError, match=r"truncated: bytes \[90, 120\) of rows returned 10 bytes"):
        reads.read_range(source, 90, 120, FFIError, "rows")
