"""The app end to end through its API: `python app.py` in a subprocess on a free port with a tiny model,
driven by gradio_client. Every named endpoint, both modes, bad input, concurrency and training."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import write_csv

from gemma_emotion.labels import LABELS, parse_answer

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_app(
    model: Path, runs_dir: Path, data: Path, log_file: Path, *, concurrency: int = 4, extra=(), env_extra=None
):
    """`python app.py` on a free localhost port; yields (url, process); stops it and any training after."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",  # a model id that does not exist fails at once instead of retrying the network
        GEMMA_EMOTION_DATA=str(data),
        GEMMA_EMOTION_CONCURRENCY=str(concurrency),
        PYTHONUNBUFFERED="1",
    )
    env.pop("SPACE_ID", None)  # not a Space, unless env_extra says so
    env.update(env_extra or {})
    cmd = [sys.executable, "app.py", "--model", str(model), "--runs-dir", str(runs_dir),
           "--host", "127.0.0.1", "--port", str(port), *extra]  # fmt: skip
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app.py did not serve {url}:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        from gemma_emotion.runs import Runner

        with contextlib.suppress(Exception):
            Runner(runs_dir).stop(timeout=10)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(client, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.predict(api_name="/status")
        if status["state"] != "loading":
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"model still loading: {status}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("app-runs")
    log = tmp_path_factory.mktemp("app-log") / "app.log"
    with start_app(tiny_gemma3, runs, shared_data, log) as (url, proc):
        yield {"url": url, "runs": runs, "proc": proc, "log": log, "model": str(tiny_gemma3)}


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    c = Client(app["url"], verbose=False)
    status = wait_ready(c)
    assert status["state"] == "ready", status
    return c


@pytest.fixture(scope="module")
def direct(tiny_gemma3):
    """The same checkpoint loaded in the test process: what the app must agree with."""
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import load_model

    return Classifier(load_model(str(tiny_gemma3)))


def assert_same_prediction(api: dict, pred) -> None:
    assert api["label"] == pred.label
    assert api["valid"] == pred.valid
    assert api["raw"] == pred.raw
    if pred.probabilities is None:
        assert api["probabilities"] is None
    else:
        assert api["probabilities"] == pytest.approx(pred.probabilities, abs=1e-5)


def app_error(client, *args, api_name: str, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name, **kwargs)
    return str(info.value)


# -- model status and loading ---------------------------------------------------------------------------
def test_status_reports_the_loaded_model(client, app):
    status = client.predict(api_name="/status")
    assert status["state"] == "ready"
    assert status["model"] == app["model"]
    assert status["adapter"] is None
    assert status["allows_training"] is True


def test_every_public_endpoint_and_output_has_a_name(client):
    """An API user reads the endpoint list: no auto-named endpoint (a component's callable value makes one,
    `/lambda_N`) and no auto-named output (`value_N`)."""
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/classify" in endpoints and "/label_load_texts" in endpoints
    assert not [name for name in endpoints if name.startswith("/lambda")]
    unnamed = {name: [r["label"] for r in ep["returns"] if r["label"].startswith("value_")]
               for name, ep in endpoints.items()}  # fmt: skip
    assert not {name: labels for name, labels in unnamed.items() if labels}


@pytest.mark.timeout(120)
def test_unknown_model_shows_error_and_keeps_previous(client, app, direct):
    for bad in ("google/this-model-does-not-exist-anywhere", "/no/such/checkpoint/folder"):
        client.predict(bad, "none", api_name="/load_model")
        status = wait_ready(client)
        assert status["state"] == "error"
        assert status["requested_model"] == bad
        assert "could not load" in status["error"] or "not found" in status["error"]
        assert status["model"] == app["model"]  # the previous model still serves
    res = client.predict("i feel calm", "score", False, False, api_name="/classify")
    assert_same_prediction(res, direct.classify("i feel calm", "score", adapter=False))


# -- classify --------------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["score", "generate"])
def test_classify_matches_a_direct_classifier(client, direct, mode):
    text = "i feel so lonely since my friends moved away"
    res = client.predict(text, mode, False, False, api_name="/classify")
    pred = direct.classify(text, mode, adapter=False)
    assert_same_prediction(res, pred)
    assert res["mode"] == mode
    assert res["text"] == text
    assert res["latency_ms"] > 0
    if mode == "score":
        assert set(res["probabilities"]) == set(LABELS)
        assert sum(res["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert res["label"] == max(res["probabilities"], key=res["probabilities"].get)
    else:
        assert res["valid"] == parse_answer(res["raw"]).valid


@pytest.mark.timeout(120)
def test_classify_batch_keeps_order(client, direct):
    texts = ["i am thrilled about the trip", "this is so unfair and i am angry", "i miss her"]
    results = client.predict(texts, "score", False, api_name="/classify_batch")
    assert [r["text"] for r in results] == texts
    for res, pred in zip(results, direct.predict(texts, "score", adapter=False)):
        assert res["label"] == pred.label
        assert res["probabilities"] == pytest.approx(pred.probabilities, abs=1e-4)


# -- Classify a file: the tab's event, public as /classify_file ------------------------------------------
@pytest.mark.timeout(300)
def test_classify_a_file_keeps_every_row_and_column_and_agrees_with_classify(client, shared_data, tmp_path):
    """An uploaded CSV with a column of its own: the download holds every row in input order with that
    column, then the labels, each the one /classify gives the text alone."""
    from gradio_client import handle_file

    from gemma_emotion.data import load_split

    texts = list(load_split(shared_data, "test", limit=24, seed=3)["text"])
    rows = [{"id": str(100 - i), "text": t, "source": f"forum-{i % 3}"} for i, t in enumerate(texts)]
    rows[4]["text"] = "   "  # no text: no label, and the row keeps its place
    rows[7]["text"] = '=HYPERLINK("http://x") i feel great'  # a formula for a spreadsheet: disarmed
    upload = write_csv(tmp_path / "posts.csv", rows)

    message, table, out = client.predict(handle_file(str(upload)), "score", api_name="/classify_file")

    assert message.startswith("24 rows classified") and "rows without text (no label): 1" in message
    assert Path(out).name == "posts-labelled.csv"
    with open(out, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["id", "text", "source", "label", "confidence", *[f"p_{n}" for n in LABELS]]
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    assert [r["source"] for r in got] == [r["source"] for r in rows]
    assert got[4]["label"] == "" and all(r["label"] in LABELS for i, r in enumerate(got) if i != 4)
    assert got[7]["text"] == "'" + rows[7]["text"]
    for i in (0, 7, 13, 23):
        alone = client.predict(rows[i]["text"], "score", False, True, api_name="/classify")
        assert got[i]["label"] == alone["label"], i
        for name in LABELS:
            assert float(got[i][f"p_{name}"]) == pytest.approx(alone["probabilities"][name], abs=1e-4)
    shown = [dict(zip(table["headers"], r)) for r in table["data"]]
    assert [r["text"] for r in shown] == [r["text"] for r in rows]  # the page's table: the text as it is
    assert [r["label"] or "" for r in shown] == [r["label"] for r in got]


@pytest.mark.timeout(120)
def test_a_file_over_the_row_limit_is_refused_and_the_app_stays_up(client, app, tmp_path):
    from gradio_client import handle_file

    big = tmp_path / "big.csv"
    big.write_text("text\n" + "i am fine\n" * 10_001, encoding="utf-8")
    message, table, out = client.predict(handle_file(str(big)), "score", api_name="/classify_file")
    assert "big.csv has 10,001 rows" in message and "max_batch_texts" in message
    assert "gemma-emotion predict big.csv" in message
    assert table["data"] == [] and out is None  # no table, no download
    assert app["proc"].poll() is None
    assert client.predict("still serving", api_name="/classify")["label"] in LABELS


@pytest.mark.timeout(300)
def test_a_file_is_labelled_from_the_text_column_chosen_in_the_app(client, app, shared_data, tmp_path):
    """ "Classify a file" with the column of texts chosen in the tab's Text column field (the endpoint's
    text_column): a file whose texts are in `post` (no text name, so predict cannot guess) is refused with a
    message naming the field, not the command's flag; with the field set every row is labelled, each as
    /classify labels its text alone. A file whose guess is wrong (`review`, a status, comes before
    `message` among the text names) is labelled from the column chosen."""
    from gradio_client import handle_file

    from gemma_emotion.data import load_split

    texts = list(load_split(shared_data, "test", limit=12, seed=5)["text"])
    rows = [{"id": str(i), "author": f"user{i % 4}", "post": t, "subject": f"thread {i // 3}"}
            for i, t in enumerate(texts)]  # fmt: skip
    upload = write_csv(tmp_path / "forum.csv", rows)

    message, table, out = client.predict(handle_file(str(upload)), "score", api_name="/classify_file")
    assert "forum.csv: no text column" in message and "found id, author, post, subject" in message
    assert "'Text column' field" in message and "--text-column" not in message
    assert table["data"] == [] and out is None
    assert table["headers"] == ["text", "label", "confidence"]  # not gradio's placeholder "1 2 3"
    message, _, out = client.predict(handle_file(str(upload)), "score", "body", api_name="/classify_file")
    assert "forum.csv: no column 'body'" in message and "'Text column' field" in message and out is None

    message, table, out = client.predict(handle_file(str(upload)), "score", "post", api_name="/classify_file")
    assert message.startswith("12 rows classified")
    with open(out, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == [
        "id",
        "author",
        "post",
        "subject",
        "label",
        "confidence",
        *[f"p_{n}" for n in LABELS],
    ]
    assert [r["post"] for r in got] == texts and [r["id"] for r in got] == [r["id"] for r in rows]
    for text, row in zip(texts, got):
        alone = client.predict(text, "score", False, True, api_name="/classify")
        assert row["label"] == alone["label"], text
        for name in LABELS:
            assert float(row[f"p_{name}"]) == pytest.approx(alone["probabilities"][name], abs=1e-4)
    assert [r[0] for r in table["data"]] == texts  # the page's table shows the chosen column's texts

    statuses = ["approved", "pending", "approved", "rejected"]
    wrong = write_csv(tmp_path / "moderated.csv",
                      [{"review": s, "message": t} for s, t in zip(statuses, texts)])  # fmt: skip
    _, guessed, _ = client.predict(handle_file(str(wrong)), "score", api_name="/classify_file")
    assert [r[0] for r in guessed["data"]] == statuses  # the guess labels the statuses
    message, table, out = client.predict(
        handle_file(str(wrong)), "score", "message", api_name="/classify_file"
    )
    assert message.startswith("4 rows classified")
    with open(out, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert [r["message"] for r in got] == texts[:4] and [r["review"] for r in got] == statuses
    assert [r[0] for r in table["data"]] == texts[:4]
    for text, row in zip(texts, got):
        assert row["label"] == client.predict(text, "score", False, True, api_name="/classify")["label"]


# -- the Label tab's "Score and load", public as /label_load_texts -----------------------------------------
@pytest.mark.timeout(300)
def test_the_label_tabs_download_holds_every_scored_text_as_the_tab_shows_it(client, shared_data, tmp_path):
    """A labelled CSV (some labels blank, a formula, a repeated text) and two typed lines scored in the
    Label tab: the download holds every scored text in input order, in the upload's format, with its gold
    label, the model's label, confidence and each label's probability, the same as the queue the tab shows
    (/label_queue scores the same texts) and as /classify; the item shown first is the least confident row.
    A JSON Lines upload gives JSON Lines."""
    import pandas as pd
    from gradio_client import handle_file

    from gemma_emotion.data import load_split
    from gemma_emotion.files import read_csv_rows

    ds = load_split(shared_data, "test", limit=10, seed=11)
    rows = [
        {"text": t, "label": LABELS[g] if i % 3 else ""}
        for i, (t, g) in enumerate(zip(ds["text"], ds["label"]))
    ]
    rows[4]["text"] = "=SUM(A1:A9) i feel great"  # a formula for a spreadsheet: disarmed in the download
    rows[7]["text"] = rows[2]["text"]  # a text twice: scored twice, one row each
    typed = ["i lost my keys again", "what a lovely surprise party"]
    upload = write_csv(tmp_path / "reviews.csv", rows)

    progress, shown_text, info, chart, message, out = client.predict(
        handle_file(str(upload)), "\n".join(typed), api_name="/label_load_texts"
    )
    assert message.startswith("loaded 12 texts") and "0 of 12 reviewed" in progress
    assert Path(out).name == "reviews-labelled.csv"
    assert b'"\'=SUM(A1:A9) i feel great"' in Path(out).read_bytes()  # disarmed for spreadsheets
    got = read_csv_rows(out)  # each cell as the text it stands for
    texts = [r["text"] for r in rows] + typed
    assert list(got[0]) == ["text", "gold", "label", "confidence", *[f"p_{n}" for n in LABELS]]
    assert [r["text"] for r in got] == texts
    assert [r["gold"] for r in got] == [r["label"] for r in rows] + ["", ""]
    queue = {it["text"]: it for it in client.predict(texts=texts, api_name="/label_queue")["items"]}
    for row in got:
        probs = {name: float(row[f"p_{name}"]) for name in LABELS}
        assert row["label"] == max(probs, key=probs.get) and float(row["confidence"]) == max(probs.values())
        item = queue[row["text"]]
        assert row["label"] == item["predicted"]
        assert probs == pytest.approx(item["probabilities"], abs=1e-5)
    for row in (got[0], got[4], got[-1]):
        alone = client.predict(row["text"], "score", False, True, api_name="/classify")
        assert row["label"] == alone["label"]

    # What the tab shows first: the least confident text, its label and confidence, its probability bars.
    first = min(got, key=lambda r: float(r["confidence"]))
    assert shown_text == first["text"]
    assert f"predicted **{first['label']}** ({float(first['confidence']):.0%})" in info
    bars = json.loads(chart["plot"])["data"][0]
    assert dict(zip(bars["x"], bars["y"])) == pytest.approx(
        {n: float(first[f"p_{n}"]) for n in LABELS}, abs=1e-5
    )

    lines = tmp_path / "posts.jsonl"
    lines.write_text("".join(json.dumps({"text": t}) + "\n" for t in typed), encoding="utf-8")
    *_, message, out = client.predict(handle_file(str(lines)), "", api_name="/label_load_texts")
    assert message.startswith("loaded 2 texts") and Path(out).name == "posts-labelled.jsonl"
    frame = pd.read_json(out, lines=True)
    assert list(frame["text"]) == typed and "gold" not in frame
    assert list(frame["label"]) == [r["label"] for r in got[-2:]]


def test_the_label_tab_scores_the_upload_column_chosen_in_its_text_column_field(client, app, tmp_path):
    """The Label tab's upload has the Classify tab's Text column field (the endpoint's `column`, last): a
    file whose texts are in `post` is refused with a message naming the field until the column is chosen;
    then every post is scored, with the file's `emotion` column as the gold labels."""
    from gradio_client import handle_file

    from gemma_emotion.files import read_csv_rows

    posts = ["i lost my keys again", "what a lovely surprise party", "i am furious with the landlord"]
    golds = ["sadness", "surprise", "anger"]
    rows = [{"id": str(i), "post": p, "emotion": g} for i, (p, g) in enumerate(zip(posts, golds))]
    rows.append({"id": "3", "post": "  ", "emotion": "joy"})  # no text: left out and counted, as predict does
    upload = write_csv(tmp_path / "forum.csv", rows)

    *_, message, out = client.predict(handle_file(str(upload)), "", api_name="/label_load_texts")
    assert "forum.csv: no text column" in message and "found id, post, emotion" in message
    assert "'Text column' field" in message and "--text-column" not in message and out is None
    *_, message, out = client.predict(
        path=handle_file(str(upload)), lines="", column="body", api_name="/label_load_texts"
    )
    assert "forum.csv: no column 'body'" in message and out is None

    *_, message, out = client.predict(
        path=handle_file(str(upload)), lines="", column="post", api_name="/label_load_texts"
    )
    assert message.startswith("loaded 3 texts") and Path(out).name == "forum-labelled.csv"
    assert message.endswith("(1 of 4 rows dropped: 1 empty text)"), message
    got = read_csv_rows(out)
    assert [r["text"] for r in got] == posts and [r["gold"] for r in got] == golds
    for row in got:
        assert (
            row["label"] == client.predict(row["text"], "score", False, True, api_name="/classify")["label"]
        )
    assert app["proc"].poll() is None


def test_empty_text_is_a_clear_error_and_the_app_stays_up(client, app):
    for empty in ("", "   \n "):
        assert "empty text" in app_error(client, empty, api_name="/classify")
    assert "mode must be one of" in app_error(client, "hello", "shout", api_name="/classify")
    assert "no texts" in app_error(client, [], api_name="/classify_batch")
    assert app["proc"].poll() is None
    assert client.predict("still serving", api_name="/classify")["label"] in LABELS


@pytest.mark.timeout(120)
def test_huge_text_is_cut_with_a_note(client, direct):
    text = "i feel fine " * 400  # 4800 characters; the limit is 2000
    res = client.predict(text, "score", False, False, api_name="/classify")
    assert "cut to its first 2000" in res["note"]
    assert len(res["text"]) == 2000
    assert_same_prediction(res, direct.classify(text.strip()[:2000], "score", adapter=False))


@pytest.mark.timeout(300)
def test_concurrent_classify_requests_do_not_mix_up(client, direct, shared_data):
    from gemma_emotion.data import load_split

    texts = list(load_split(shared_data, "test", limit=20, seed=1)["text"])
    assert len(set(texts)) == 20
    jobs = [client.submit(t, "score", False, False, api_name="/classify") for t in texts]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: job.result(timeout=240), jobs))
    for text, res in zip(texts, results):
        assert res["text"] == text.strip()
        assert_same_prediction(res, direct.classify(text.strip(), "score", adapter=False))


# -- evaluate --------------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_evaluate_writes_a_report_that_matches_direct_predictions(client, app, direct, shared_data):
    from gemma_emotion.data import load_split
    from gemma_emotion.evaluate import compute_metrics, load_report

    res = client.predict(str(shared_data), "test", 20, "score", "base", 0, api_name="/evaluate")
    report_dir = Path(res["report_dir"])
    assert report_dir.parent == app["runs"] / "reports"
    metrics = res["reports"]["base"]
    assert metrics["n"] == 20
    stored = load_report(report_dir / "base")
    assert stored.metrics["accuracy"] == metrics["accuracy"]
    assert len(stored.predictions) == 20

    rows = load_split(shared_data, "test", limit=20, stratify=True, seed=0)
    assert [p["text"] for p in stored.predictions] == list(rows["text"])
    assert [p["gold"] for p in stored.predictions] == [LABELS[i] for i in rows["label"]]
    preds = direct.predict(list(rows["text"]), "score", adapter=False)
    for row, pred in zip(stored.predictions, preds):
        assert float(row["prob_joy"]) == pytest.approx(pred.probabilities["joy"], abs=1e-4)
    recomputed = compute_metrics(list(rows["label"]), [p["predicted"] for p in stored.predictions])
    assert metrics["accuracy"] == recomputed["accuracy"]
    listed = client.predict(api_name="/reports")
    assert str(report_dir / "base") in {r["dir"] for r in listed}


def test_evaluate_bad_input_is_a_clear_error(client):
    assert "no such file" in app_error(client, "/no/such/data.jsonl", "test", 20, api_name="/evaluate")
    assert "split must be one of" in app_error(client, "", "dev", 20, api_name="/evaluate")
    negative = app_error(client, "", "test", -5, api_name="/evaluate")
    assert "the number of rows must be 0 (all of them) or more, got -5" in negative
    assert "unexpected" not in negative
    # Without an adapter there is no fine-tuned model to evaluate.
    assert "no adapter" in app_error(client, "", "test", 20, "score", "finetuned", api_name="/evaluate")


def test_compare_without_an_adapter_says_so(client):
    assert "no adapter is loaded" in app_error(client, "i am happy", api_name="/compare")
    assert "no run named 'nope': pick one from the list" in app_error(client, "nope", api_name="/compare_run")


# -- training, then compare with the new adapter -------------------------------------------------------
def wait_for(client, predicate, timeout: float, every: float = 1.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.predict("", 0, api_name="/train_status")
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status: {status}")
        time.sleep(every)


def test_train_start_refuses_nonsense(client):
    assert "epochs" in app_error(client, {"epochs": -1, "train_size": 8}, api_name="/train_start")
    assert "unknown training option" in app_error(client, {"epochz": 1}, api_name="/train_start")


@pytest.mark.timeout(600)
def test_train_start_status_stop_and_second_start_refused(client, app, shared_data):
    long_run = {"model": app["model"], "data": str(shared_data), "train_size": 4000, "test_size": 0}
    started = client.predict(long_run, api_name="/train_start")
    assert started["status"] == "running"
    message = app_error(client, long_run, api_name="/train_start")
    assert "already training" in message and started["name"] in message

    status = wait_for(client, lambda s: len(s["records"]) >= 2, timeout=240)
    assert status["active"] == started["name"]
    assert status["run"]["status"] == "running"
    first = status["records"][0]
    assert first["step"] >= 1 and first["loss"] > 0
    assert 0 < status["progress"]["fraction"] < 1
    later = client.predict(started["name"], status["next"], api_name="/train_status")
    assert all(r["step"] > status["records"][-1]["step"] for r in later["records"])

    stopped = client.predict(api_name="/train_stop")
    assert stopped["stopped"] is True
    assert stopped["run"]["status"] == "stopped"
    assert client.predict(api_name="/train_stop") == {"stopped": False, "run": None}
    final = client.predict(started["name"], 0, api_name="/train_status")
    assert final["active"] is None and final["run"]["status"] == "stopped"


@pytest.mark.timeout(600)
def test_short_run_completes_then_compare_uses_its_adapter(client, app, shared_data, direct):
    # 0 is the form's "auto" for the learning rate; balance is the form's checkbox.
    config = {"model": app["model"], "data": str(shared_data), "train_size": 16, "test_size": 12,
              "eval_steps": 1, "eval_size": 8, "name": "short-run", "learning_rate": 0,
              "balance": True}  # fmt: skip
    client.predict(config, api_name="/train_start")
    try:
        _check_short_run(client, app, shared_data, direct)
    finally:  # the other tests expect the bare model
        client.predict(app["model"], "none", api_name="/load_model")
        wait_ready(client)


def _check_short_run(client, app, shared_data, direct):
    status = wait_for(client, lambda s: s["run"]["status"] != "running", timeout=420, every=2)
    assert status["run"]["status"] == "completed", status["run"]["error"]
    record = json.loads((Path(status["run"]["run_dir"]) / "run.json").read_text())
    assert record["config"]["learning_rate"] is None and record["plan"]["learning_rate"] == 2e-4
    assert record["config"]["balance"] is True and any("labels balanced" in n for n in record["notes"])
    assert status["progress"]["fraction"] == 1.0
    assert any(r.get("eval_loss") is not None for r in status["records"])
    table = client.predict("short-run", api_name="/compare_run")
    assert table["n"] == 12
    assert set(table["metrics"]) == {"accuracy", "macro_f1", "invalid"}

    adapter = status["run"]["adapter_dir"]
    assert adapter in {a["value"] for a in client.predict(api_name="/adapters")}
    client.predict(app["model"], adapter, api_name="/load_model")
    loaded = wait_ready(client)
    assert loaded["state"] == "ready" and loaded["adapter"] == adapter

    text = "i am terrified of the exam results"
    pair = client.predict(text, "score", api_name="/compare")
    assert pair["adapter"] == adapter
    assert_same_prediction(pair["base"], direct.classify(text, "score", adapter=False))
    assert pair["agree"] == (pair["base"]["label"] == pair["finetuned"]["label"])
    tuned = client.predict(text, "score", False, True, api_name="/classify")
    assert tuned["probabilities"] == pytest.approx(pair["finetuned"]["probabilities"], abs=1e-6)
    assert tuned["probabilities"] != pytest.approx(pair["base"]["probabilities"], abs=1e-7)

    batch = client.predict([text, "what a lovely surprise"], "score", api_name="/compare_batch")
    assert [r["text"] for r in batch["rows"]] == [text, "what a lovely surprise"]
    assert batch["agree"] + batch["disagree"] == 2

    both = client.predict(str(shared_data), "test", 12, "score", "both", 0, api_name="/evaluate")
    assert set(both["reports"]) == {"base", "finetuned"}
    assert both["comparison"]["metrics"]["accuracy"]["base"] == both["reports"]["base"]["accuracy"]


# -- uploads (the tabs' file reader, in process) -------------------------------------------------------
def test_malformed_upload_gives_a_message_naming_the_file(tmp_path):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.common import read_upload
    from gemma_emotion.ui.state import UserError

    settings = load_settings(None, env={})
    bad = tmp_path / "texts.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": broken\n')
    with pytest.raises(UserError, match=r"texts\.jsonl, line 2: not valid JSON"):
        read_upload(str(bad), settings)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UserError, match="use a .csv"):
        read_upload(str(other), settings)
    good = tmp_path / "texts.csv"
    with open(good, "w", newline="") as fh:
        csv.writer(fh).writerows([["text", "label"], ["i am glad", "joy"], ["so sad", ""]])
    assert read_upload(str(good), settings) == (["i am glad", "so sad"], [1, -1], "")
    with open(good, "a", newline="") as fh:
        csv.writer(fh).writerows([["", "joy"], ["   ", ""]])
    dropped = "2 of 4 rows dropped: 2 empty text"
    assert read_upload(str(good), settings) == (["i am glad", "so sad"], [1, -1], dropped)


# -- demo mode -------------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_demo_mode_refuses_training_and_server_paths(tiny_gemma3, shared_data, tmp_path):
    from gradio_client import Client

    with start_app(tiny_gemma3, tmp_path / "runs", shared_data, tmp_path / "app.log", extra=("--demo",),
                   env_extra={"GEMMA_EMOTION_MAX_EVAL_ROWS": "15"}) as (url, _proc):  # fmt: skip
        client = Client(url, verbose=False)
        status = wait_ready(client)
        assert status["state"] == "ready" and status["demo_mode"] is True
        assert status["allows_training"] is False
        assert "switched off" in app_error(client, {"train_size": 8}, api_name="/train_start")
        assert "switched off" in app_error(client, api_name="/train_stop")
        assert "in this demo" in app_error(client, str(tmp_path), "none", api_name="/load_model")
        assert "in this demo" in app_error(client, str(tmp_path / "x.jsonl"), "test", 5, api_name="/evaluate")
        res = client.predict("", "test", 0, "score", "base", api_name="/evaluate")
        assert res["reports"]["base"]["n"] == 15  # "all rows" clamped to max_eval_rows
        assert client.predict("i feel great", api_name="/classify")["label"] in LABELS


# -- the app state in process: thinking is a Gemma 4 switch ------------------------------------------------
@pytest.mark.timeout(120)
def test_thinking_toggle_reaches_gemma4_prompts_only(tiny_gemma3, tiny_gemma4, tmp_path):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.classify import classify_text
    from gemma_emotion.ui.state import AppState

    for model, supported in ((tiny_gemma4, True), (tiny_gemma3, False)):
        state = AppState(
            load_settings(None, env={}, overrides={"model": str(model), "storage": str(tmp_path)})
        )
        state.load(str(model), None)
        assert state.wait_for_load(60)
        plain = classify_text(state, "i feel so alone tonight", "score", thinking=False)
        thinking = classify_text(state, "i feel so alone tonight", "score", thinking=True)
        assert thinking["thinking"] is supported and plain["thinking"] is False
        with state.classifier(thinking=True) as clf:
            ids = clf.prompt_ids("hello")
        think_id = state.model.tokenizer.convert_tokens_to_ids("<|think|>") if supported else None
        assert (think_id in ids) is supported
        if supported:
            assert thinking["probabilities"] != plain["probabilities"]
        else:
            assert thinking["probabilities"] == plain["probabilities"]
