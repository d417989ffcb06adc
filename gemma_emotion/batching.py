"""Serving many requests with one model: the model lock, the micro-batcher, and long jobs in chunks.

Three pieces, used by the app's state (`ui/state.AppState`) and free of any web framework:

- `ModelLock`: the one lock every piece of model work takes. Waiters are served by priority, then in
  arrival order: interactive requests (`INTERACTIVE`) go before the next chunk of a long job (`BULK`), so
  a plain classify waits at most for the chunk that is running. `threading.Lock` hands itself to whichever
  thread the OS wakes first, which lets a job that releases and re-acquires in a loop starve the others.
- `MicroBatcher`: a queue and one worker thread. The worker takes the oldest request and every waiting
  request with the same key (mode, adapter on/off, ...), up to the pass size for that key, runs them as one
  batched pass and resolves each request's `Future` with its own result. Nothing waits for company: an idle
  worker takes a lone request at once, so single-request latency is that of a plain call; requests that
  arrive while a pass runs are answered together by the next one.
- `Chunks`: splits a long job into chunks of about `CHUNK_SECONDS` of model work (sized from the time the
  previous chunk took), checks a `CancelToken` before each chunk and reports progress after it. The caller
  takes the model lock per chunk, so other work gets its turn between chunks, and a cancelled job stops
  within one chunk.

Why not Gradio's own `batch=True`: it batches events of ONE event listener only (the page's Classify
button, its Enter key, the `/classify` API and the Compare tab are separate listeners, so they could never
share a pass); a batched function that raises fails every request in the batch (one empty text would fail
all the others); a batch's events cannot be cancelled one by one (Gradio names no task for a batch); and
each caller's own settings (mode, adapter, thinking) would have to be regrouped inside the function anyway.
The batcher here sits under all of those entry points, below the web layer.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from gemma_emotion.errors import UserError

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

INTERACTIVE = 0  # one text to classify or compare: served before the next chunk of a long job
BULK = 1  # a chunk of a long job (a batch, a file, an evaluation)
CHUNK_SECONDS = 2.0  # model time of one chunk of a long job: the longest a plain request waits behind it
MAX_CHUNK = 65_536  # rows; a bound on memory per chunk, whatever the speed


class RequestCancelled(UserError):
    """The request was cancelled (the Stop button, the client went away); its work stopped between chunks."""


class CancelToken:
    """Set by whoever learns that a request is no longer wanted; read by the job between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise RequestCancelled if the request was cancelled."""
        if self._event.is_set():
            raise RequestCancelled(f"the request was {self.reason}")


# -- the model lock ----------------------------------------------------------------------------------
class ModelLock:
    """A non-reentrant lock whose waiters are served by priority (lower first), then in arrival order.

    `with lock:` takes it as INTERACTIVE; `with lock.hold(BULK):` as a chunk of a long job.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held = False
        self._waiting: list[tuple[int, int]] = []  # a heap of (priority, ticket)
        self._tickets = itertools.count()

    def acquire(self, priority: int = INTERACTIVE, timeout: float | None = None) -> bool:
        with self._cond:
            ticket = (priority, next(self._tickets))
            heapq.heappush(self._waiting, ticket)
            got = self._cond.wait_for(lambda: not self._held and self._waiting[0] == ticket, timeout)
            if got:
                heapq.heappop(self._waiting)
                self._held = True
            else:  # timed out: leave the line, and let whoever is now first check again
                self._waiting.remove(ticket)
                heapq.heapify(self._waiting)
                self._cond.notify_all()
            return got

    def release(self) -> None:
        with self._cond:
            if not self._held:
                raise RuntimeError("release of an unlocked ModelLock")
            self._held = False
            self._cond.notify_all()

    def locked(self) -> bool:
        return self._held

    def waiting(self) -> int:
        """How many threads wait for the lock."""
        with self._cond:
            return len(self._waiting)

    def hold(self, priority: int = INTERACTIVE) -> _Held:
        """A context manager holding the lock at `priority`."""
        return _Held(self, priority)

    def __enter__(self) -> ModelLock:
        self.acquire(INTERACTIVE)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class _Held:
    lock: ModelLock
    priority: int

    def __enter__(self) -> ModelLock:
        self.lock.acquire(self.priority)
        return self.lock

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


# -- the micro-batcher ---------------------------------------------------------------------------------
@dataclass
class _Request(Generic[K, T]):
    key: K
    item: T
    future: Future = field(default_factory=Future)


