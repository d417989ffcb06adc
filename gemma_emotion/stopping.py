"""Stopping a training run: the run folder's STOP file, SIGTERM or Ctrl-C, turned into one request.

While the trainer steps, a request only sets a flag that the training callback reads after each step, so
the adapter is saved whole; in the other phases (loading, evaluating) it raises `StopRequested` at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gemma_emotion.runfolder import STOP_FILE


class StopRequested(BaseException):  # noqa: N818 - a control signal like KeyboardInterrupt, not an error
    """Raised where a stop cannot wait for the end of a training step (loading, evaluating).

    A BaseException so that library code catching `Exception` does not swallow it."""


class StopSignal:
    """A stop request: the run folder's STOP file, SIGTERM, or Ctrl-C (a second Ctrl-C interrupts hard).

    While training, a request only sets a flag that the callback reads after each step, so the adapter
    is saved whole; in the other phases it raises StopRequested at once.
    """

    def __init__(
        self, run_dir: str | os.PathLike | None = None, *, notice: Callable[[str], None] | None = None
    ):
        """`notice` tells the person at the terminal what a first Ctrl-C does (the CLI prints it)."""
        self.file = Path(run_dir) / STOP_FILE if run_dir else None
        self._notice = notice
        self._event = threading.Event()
        self._interruptible = True

    def request(self) -> None:
        self._event.set()

    def requested(self) -> bool:
        if not self._event.is_set() and self.file is not None and self.file.exists():
            self._event.set()
        return self._event.is_set()

    def check(self) -> None:
        if self.requested():
            raise StopRequested()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block a signal only sets the flag."""
        self._interruptible = False
        try:
            yield
        finally:
            self._interruptible = True

    @contextlib.contextmanager
    def handling(self, *signums: int) -> Iterator[None]:
        """Route these signals to the stop request (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in signums}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._event.is_set():
            raise KeyboardInterrupt
        self.request()
        if signum == signal.SIGINT and self._notice is not None:
            self._notice("stopping after this step (Ctrl-C again to abort)")
        if self._interruptible:
            raise StopRequested()
