"""Under load, through the launched app (`python app.py`, tiny model, gradio_client): concurrent requests
share batched passes and each gets its own answer; a long batch runs in chunks that a plain request
interleaves with, and a cancelled one (a batch or a file, or one whose client went away) stops and frees
the model; a batch over the row limit is refused with a pointer to the `predict` command; a training
stopped right after its start ends "stopped" and the next one starts. Behaviour, not speed: bounds are
generous (benchmarks/bench_load.py measures the speed)."""

from __future__ import annotations

import csv
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from test_app_api import app_error, assert_same_prediction, start_app, wait_ready

LONG_BATCH = 5000
ANSWER_BOUND_S = 120  # "answers within a bound": far above one chunk (~2 s), far below the batch's time


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("load-runs")
    log = tmp_path_factory.mktemp("load-log") / "app.log"
    # The production queue setting: one job at a time by default; the batched endpoints raise their own.
    with start_app(tiny_gemma3, runs, shared_data, log, concurrency=1) as (url, proc):
        yield {"url": url, "runs": runs, "proc": proc, "log": log, "model": str(tiny_gemma3)}


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    c = Client(app["url"], verbose=False, max_workers=64)
    assert wait_ready(c)["state"] == "ready"
    return c


@pytest.fixture(scope="module")
def direct(tiny_gemma3):
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import load_model

    return Classifier(load_model(str(tiny_gemma3)))


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    from gemma_emotion.data import load_split

    return list(dict.fromkeys(t.strip() for t in load_split(shared_data, "test")["text"]))


def serving(client) -> dict:
    return client.predict(api_name="/status")["serving"]


def wait_for(predicate, what: str, timeout: float = ANSWER_BOUND_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def long_texts(texts: list[str]) -> list[str]:
    """LONG_BATCH texts of about 200 tokens each (eight of the split's joined): with the tiny model a batch
    of single texts through predict's path is over in about 2 s, before 20 requests have been answered."""
    return [" ".join(texts[(i + k) % len(texts)] for k in range(8)) for i in range(LONG_BATCH)]


def long_batch(client, texts: list[str]):
    """A 5,000-text classify_batch, returned once its first chunk is done (the job is running)."""
    before = serving(client)["chunks"]
    job = client.submit(long_texts(texts), "score", False, api_name="/classify_batch")
    wait_for(lambda: serving(client)["chunks"] > before, "the batch's first chunk")
    return job


def long_file(client, texts: list[str], folder: Path):
    """A file of 5,000 rows in "Classify a file" (the tab's event, /classify_file), returned once its first
    chunk is done and its progress bar counts the rows."""
    from gradio_client import handle_file

    upload = folder / "long.csv"
    with open(upload, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["text"], *([texts[i % len(texts)]] for i in range(LONG_BATCH))])
    before = serving(client)["chunks"]
    job = client.submit(handle_file(str(upload)), "score", api_name="/classify_file")
    wait_for(lambda: serving(client)["chunks"] > before, "the file's first chunk")

    def counted():
        bar = job.status().progress_data
        return bar[0] if bar and bar[0].unit == "texts" and bar[0].index else None

    shown = wait_for(counted, "the progress bar to count the texts done")
    assert shown.length == LONG_BATCH and shown.index < LONG_BATCH, shown
    return job


def cancel_and_wait(client, job) -> None:
    job.cancel()
    wait_for(lambda: job.done(), "the cancelled job to end")