@dataclass
class BatcherStats:
    """What the batcher has done: requests taken, passes run, the largest pass (for tests and /status)."""

    requests: int = 0
    passes: int = 0
    largest_pass: int = 0
    failed_passes: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class MicroBatcher(Generic[K, T, R]):
    """Answers concurrent requests in batched passes of `run(key, items) -> results` (one result per item,
    in order). `pass_size(key)` is the most items one pass takes for that key."""

    def __init__(
        self,
        run: Callable[[K, list[T]], Sequence[R]],
        pass_size: Callable[[K], int],
        *,
        name: str = "micro-batcher",
    ) -> None:
        self._run = run
        self._pass_size = pass_size
        self._name = name
        self._queue: deque[_Request[K, T]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stats = BatcherStats()

    def submit(self, key: K, item: T) -> Future:
        """Queue one item; the Future gets its result (or the pass's exception). Cancelling the Future
        before its pass starts takes it out of the pass."""
        request: _Request[K, T] = _Request(key, item)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return request.future

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _take(self) -> list[_Request[K, T]] | None:
        """The oldest request and the waiting ones that share its key, up to the pass size (in order)."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed)
            if not self._queue:
                return None
            key = self._queue[0].key
            limit = max(1, self._pass_size(key))
            taken, kept = [], deque()
            while self._queue:
                request = self._queue.popleft()
                if request.key == key and len(taken) < limit:
                    taken.append(request)
                else:
                    kept.append(request)
            self._queue = kept
        # A request whose caller gave up before its pass started is left out of it.
        return [r for r in taken if r.future.set_running_or_notify_cancel()]

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            if not taken:
                continue
            self.stats.requests += len(taken)
            self.stats.passes += 1
            self.stats.largest_pass = max(self.stats.largest_pass, len(taken))
            try:
                results = list(self._run(taken[0].key, [r.item for r in taken]))
                if len(results) != len(taken):
                    raise RuntimeError(f"a pass of {len(taken)} items gave {len(results)} results")
            except BaseException as exc:  # noqa: BLE001 - every caller gets the error; the worker carries on
                self.stats.failed_passes += 1
                for request in taken:
                    request.future.set_exception(exc)
                continue
            for request, result in zip(taken, results):
                request.future.set_result(result)


# -- long jobs in chunks ---------------------------------------------------------------------------------
Progress = Callable[[int, int], None]


class Chunks:
    """The chunks of a job of `total` rows, as slices, sized to about `target_s` seconds of model work.

    The first chunk has `first` rows; after each chunk the next is sized from the time the caller measured
    with `timed()` (model time only, not the wait for the lock), at most 4 x the previous size, at least
    `first` rows, rounded down to a multiple of `first` (whole batches). Before each chunk `cancel` is
    checked (RequestCancelled); after each, `progress(done, total)` is called. `size` starts at a size
    reached before: a job split over several `Chunks` (a file, read a piece at a time) carries it on.
    """

    def __init__(
        self,
        total: int,
        first: int,
        *,
        target_s: float = CHUNK_SECONDS,
        cancel: CancelToken | None = None,
        progress: Progress | None = None,
        max_rows: int = MAX_CHUNK,
        size: int | None = None,
    ) -> None:
        if first < 1:
            raise ValueError(f"the first chunk needs at least one row, got {first}")
        self.total = total
        self.first = first
        self.size = min(max(first, size or first), max_rows)
        self.target_s = target_s
        self.cancel = cancel
        self.progress = progress
        self.max_rows = max_rows
        self.sizes: list[int] = []  # rows of each chunk run so far
        self._rows = 0  # rows of the chunk being run
        self._seconds: float | None = None  # its model time, once timed

    def __iter__(self) -> Iterator[slice]:
        done = 0
        while done < self.total:
            if self.cancel is not None:
                self.cancel.check()
            stop = min(self.total, done + self.size)
            self._rows, self._seconds = stop - done, None
            yield slice(done, stop)
            self.sizes.append(stop - done)
            done = stop
            self._resize()
            if self.progress is not None:
                self.progress(done, self.total)

    def timed(self) -> _Timer:
        """Measure the model time of the current chunk: `with chunks.timed(): ...` inside the lock."""
        return _Timer(self)

    def _resize(self) -> None:
        if self._seconds is None:  # not timed: keep the size
            return
        if self._seconds <= 0:
            wanted = self.size * 4
        else:
            wanted = int(self.target_s * self._rows / self._seconds)
        wanted = min(wanted, self.size * 4, self.max_rows)
        self.size = max(self.first, wanted // self.first * self.first)


@dataclass
class _Timer:
    chunks: Chunks
    start: float = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.chunks._seconds = time.perf_counter() - self.start
