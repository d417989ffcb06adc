"""The serving pieces of `gemma_emotion.batching` on their own: the model lock's order, the micro-batcher's
grouping, errors and cancellation, and the chunks of a long job (sizes, progress, cancel)."""

from __future__ import annotations

import threading
import time

import pytest

from gemma_emotion.batching import (
    BULK,
    INTERACTIVE,
    CancelToken,
    Chunks,
    MicroBatcher,
    ModelLock,
    RequestCancelled,
)
from gemma_emotion.errors import UserError


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


# -- the model lock -------------------------------------------------------------------------------------
def test_the_lock_serves_interactive_waiters_before_bulk_ones_then_in_arrival_order():
    lock = ModelLock()
    order: list[str] = []
    lock.acquire(BULK)  # a chunk of a long job is running

    def waiter(name: str, priority: int) -> threading.Thread:
        def run() -> None:
            with lock.hold(priority):
                order.append(name)

        thread = threading.Thread(target=run)
        thread.start()
        wait_until(lambda: lock.waiting() == len(started) + 1)
        started.append(name)
        return thread

    started: list[str] = []
    threads = [waiter("bulk-2", BULK), waiter("classify-1", INTERACTIVE), waiter("bulk-3", BULK)]
    threads.append(waiter("classify-2", INTERACTIVE))
    lock.release()
    for t in threads:
        t.join(10)
    assert order == ["classify-1", "classify-2", "bulk-2", "bulk-3"]
    assert not lock.locked()


def test_a_job_that_releases_and_takes_the_lock_again_lets_a_waiting_request_in_between():
    lock = ModelLock()
    events: list[str] = []
    chunk_running = threading.Event()

    def long_job() -> None:
        for i in range(5):
            with lock.hold(BULK):
                events.append(f"chunk {i}")
                chunk_running.set()
                time.sleep(0.05)

    job = threading.Thread(target=long_job)
    job.start()
    chunk_running.wait(5)
    with lock:  # interactive
        events.append("classify")
    job.join(10)
    # The request waited for the chunk that was running, and no more.
    assert events.index("classify") == 1


def test_a_lock_wait_that_times_out_leaves_the_line():
    lock = ModelLock()
    lock.acquire()
    assert lock.acquire(BULK, timeout=0.05) is False
    lock.release()
    assert lock.acquire(BULK, timeout=1) is True
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


