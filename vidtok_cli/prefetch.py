"""Overlapping I/O with the model: a reader thread ahead of the consumer, a writer thread behind it.

PyAV releases the GIL while it decodes, converts and encodes frames, and torch while it computes, so
a bounded queue between one background thread and the main thread lets the next chunk's decoding and
resizing (``prefetch``), or the previous block's encoding to the output file (``write_behind``), run
while the model works on the current one. The queues are bounded (memory stays a few items); an
exception in a background thread is raised again in the main thread; leaving early stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Puts ``item`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 32, name: str = "vidtok-reader") -> Iterator[T]:
    """Yields the items of ``items`` in order, produced by a background thread up to ``depth`` ahead.

    ``depth`` <= 0 iterates in the calling thread. Closing the returned generator early stops the
    producer after its current item.
    """
    if depth <= 0:
        yield from items
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(q, item, stop):
                    return
            _put(q, _DONE, stop)
        except BaseException as e:  # handed to the consumer
            _put(q, _Failure(e), stop)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


@contextmanager
def write_behind(
    consume: Callable[[T], Any], depth: int = 2, name: str = "vidtok-writer"
) -> Iterator[Callable[[T], None]]:
    """A ``submit(item)`` function that hands items to ``consume`` in a background thread, in order.

    On leaving the block every submitted item has been consumed; an exception raised by ``consume``
    is raised again by the next ``submit`` or on leaving. ``depth`` <= 0 consumes in the caller.
    """
    if depth <= 0:
        yield consume
        return
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if failure:
                continue  # drain after a failure
            try:
                consume(item)
            except BaseException as e:
                failure.append(e)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()

    def submit(item: T) -> None:
        if failure:
            raise failure[0]
        _put(q, item, stop)

    try:
        yield submit
    finally:
        _put(q, _DONE, stop)
        thread.join()
    if failure:
        raise failure[0]
