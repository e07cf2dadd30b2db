"""cubecut.concurrency: lanes of plain futures on the one shared pool."""
from __future__ import annotations

import threading

import pytest

from cubecut import concurrency


def test_lanes_give_results_in_order_on_the_shared_pool():
    names: list[str] = []

    def call(i: int) -> int:
        names.append(threading.current_thread().name)
        return i * 10

    assert concurrency.lanes(call, list(range(7)), 3)() == [i * 10 for i in range(7)]
    assert all(name.startswith("cubecut-read") for name in names)
    assert concurrency.lanes(call, [], 3)() == []


def test_an_error_is_raised_only_once_every_lane_is_done():
    released, finished = threading.Event(), []

    def call(i: int) -> int:
        if i == 0:
            raise RuntimeError("lane 0 failed")
        assert released.wait(10)
        threading.Event().wait(0.05)  # still working when lane 0's error is known
        finished.append(i)
        return i

    wait = concurrency.lanes(call, [0, 1], 2)
    released.set()
    with pytest.raises(RuntimeError, match="lane 0 failed"):
        wait()
    assert finished == [1], "the other lane had finished when the error was raised"


def test_one_lane_runs_the_calls_when_waited_for():
    calls: list[int] = []
    wait = concurrency.lanes(calls.append, [1, 2], 1)
    assert calls == []
    wait()
    assert calls == [1, 2]


def test_in_background_gives_the_result_or_the_error():
    assert concurrency.in_background(lambda: 42)() == 42
    with pytest.raises(ZeroDivisionError):
        concurrency.in_background(lambda: 1 // 0)()
