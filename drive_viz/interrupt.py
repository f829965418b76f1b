"""Ctrl-C as a request: the first SIGINT asks a long loop to stop at its next safe point.

A KeyboardInterrupt raised at an arbitrary point can split work that must stay together (a
live step's video frame, table row and count) or surface from TensorFlow's internals as an
unrelated error. Inside ``stop_requests()`` the first Ctrl-C only sets ``requested``; the
previous handler is then restored, so a second Ctrl-C interrupts at once. Off the main thread
(where handlers cannot be set) SIGINT keeps its usual behaviour.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopRequest:
    """``requested`` becomes True at the first Ctrl-C inside ``stop_requests``."""

    requested = False


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """A ``StopRequest`` that the first Ctrl-C (SIGINT) of the block sets (module doc)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.getsignal(signal.SIGINT)

    def ask_to_stop(signum: int, frame: Any) -> None:
        request.requested = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, ask_to_stop)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
