"""The threading of replay's stages, in one place: threads joined by bounded queues.

``run_stages`` runs ``decode`` (a producer, in its own thread), ``analyse`` (in the calling
thread: TensorFlow), ``render`` and ``write`` (one thread each). OpenCV, TensorFlow and PyAV
release the GIL, so the stages overlap; the bounded queues keep memory flat however long the
drive. The first error in any stage stops every stage and is re-raised in the caller.
``ordered_map`` runs the decode work ``workers`` batches at a time in threads of lower
priority (``DECODE_NICENESS``) and hands the results on in order.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Analysed batches waiting for the render thread, decoded ones waiting for the model.
QUEUE_BATCHES = 1
#: Rendered pictures waiting for the encoder.
QUEUE_FRAMES = 8
#: Niceness added to the decode threads (see ``yield_to_later_stages``).
DECODE_NICENESS = 10

Emit = Callable[[Any], None]


class Stop(Exception):
    """Raised inside a stage when another stage failed."""


class Pipeline:
    """Threads with bounded queues; the first error stops every stage and is re-raised."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.threads: list[threading.Thread] = []

    def spawn(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            except Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                self.fail(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.stop.set()

    def put(self, box: queue.Queue, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise Stop
            try:
                box.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self, box: queue.Queue) -> Any:
        while True:
            if self.stop.is_set():
                raise Stop
            try:
                return box.get(timeout=0.1)
            except queue.Empty:
                continue

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


def run_stages(decode: Callable[[Emit], None], analyse: Callable[[Any], Any],
               render: Callable[[Any, Emit], None], write: Callable[[Any], None],
               warm_up: Callable[[], None] = lambda: None) -> None:
    """Run the four stages until ``decode`` has emitted its last item and every item has
    been written. ``decode(emit)`` emits batches; ``analyse(batch)`` returns the batch to
    render (calling thread, after ``warm_up``, which overlaps the first decodes);
    ``render(batch, emit)`` emits what ``write(item)`` receives, in order."""
    pipeline = Pipeline()
    decoded: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    analysed: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
    rendered: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)

    def decode_all() -> None:
        decode(lambda batch: pipeline.put(decoded, batch))
        pipeline.put(decoded, None)

    def render_all() -> None:
        while (batch := pipeline.get(analysed)) is not None:
            render(batch, lambda item: pipeline.put(rendered, item))
        pipeline.put(rendered, None)

    def write_all() -> None:
        while (item := pipeline.get(rendered)) is not None:
            write(item)

    try:
        pipeline.spawn(decode_all, "replay-decode")
        pipeline.spawn(render_all, "replay-render")
        pipeline.spawn(write_all, "replay-write")
        try:
            warm_up()
            while (batch := pipeline.get(decoded)) is not None:
                pipeline.put(analysed, analyse(batch))
            pipeline.put(analysed, None)
        except Stop:
            pass
        except BaseException as exc:
            pipeline.fail(exc)
        pipeline.join()
    except BaseException:
        pipeline.stop.set()
        pipeline.join()
        raise
    if pipeline.error is not None:
        raise pipeline.error


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``function(item)`` for each item, ``workers`` at a time in threads that yield to the
    later stages, results in the order of ``items``."""
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="replay-decode",
                            initializer=yield_to_later_stages) as pool:
        for item in items:
            if len(pending) == workers:
                yield pending.popleft().result()
            pending.append(pool.submit(function, item))
        while pending:
            yield pending.popleft().result()


def yield_to_later_stages() -> None:
    """Lower the calling decode thread's priority (Linux: niceness is per thread), so the
    later stages run first and decoding fills the idle time: frames then wait upstream, not
    downstream of the model, and the run does not end with a long encode-only tail."""
    if sys.platform == "linux" and DECODE_NICENESS:
        thread = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, thread,
                           os.getpriority(os.PRIO_PROCESS, thread) + DECODE_NICENESS)
        except OSError:
            pass  # a sandbox that forbids it: the run is only slower