@pytest.mark.timeout(600)
def test_concurrent_classify_requests_share_passes_and_each_gets_its_own_answer(client, direct, texts):
    """20 requests with distinct texts arrive while the model is busy (a long batch holds it, one chunk at
    a time): fewer passes than requests, every answer the one its own text gets alone, and every answer
    in before the batch is done."""
    sent = texts[100:120]
    assert len(set(sent)) == 20
    batch = long_batch(client, texts)
    try:
        before = serving(client)
        with ThreadPoolExecutor(20) as pool:
            jobs = list(
                pool.map(lambda t: client.submit(t, "score", False, False, api_name="/classify"), sent)
            )
            results = [job.result(timeout=ANSWER_BOUND_S) for job in jobs]
        assert not batch.done()  # the 20 were served between the batch's chunks
        after = serving(client)
    finally:
        cancel_and_wait(client, batch)
    for text, res in zip(sent, results):
        assert res["text"] == text
        assert_same_prediction(res, direct.classify(text, "score", adapter=False))
    requests, passes = after["requests"] - before["requests"], after["passes"] - before["passes"]
    assert requests == 20
    assert 1 <= passes < 20, after
    assert after["largest_pass"] > 1


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["batch", "file"])
def test_a_cancelled_5000_text_batch_stops_and_releases_the_queue(client, direct, texts, kind, tmp_path):
    """A classify_batch, or a file in "Classify a file" (the Stop button cancels the same way)."""
    batch = long_batch(client, texts) if kind == "batch" else long_file(client, texts, tmp_path)
    cancelled_before = serving(client)["cancelled"]
    cancel_and_wait(client, batch)
    start = time.monotonic()
    res = client.predict(texts[7], "score", False, False, api_name="/classify")
    assert time.monotonic() - start < ANSWER_BOUND_S
    assert_same_prediction(res, direct.classify(texts[7], "score", adapter=False))
    stats = serving(client)
    assert stats["cancelled"] == cancelled_before + 1  # the job stopped itself between two chunks
    texts_done = stats["texts"]
    time.sleep(3)  # more than a chunk: a job still running would have labelled more texts by now
    assert serving(client)["texts"] == texts_done


@pytest.mark.timeout(600)
def test_a_batch_whose_client_goes_away_stops(app, client, texts):
    """A client that closes its event stream (a closed tab) gets no cancel request: its batch stops because
    the app sees the event die."""
    before = serving(client)
    api = next(
        i for i, dep in enumerate(client.config["dependencies"]) if dep.get("api_name") == "classify_batch"
    )
    session = uuid.uuid4().hex[:12]
    # Long texts, as `long_batch`: 5,000 short ones are over in about 7 s on a warm tiny model, sooner than a
    # closed stream is always noticed (failed twice in three runs under a busy core).
    body = {"data": [long_texts(texts), "score", False], "fn_index": api, "session_hash": session}
    with httpx.Client(base_url=app["url"], timeout=60) as http:
        http.post("gradio_api/queue/join", json=body).raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_starts":
                    break
        wait_for(lambda: serving(client)["chunks"] > before["chunks"], "the batch's first chunk")
    # the stream is closed: the client is gone
    try:
        wait_for(lambda: serving(client)["cancelled"] > before["cancelled"], "the batch to stop")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: serving was {before}, is {serving(client)}") from None
    assert serving(client)["texts"] - before["texts"] < LONG_BATCH


def test_a_batch_over_the_row_limit_points_to_the_predict_command(client):
    message = app_error(client, ["i am fine"] * 10_001, "score", False, api_name="/classify_batch")
    assert "at most 10,000 texts" in message and "max_batch_texts" in message
    assert "gemma-emotion predict" in message


@pytest.mark.timeout(600)
def test_a_stop_right_after_a_start_gives_a_stopped_run_and_the_next_start_works(client, app, shared_data):
    config = {
        "model": app["model"],
        "data": str(shared_data),
        "train_size": 16,
        "epochs": 500,
        "test_size": 4,
    }
    started = client.predict(config, api_name="/train_start")
    stopped = client.predict(api_name="/train_stop")
    assert stopped["stopped"] is True
    run = stopped["run"]
    assert run["name"] == started["name"]
    assert run["status"] == "stopped", run
    assert run["error"] is None and run["adapter_dir"] is None
    status = client.predict(started["name"], 0, api_name="/train_status")
    assert status["active"] is None and status["run"]["status"] == "stopped"

    again = client.predict(config, api_name="/train_start")
    assert again["status"] == "running" and again["name"] != started["name"]
    wait_for(lambda: client.predict(again["name"], 0, api_name="/train_status")["records"], "a log line", 300)
    assert client.predict(api_name="/train_stop")["run"]["status"] == "stopped"
