"""The reader/writer threads that overlap I/O with the model (vidtok_cli/prefetch.py)."""

from __future__ import annotations

import threading
import time

import pytest

from vidtok_cli.prefetch import prefetch, write_behind


def test_prefetch_keeps_order_and_runs_ahead_in_another_thread() -> None:
    threads: list[str] = []

    def items():
        for i in range(50):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=4)) == list(range(50))
    assert set(threads) == {"vidtok-reader"}
    assert list(prefetch(iter(range(5)), depth=0)) == list(range(5))


def test_prefetch_overlaps_producer_and_consumer() -> None:
    def slow_items():
        for i in range(6):
            time.sleep(0.05)
            yield i

    t = time.perf_counter()
    for _ in prefetch(slow_items(), depth=2):
        time.sleep(0.05)
    overlapped = time.perf_counter() - t
    assert overlapped < 0.55  # serial: 0.6 s; overlapped: about 0.35 s


def test_prefetch_raises_the_producers_error_in_the_consumer() -> None:
    def failing():
        yield 1
        raise ValueError("bad frame")

    it = prefetch(failing(), depth=2)
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad frame"):
        next(it)


def test_prefetch_stops_the_producer_when_left_early() -> None:
    produced: list[int] = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = prefetch(endless(), depth=3)
    assert next(it) == 0
    it.close()
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 6


def test_write_behind_consumes_everything_in_order_in_another_thread() -> None:
    seen: list[tuple[int, str]] = []
    with write_behind(lambda i: seen.append((i, threading.current_thread().name)), depth=2) as submit:
        for i in range(20):
            submit(i)
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"vidtok-writer"}


def test_write_behind_raises_the_consumers_error() -> None:
    def consume(i: int) -> None:
        if i == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with write_behind(consume, depth=1) as submit:
            for i in range(10):
                submit(i)