# -- the micro-batcher -----------------------------------------------------------------------------------
class Model:
    """A stand-in for the model: records each pass, can be held busy."""

    def __init__(self) -> None:
        self.passes: list[tuple[str, list[str]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.in_pass = threading.Event()

    def run(self, key: str, items: list[str]) -> list[str]:
        self.in_pass.set()
        self.gate.wait(10)
        self.passes.append((key, list(items)))
        if "boom" in items:
            raise UserError("a bad pass")
        return [f"{key}:{item.upper()}" for item in items]


def test_requests_waiting_together_share_a_pass_and_each_gets_its_own_answer():
    model = Model()
    batcher = MicroBatcher(model.run, lambda key: 8)
    model.gate.clear()
    first = batcher.submit("score", "a")  # taken at once, alone: the worker never waits for company
    model.in_pass.wait(5)
    waiting = [batcher.submit("score", t) for t in "bcdefghijk"]  # 10 arrive while the model is busy
    model.gate.set()
    assert first.result(5) == "score:A"
    assert [f.result(5) for f in waiting] == [f"score:{t.upper()}" for t in "bcdefghijk"]
    # 11 requests, 3 passes: the lone first one, then 8 (the pass size), then the 2 left
    assert [len(items) for _, items in model.passes] == [1, 8, 2]
    assert batcher.stats.to_dict() == {"requests": 11, "passes": 3, "largest_pass": 8, "failed_passes": 0}
    batcher.close()


def test_a_pass_holds_only_requests_with_the_same_key_oldest_first():
    model = Model()
    batcher = MicroBatcher(model.run, lambda key: 16)
    model.gate.clear()
    batcher.submit("warm", "x")
    model.in_pass.wait(5)
    sent = [("score", "a"), ("generate", "b"), ("score", "c"), ("generate", "d"), ("score", "e")]
    futures = [batcher.submit(key, text) for key, text in sent]
    model.gate.set()
    assert [f.result(5) for f in futures] == ["score:A", "generate:B", "score:C", "generate:D", "score:E"]
    assert model.passes[1:] == [("score", ["a", "c", "e"]), ("generate", ["b", "d"])]
    batcher.close()


def test_a_failed_pass_fails_its_requests_only_and_the_worker_carries_on():
    model = Model()
    batcher = MicroBatcher(model.run, lambda key: 16)
    model.gate.clear()
    batcher.submit("warm", "x")
    model.in_pass.wait(5)
    bad = [batcher.submit("score", "boom"), batcher.submit("score", "ok")]
    other = batcher.submit("generate", "fine")
    model.gate.set()
    for future in bad:
        with pytest.raises(UserError, match="a bad pass"):
            future.result(5)
    assert other.result(5) == "generate:FINE"
    assert batcher.submit("score", "later").result(5) == "score:LATER"
    assert batcher.stats.failed_passes == 1
    batcher.close()


def test_a_request_cancelled_before_its_pass_is_left_out_of_it():
    model = Model()
    batcher = MicroBatcher(model.run, lambda key: 16)
    model.gate.clear()
    batcher.submit("warm", "x")
    model.in_pass.wait(5)
    kept, dropped = batcher.submit("score", "kept"), batcher.submit("score", "dropped")
    assert dropped.cancel()
    model.gate.set()
    assert kept.result(5) == "score:KEPT"
    assert model.passes[1] == ("score", ["kept"])
    batcher.close()


def test_a_pass_that_returns_the_wrong_number_of_results_is_an_error_for_its_callers():
    batcher = MicroBatcher(lambda key, items: items[:-1], lambda key: 4)
    with pytest.raises(RuntimeError, match="a pass of 1 items gave 0 results"):
        batcher.submit("k", "a").result(5)
    batcher.close()


# -- chunks of a long job --------------------------------------------------------------------------------
def test_chunks_cover_every_row_once_and_grow_to_the_target_time():
    seen: list[int] = []
    progress: list[tuple[int, int]] = []
    chunks = Chunks(1000, 10, target_s=0.05, progress=lambda d, t: progress.append((d, t)))
    for part in chunks:
        with chunks.timed():
            time.sleep(0.001 * (part.stop - part.start) / 10)  # 0.1 ms a row: 500 rows make 0.05 s
        seen.extend(range(part.start, part.stop))
    assert seen == list(range(1000))
    assert progress[-1] == (1000, 1000)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    sizes = chunks.sizes
    assert sizes[0] == 10
    assert all(b <= 4 * a for a, b in zip(sizes, sizes[1:]))  # at most 4 x per step
    assert all(s % 10 == 0 for s in sizes[:-1])  # whole batches
    assert max(sizes) > 100  # grew towards ~500 rows per 0.05 s


def test_chunks_shrink_when_a_chunk_takes_longer_than_the_target():
    chunks = Chunks(10_000, 8, target_s=0.01)
    chunks.size = 800
    sizes = []
    for part in chunks:
        with chunks.timed():
            time.sleep(0.02)  # every chunk 0.02 s whatever its size: too slow
        sizes.append(part.stop - part.start)
        if len(sizes) == 3:
            break
    assert sizes[0] == 800 and sizes[1] <= 400 and sizes[2] <= sizes[1]


def test_a_cancelled_job_stops_before_its_next_chunk():
    token = CancelToken()
    done: list[slice] = []
    with pytest.raises(RequestCancelled, match="was cancelled"):
        for part in Chunks(100, 10, cancel=token):
            done.append(part)
            if len(done) == 2:
                token.cancel()
    assert len(done) == 2
    assert isinstance(RequestCancelled("x"), UserError)
