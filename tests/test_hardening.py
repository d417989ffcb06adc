"""Hardening: bad input, load, faults and security.

The app runs as `python app.py` with a tiny model (one launch per mode for the whole module; the crash test
starts its own) and is driven through gradio_client, or through raw HTTP where a browser could send what
the client will not. What a launched app cannot show (a full disk, the upload size check, escaping) is
checked in process. Every app here runs with HF_TOKEN set to a canary; the last test looks for it in
everything they printed, wrote and answered. docs/reliability.md counts the cases of this file.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
from test_app_api import REPO, app_error, assert_same_prediction, start_app, wait_ready

from gemma_emotion.labels import LABELS

TOKEN = "hf_testsecret123"
FAULT = "oom_at_step:2"  # GEMMA_EMOTION_FAULT: the training process raises an out-of-memory error at step 2
CANARY = "TOPSECRET-canary"
PASSWD = "root:x:0:0"
MARKUP = "<img src=x onerror=alert(1)>"
SERVING_TEXT = "i feel calm and safe at home"


# -- apps and helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def leaks() -> dict[str, list]:
    """Every log file and runs folder this module's apps wrote, and API answers, for the HF_TOKEN check."""
    return {"logs": [], "dirs": [], "answers": []}


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory, leaks):
    runs = tmp_path_factory.mktemp("hard-runs")
    log = tmp_path_factory.mktemp("hard-log") / "app.log"
    leaks["logs"].append(log)
    leaks["dirs"].append(runs)
    env = {"HF_TOKEN": TOKEN, "GEMMA_EMOTION_FAULT": FAULT}
    with start_app(tiny_gemma3, runs, shared_data, log, concurrency=4, env_extra=env) as (url, proc):
        yield {"url": url, "runs": runs, "proc": proc, "log": log, "model": str(tiny_gemma3)}


def make_client(url: str):
    from gradio_client import Client

    # 64 workers: the client's default of 40 would cap the 50 concurrent requests below.
    client = Client(url, verbose=False, max_workers=64)
    status = wait_ready(client)
    assert status["state"] == "ready", status
    return client


@pytest.fixture(scope="module")
def client(app):
    return make_client(app["url"])


@pytest.fixture(scope="module")
def direct(tiny_gemma3):
    """The same checkpoint loaded in the test process: what every answer of the app must agree with."""
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import load_model

    return Classifier(load_model(str(tiny_gemma3)))


@pytest.fixture(scope="module")
def outside(tmp_path_factory, tiny_gemma4) -> dict[str, Path]:
    """Canary files outside any app's data folder: a data file, a report folder, a model, an adapter."""
    root = tmp_path_factory.mktemp("outside")
    secret = root / "secret.csv"
    secret.write_text(f"text,label\n{CANARY} i feel fine,joy\n", encoding="utf-8")
    report = root / "report"
    report.mkdir()
    (report / "metrics.json").write_text(json.dumps({"accuracy": 1.0, "macro_f1": 1.0, "invalid": 0, "n": 1}))
    (report / "predictions.csv").write_text(
        f"text,gold,predicted,correct,valid,raw\n{CANARY},joy,sadness,False,True,sadness\n"
    )
    # Not the apps' own model (which the demo must serve): another checkpoint elsewhere on the server.
    return {"root": root, "secret": secret, "report": report, "model": Path(tiny_gemma4)}


@pytest.fixture(scope="module")
def demo_app(tiny_gemma3, shared_data, tmp_path_factory, leaks, outside):
    runs = tmp_path_factory.mktemp("hard-demo-runs")
    # Symlinks inside the data folder that point out of it.
    (runs / "link.csv").symlink_to(outside["secret"])
    (runs / "link-report").symlink_to(outside["report"], target_is_directory=True)
    (runs / "link-model").symlink_to(outside["model"], target_is_directory=True)
    log = tmp_path_factory.mktemp("hard-demo-log") / "app.log"
    leaks["logs"].append(log)
    leaks["dirs"].append(runs)
    env = {"HF_TOKEN": TOKEN}
    with start_app(tiny_gemma3, runs, shared_data, log, extra=("--demo",), env_extra=env) as (url, proc):
        yield {"url": url, "runs": runs, "proc": proc, "log": log}


@pytest.fixture(scope="module")
def demo_client(demo_app):
    return make_client(demo_app["url"])


def assert_serving(client, direct) -> None:
    """The app still answers a normal classify, with the right result."""
    res = client.predict(SERVING_TEXT, "score", False, False, api_name="/classify")
    assert_same_prediction(res, direct.classify(SERVING_TEXT, "score", adapter=False))


def answer(client, *args, api_name: str, **kwargs) -> str:
    """The endpoint's answer or its error message, as text; a returned file is read."""
    from gradio_client.exceptions import AppError

    try:
        result = client.predict(*args, api_name=api_name, **kwargs)
    except AppError as exc:
        return f"error: {exc}"
    if isinstance(result, str) and os.path.isfile(result):  # gradio_client downloads a returned file
        return Path(result).read_text(encoding="utf-8", errors="replace")
    return json.dumps(result, ensure_ascii=False)


def wait_run(client, name: str, predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.predict(name, 0, api_name="/train_status")
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status: {status}")
        time.sleep(1)


def run_folders(runs: Path) -> set[str]:
    return {p.parent.name for p in runs.glob("*/run.json")}


def queue_call(url: str, fn_index: int, data: list, trigger_id: int | None) -> dict:
    """Call an event the way the page does (POST queue/join, read the event stream): gradio_client refuses
    private events, a hand-written request does not."""
    session = uuid.uuid4().hex[:12]
    body = {"data": data, "fn_index": fn_index, "session_hash": session, "trigger_id": trigger_id}
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("gradio_api/queue/join", json=body).raise_for_status()
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        return msg
    raise AssertionError("the event stream ended without a result")


# == 1. bad input ======================================================================================
@pytest.mark.parametrize(
    ("api", "arg", "expected"),
    [
        ("/classify", "", "empty text"),
        ("/classify", "   \n\t  ", "empty text"),
        ("/compare", "  ", "empty text"),
        ("/classify_batch", [], "no texts"),
        ("/classify_batch", ["i am fine", " \n "], "text 2 is empty (of 2): give every text some words"),
        ("/classify_batch", ["", "i am fine", None, "ok"], "texts 1, 3 are empty (of 4)"),
        ("/compare_batch", [], "no texts"),
        ("/compare_batch", ["i am fine", "", "ok"], "text 2 is empty (of 3)"),
    ],
    ids=["classify-empty", "classify-blank", "compare-blank", "batch-none", "batch-blank", "batch-two-blank",
         "compare-none", "compare-blank-one"],
)
def test_empty_and_blank_texts_are_refused(client, direct, api, arg, expected):
    assert expected in app_error(client, arg, api_name=api)
    assert_serving(client, direct)


@pytest.mark.timeout(120)
def test_a_megabyte_of_text_is_cut_with_a_note(client, direct):
    text = ("i feel calm and happy today " * 40_000)[: 1_000_000 - 1] + "!"
    assert len(text.encode()) == 1_000_000
    limit = 2000  # settings.max_text_chars
    res = client.predict(text, "score", False, False, api_name="/classify")
    assert f"cut to its first {limit} of {len(text)} characters" in res["note"]
    assert res["text"] == text[:limit]
    assert_same_prediction(res, direct.classify(text[:limit], "score", adapter=False))
    batch = client.predict([text, "i am sad"], "score", False, api_name="/classify_batch")
    assert batch[0]["note"] and batch[1]["note"] is None
    assert_serving(client, direct)


ODD_TEXTS = {
    "control": "i feel \x00\x01\x07\x1b[31m odd\x7f today",
    "only-nul": "\x00",
    "crlf": "line one\r\nline two\n\nthree",
    "rtl-arabic": "أشعر بالسعادة اليوم",
    "rtl-hebrew": "אני מרגיש עצוב",
    "rtl-override": "\u202ei feel sad\u202c",
    "emoji": "😀🔥 i love this 👨‍👩‍👧",
    "zero-width": "i\u200b feel\u200d fine\ufeff",
    "combining": "Z\u0337\u0322a\u0336l\u0338g\u0334o\u0335 scares me",
    "cjk": "我今天很开心",
    "markup": MARKUP,
}


@pytest.mark.parametrize("kind", list(ODD_TEXTS))
def test_control_rtl_and_emoji_texts_are_classified(client, direct, kind):
    text = ODD_TEXTS[kind]
    res = client.predict(text, "score", False, False, api_name="/classify")
    assert res["text"] == text.strip()  # returned as data, not altered (nor HTML-escaped) on the way
    assert res["label"] in LABELS
    assert_same_prediction(res, direct.classify(text.strip(), "score", adapter=False))


@pytest.mark.timeout(60)
def test_a_51_mb_upload_is_refused_by_the_server(app, client, direct, tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:
        fh.truncate(51 * 1024 * 1024)  # sparse: no 51 MB written to the test machine's disk
    with open(big, "rb") as fh:
        resp = httpx.post(app["url"] + "gradio_api/upload", files={"files": ("big.csv", fh)}, timeout=60)
    assert resp.status_code == 413
    assert "maximum allowed size" in resp.text
    assert_serving(client, direct)


def test_an_upload_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui import common
    from gemma_emotion.ui.state import UserError

    def no_reading(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(common, "read_split", no_reading)
    for limit_mb, size_mb in ((50, 51), (1, 2)):
        settings = load_settings(None, env={"GEMMA_EMOTION_MAX_UPLOAD_MB": str(limit_mb)})
        big = tmp_path / f"big-{size_mb}.csv"
        with open(big, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        with pytest.raises(UserError, match=f"big-{size_mb}.csv is larger than {limit_mb} MB"):
            common.read_upload(str(big), settings)


BINARIES = {
    "random": os.urandom(8192) + b"\x00",
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
    "utf16": "text,label\ni am happy,joy\n".encode("utf-16"),
    "latin1": "text,label\ncaf\xe9 makes me happy,joy\n".encode("latin-1"),
}


@pytest.mark.parametrize("kind", list(BINARIES))
def test_a_binary_file_uploaded_as_csv_is_a_clear_error(tmp_path, kind):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.common import read_upload
    from gemma_emotion.ui.state import UserError

    path = tmp_path / f"{kind}.csv"
    path.write_bytes(BINARIES[kind])
    expected = "not UTF-8" if kind == "latin1" else "this is a binary file, not CSV"
    with pytest.raises(UserError, match=expected) as info:
        read_upload(str(path), load_settings(None, env={}))
    assert str(tmp_path) not in str(info.value)  # the file by its name, not the server's temp path


# (name, file content, for the tabs' reader: the error, or the (texts, labels) it reads;
#  for /evaluate, which needs labels: the error, or None when it evaluates)
TABLES = [
    ("missing-text.csv", "sentence_x,label\nhi,joy\n", "no text column", "no text column"),
    ("missing-label.csv", "text\ni am here\n", (["i am here"], [-1]), "no label column"),
    ("extra-columns.csv", "text,label,extra\nhello,joy,1\nbye,sadness,2\n", (["hello", "bye"], [1, 0]), None),
    ("extra-field.csv", "text,label\nhello,joy,oops\n", "line 2: more fields than the header", "line 2"),
    ("short-row.csv", "text,label\nhello,joy\nbye\n", (["hello", "bye"], [1, -1]), "line 3: missing label"),
    ("semicolons.csv", "text;label\nhello there;joy\nso sad;sadness\n", (["hello there", "so sad"], [1, 0]),
     None),
    ("tabs.csv", "text\tlabel\nhello there\tjoy\n", (["hello there"], [1]), None),
    ("colons.csv", "text:label\nhello there:joy\n", "no text column", "no text column"),
    ("label-word.csv", "text,label\nhello,happy\n", "line 2: unknown label 'happy'", "unknown label 'happy'"),
    ("label-7.csv", "text,label\nhello,7\n", "line 2: label 7 is outside 0-5", "outside 0-5"),
    ("label-negative.csv", "text,label\nhello,-1\n", "unknown label '-1'", "unknown label '-1'"),
    ("mixed.csv", "text,label\nhello,joy\n123,3\nok,SADNESS\n", (["hello", "123", "ok"], [1, 3, 0]), None),
    # The tabs' reader leaves empty texts out, as predict does (here: all of them); Evaluate refuses them.
    ("empty-text.csv", "text,label\n ,joy\n", "no usable rows (1 empty text", "line 2: empty text"),
    ("empty.csv", "", "the file is empty", "the file is empty"),
    ("unclosed-quote.csv", 'text,label\n"fine",joy\n"open,joy\nnext,sadness\n',
     "line 3: a quoted text is never closed", "line 3: a quoted text is never closed"),
    ("stray-quote.csv", "text,label\ni am 5'11\" tall,joy\n", (["i am 5'11\" tall"], [1]), None),
    ("header-only.csv", "text,label\n", "no rows", "no rows"),
    ("text-number.jsonl", '{"text": 5, "label": 1}\n', "'text' is missing or not a string", "not a string"),
    ("label-bool.jsonl", '{"text": "hi", "label": true}\n', "unknown label True", "unknown label True"),
    ("label-list.jsonl", '{"text": "hi", "label": [1]}\n', "unknown label", "unknown label"),
    ("label-float.jsonl", '{"text": "hi", "label": 2.0}\n{"text": "yo", "label": "fear"}\n',
     (["hi", "yo"], [2, 4]), None),
    ("broken.jsonl", '{"text": "fine", "label": 1}\n{"text": broken\n', "line 2: not valid JSON", "line 2"),
    ("not-objects.json", "[1, 2]", "no text column", "no text column"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "read", "evaluated"), TABLES, ids=[t[0] for t in TABLES])
def test_malformed_tables_give_a_clear_message(client, direct, tmp_path, name, content, read, evaluated):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.common import read_upload
    from gemma_emotion.ui.state import UserError

    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    if isinstance(read, str):
        with pytest.raises(UserError, match=read.replace("(", r"\(")) as info:
            read_upload(str(path), load_settings(None, env={}))
        assert str(info.value).startswith(name)
    else:
        assert read_upload(str(path), load_settings(None, env={})) == (*read, "")

    if evaluated is None:
        res = client.predict(str(path), "test", 0, "score", "base", 0, api_name="/evaluate")
        assert res["reports"]["base"]["n"] == len(read[0])
    else:
        assert evaluated in app_error(client, str(path), "test", 0, "score", "base", api_name="/evaluate")
    assert_serving(client, direct)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "model", ["google/this-model-does-not-exist-anywhere", "nobody/x", "/no/such/checkpoint", "./rel/nope"]
)
def test_a_model_that_does_not_exist_leaves_the_current_one_serving(client, app, direct, model):
    client.predict(model, "none", api_name="/load_model")  # HF_HUB_OFFLINE=1: fails at once
    status = wait_ready(client)
    assert status["state"] == "error" and status["requested_model"] == model
    assert "could not load" in status["error"] or "not found" in status["error"]
    assert status["model"] == app["model"]
    assert_serving(client, direct)


def save_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter for `base` with random (not zero) weights, so that it changes predictions."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    return out


@pytest.mark.timeout(180)
def test_an_adapter_for_another_base_model_is_refused(
    client, app, direct, tiny_gemma3, tiny_gemma4, tmp_path
):
    foreign = save_adapter(tiny_gemma4, tmp_path / "gemma4-adapter")
    own = save_adapter(tiny_gemma3, tmp_path / "gemma3-adapter")
    not_adapter = tmp_path / "empty"
    not_adapter.mkdir()
    try:
        for adapter, expected in ((foreign, "does not fit model"), (not_adapter, "no adapter_config.json")):
            client.predict(app["model"], str(adapter), api_name="/load_model")
            status = wait_ready(client)
            assert status["state"] == "error" and expected in status["error"]
            assert status["model"] == app["model"] and status["adapter"] is None
            assert_serving(client, direct)
        # The failed attach left the model clean: a fitting adapter still goes on and changes the answer.
        client.predict(app["model"], str(own), api_name="/load_model")
        status = wait_ready(client)
        assert status["state"] == "ready" and status["adapter"] == str(own)
        tuned = client.predict(SERVING_TEXT, "score", False, True, api_name="/classify")
        base = client.predict(SERVING_TEXT, "score", False, False, api_name="/classify")
        assert tuned["probabilities"] != pytest.approx(base["probabilities"], abs=1e-6)
        assert_same_prediction(base, direct.classify(SERVING_TEXT, "score", adapter=False))
    finally:
        client.predict(app["model"], "none", api_name="/load_model")
        assert wait_ready(client)["adapter"] is None


NONSENSE = [
    ({"epochs": -1}, "epochs must be more than 0"),
    ({"epochs": 0}, "epochs must be more than 0"),
    ({"epochs": "abc"}, "epochs must be a number, got 'abc'"),
    ({"learning_rate": "fast"}, "learning rate must be a number"),
    ({"learning_rate": -0.001}, "learning rate must be between 0 and 1"),
    ({"learning_rate": 5}, "learning rate must be between 0 and 1"),
    ({"batch_size": 64, "train_size": 8}, "batch size 64 is larger than the 8 training rows"),
    ({"batch_size": -2}, "batch size must be a whole number >= 1"),
    ({"train_size": -5}, "train size must be a whole number >= 1"),
    ({"max_length": 3}, "max length must be a whole number >= 16"),
    ({"lora_r": 0}, "LoRA r must be a whole number >= 1"),
    ({"lora_dropout": 1.5}, "LoRA dropout must be in [0, 1)"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"eval_steps": -3}, "eval steps must be a whole number >= 1"),
    ({"model": "   "}, "model is empty"),
    ({"data": ""}, "data is empty"),
    ({"name": "../../etc"}, "run name '../../etc' is not allowed"),
    ({"epochz": 1}, "unknown training option(s): epochz"),
]


@pytest.mark.parametrize(("config", "expected"), NONSENSE, ids=[json.dumps(c) for c, _ in NONSENSE])
def test_nonsense_training_options_are_refused(client, app, direct, config, expected):
    before = run_folders(app["runs"])
    assert expected in app_error(client, config, api_name="/train_start")
    assert run_folders(app["runs"]) == before  # refused before any run folder is made
    assert_serving(client, direct)


# == 2. load ===========================================================================================
@pytest.mark.timeout(300)
def test_concurrent_classify(client, direct, shared_data):
    """50 requests in flight at once: every one answered, each with the result of its own text."""
    from gemma_emotion.data import load_split

    texts = [t.strip() for t in load_split(shared_data, "test", limit=50, seed=2)["text"]]
    assert len(set(texts)) == 50
    jobs = [client.submit(t, "score", False, False, api_name="/classify") for t in texts]
    results = [job.result(timeout=240) for job in jobs]
    for text, res in zip(texts, results):
        assert res["text"] == text
        assert_same_prediction(res, direct.classify(text, "score", adapter=False))


# == 3. faults =========================================================================================
@pytest.mark.timeout(420)
def test_an_exception_inside_training_fails_the_run_and_the_app_serves_on(client, app, direct, shared_data):
    from gemma_emotion.train import ENV_FAULT

    assert ENV_FAULT == "GEMMA_EMOTION_FAULT"  # the app fixture sets it for its training processes
    config = {"model": app["model"], "data": str(shared_data), "train_size": 32, "batch_size": 4,
              "test_size": 0, "name": "fault"}  # fmt: skip
    assert client.predict(config, api_name="/train_start")["status"] == "running"
    status = wait_run(client, "fault", lambda s: s["run"]["status"] != "running", timeout=360)
    run = status["run"]
    assert run["status"] == "failed"
    assert "out of memory" in run["error"] and "simulated by GEMMA_EMOTION_FAULT" in run["error"]
    assert "smaller batch size" in run["error"]  # says what to change
    assert status["active"] is None and run["adapter_dir"] is None
    assert all(r["step"] <= 2 for r in status["records"])
    assert app["proc"].poll() is None
    assert_serving(client, direct)
    assert "fault" not in json.dumps(client.predict(api_name="/adapters"))


def sigkill_and_wait(pid: int) -> None:
    import psutil

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(30)


def log_lines(runs: Path, name: str) -> list[dict]:
    data = (runs / name / "log.jsonl").read_bytes()
    assert data.endswith(b"\n")  # whole lines only
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.timeout(600)
def test_sigkill_during_training(tiny_gemma3, shared_data, tmp_path, leaks):
    """SIGKILL the app while it trains. The training runs in its own process and session, so it survives and
    the restarted app finds it again; killed together with its training (a crashed machine), the run reads
    as failed with its log intact. Finished adapters and the corrections survive both."""
    from gemma_emotion.runs import ENDED_UNEXPECTEDLY

    runs = tmp_path / "runs"
    env = {"HF_TOKEN": TOKEN}
    leaks["dirs"].append(runs)
    # All 16,000 rows, two epochs: the run must outlast a restart of the app on a fast machine too (4,000 rows
    # had finished before the restarted app looked, on 2 cores of 2026-12-02).
    config = {
        "model": str(tiny_gemma3),
        "data": str(shared_data),
        "train_size": 16000,
        "epochs": 2,
        "test_size": 0,
    }
    corrections = [("the storm kept me awake all night", "fear"), ("what a lovely gift", "joy")]

    def launch(tag: str):
        log = tmp_path / f"app-{tag}.log"
        leaks["logs"].append(log)
        return start_app(tiny_gemma3, runs, shared_data, log, env_extra=env)

    with contextlib.ExitStack() as stack:
        url, proc_a = stack.enter_context(launch("a"))
        client = make_client(url)
        for text, label in corrections:
            client.predict(text=text, label=label, api_name="/label_submit")
        saved = client.predict(api_name="/corrections_list")["corrections"]
        client.predict({**config, "name": "survivor"}, api_name="/train_start")
        status = wait_run(client, "survivor", lambda s: len(s["records"]) >= 2, timeout=240)
        sigkill_and_wait(proc_a.pid)  # the app only

        url, proc_b = stack.enter_context(launch("b"))
        client = make_client(url)
        status = client.predict("", 0, api_name="/train_status")
        assert status["active"] == "survivor" and status["run"]["status"] == "running"
        seen = len(log_lines(runs, "survivor"))
        wait_run(client, "survivor", lambda s: len(s["records"]) > seen, timeout=120)  # it kept training
        stopped = client.predict(api_name="/train_stop")
        assert stopped["run"]["name"] == "survivor" and stopped["run"]["status"] == "stopped"
        adapter = stopped["run"]["adapter_dir"]
        assert adapter and (Path(adapter) / "adapter_config.json").is_file()

        client.predict({**config, "name": "killed"}, api_name="/train_start")
        status = wait_run(client, "killed", lambda s: len(s["records"]) >= 2, timeout=240)
        sigkill_and_wait(proc_b.pid)  # the app and its training: a crashed machine
        sigkill_and_wait(status["run"]["pid"])
        records = log_lines(runs, "killed")
        assert len(records) >= 2

        url, _proc_c = stack.enter_context(launch("c"))
        client = make_client(url)
        killed = client.predict("killed", 0, api_name="/train_status")
        assert killed["active"] is None
        assert killed["run"]["status"] == "failed" and ENDED_UNEXPECTEDLY in killed["run"]["error"]
        assert killed["records"] == records and killed["run"]["adapter_dir"] is None
        assert not (runs / "killed" / "adapter").exists()
        survivor = client.predict("survivor", 0, api_name="/train_status")["run"]
        assert survivor["status"] == "stopped" and survivor["adapter_dir"] == adapter
        assert client.predict(api_name="/corrections_list")["corrections"] == saved
        client.predict(str(tiny_gemma3), adapter, api_name="/load_model")
        loaded = wait_ready(client)
        assert loaded["state"] == "ready" and loaded["adapter"] == adapter
        assert client.predict(SERVING_TEXT, "score", False, True, api_name="/classify")["label"] in LABELS


class _FullDisk:
    """A file that takes the first half of what it is given, then fails as a full disk does."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, text):
        self.fh.write(text[: len(text) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


class _OsProxy:
    """The os module as one module sees it, some functions replaced (the rest of the process keeps os)."""

    def __init__(self, **replaced):
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(os, name)


def disk_full_after(monkeypatch, writes_ok: int) -> None:
    """gemma_emotion.files' atomic writes: the first `writes_ok` files are written, then the disk is full
    (the next write puts half its bytes down and fails with ENOSPC, as a real full disk does)."""
    from gemma_emotion import files

    calls = {"n": 0}

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] <= writes_ok:
            return os.write(fd, data)
        os.write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "os", _OsProxy(write=write))


def tiny_report():
    from gemma_emotion.evaluate import Report, compute_metrics

    row = {
        "text": "i am glad",
        "gold": "joy",
        "predicted": "joy",
        "correct": True,
        "valid": True,
        "raw": "joy",
    }
    rows = [{**row, **{f"prob_{n}": 0.1 for n in LABELS}}]
    return Report(metrics=compute_metrics([1], ["joy"]), predictions=rows)


@pytest.mark.parametrize("writes_ok", [0, 1], ids=["first-file", "second-file"])
def test_disk_full_while_writing_a_report_leaves_no_report(tmp_path, monkeypatch, writes_ok):
    from gemma_emotion.evaluate import METRICS_FILE, write_report
    from gemma_emotion.ui.common import message_of

    disk_full_after(monkeypatch, writes_ok)
    with pytest.raises(OSError) as info:
        write_report(tiny_report(), tmp_path / "report")
    assert message_of(info.value).startswith("no space left on the device")
    assert not (tmp_path / "report" / METRICS_FILE).exists()  # what marks a report as complete
    assert not list((tmp_path / "report").glob(".*.tmp"))  # no half-written temp file either


@pytest.mark.timeout(120)
def test_disk_full_during_an_evaluation_lists_nothing(tiny_gemma3, shared_data, tmp_path, monkeypatch):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.common import message_of
    from gemma_emotion.ui.evaluate import list_reports, run_evaluation
    from gemma_emotion.ui.state import AppState

    settings = load_settings(None, env={}, overrides={"model": str(tiny_gemma3), "storage": str(tmp_path)})
    state = AppState(settings)
    state.load(str(tiny_gemma3), None)
    assert state.wait_for_load(60)
    before = list_reports(state)  # reports shipped with the app may be listed too
    disk_full_after(monkeypatch, writes_ok=1)  # predictions.csv is written, metrics.json is not
    with pytest.raises(OSError) as info:
        run_evaluation(state, str(shared_data), "test", 12, "score", "base")
    assert "no space left" in message_of(info.value)
    assert list_reports(state) == before
    assert not state.reports_dir.exists() or not any(state.reports_dir.iterdir())
    monkeypatch.undo()
    res = run_evaluation(state, str(shared_data), "test", 12, "score", "base")
    added = [path for item, path in list_reports(state) if (item, path) not in before]
    assert added == [str(Path(res["report_dir"]) / "base")]


def test_disk_full_while_preparing_a_download_leaves_no_file(monkeypatch):
    from gemma_emotion.ui.common import csv_text, download

    def ours() -> set[str]:
        return {p.name for p in Path(tempfile.gettempdir()).glob("gemma-emotion-*")}

    before = ours()
    disk_full_after(monkeypatch, writes_ok=0)
    with pytest.raises(OSError):
        download("predictions.csv", csv_text([{"text": "x" * 1000}], ["text"]))
    assert ours() == before


def test_disk_full_while_exporting_corrections_keeps_the_previous_export(tmp_path, monkeypatch):
    from gemma_emotion.corrections import CorrectionsError, CorrectionStore, export

    store = CorrectionStore(tmp_path / "runs")
    store.add("i lost my keys again", "anger")
    out = tmp_path / "exports" / "corrections.csv"
    export(store, "csv", out)
    first = out.read_bytes()
    store.add("the sunset was beautiful", "joy")
    state = {"written": False}

    def write(fd, data):
        if state["written"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        state["written"] = True
        return os.write(fd, bytes(data[: len(data) // 2]))

    from gemma_emotion import files

    monkeypatch.setattr(files, "os", _OsProxy(write=write))
    with pytest.raises(CorrectionsError, match="no space left on the device"):
        export(store, "csv", out)
    assert out.read_bytes() == first
    assert [p.name for p in out.parent.iterdir()] == ["corrections.csv"]


# == 4. security =======================================================================================
@pytest.fixture(scope="module")
def attacks(outside, demo_app) -> list[str]:
    """Path-like values: a traversal, an absolute path outside, traversal to a canary, symlinks inside."""
    runs = demo_app["runs"]
    return [
        "../../etc/passwd",
        str(outside["secret"]),
        os.path.relpath(outside["secret"], REPO),  # relative to the app's working directory
        str(runs / "link.csv"),
        str(runs / "link-report"),
    ]


def assert_no_leak(text: str) -> None:
    assert PASSWD not in text and CANARY not in text


def canary_state(root: Path) -> dict[str, tuple[float, int]]:
    return {str(p): (p.stat().st_mtime, p.stat().st_size) for p in sorted(root.rglob("*"))}


def assert_fuzz_survived(calls: int, record_property, demo_app, demo_client, root: Path, before: dict):
    """After a fuzzing loop: enough calls made, the app alive and serving, nothing outside touched."""
    record_property("calls", calls)
    assert calls > 50
    assert demo_app["proc"].poll() is None
    assert canary_state(root) == before
    assert demo_client.predict(SERVING_TEXT, api_name="/classify")["label"] in LABELS


@pytest.mark.timeout(180)
def test_demo_refuses_every_path_outside_its_data_folder(demo_client, demo_app, outside):
    runs = demo_app["runs"]
    before = canary_state(outside["root"])
    refused = [
        ("/load_model", ("../../etc/passwd", "none"), "in this demo"),
        ("/load_model", (str(outside["model"]), "none"), "in this demo"),
        ("/load_model", (str(runs / "link-model"), "none"), "in this demo"),
        ("/load_model", ("embedded", str(outside["root"])), "in this demo"),
        ("/load_model", ("embedded", str(runs / "link-report")), "in this demo"),
        ("/evaluate", ("../../etc/passwd",), "in this demo"),
        ("/evaluate", ("/etc/passwd",), "in this demo"),
        ("/evaluate", (str(outside["secret"]),), "in this demo"),
        ("/evaluate", (str(runs / "link.csv"),), "in this demo"),
        ("/label_queue", (str(outside["report"]),), "not a stored report"),
        ("/label_queue", (str(runs / "link-report"),), "not a stored report"),
        ("/label_queue", ("../../etc",), "not a stored report"),
        ("/train_status", ("../../etc",), "is not allowed"),
        ("/train_status", ("/etc/passwd",), "is not allowed"),
        ("/compare_run", ("../..",), "is not allowed"),
        ("/compare_run", (str(outside["report"]),), "is not allowed"),
        ("/train_start", ({"data": str(outside["secret"]), "name": "x"},), "switched off"),
        ("/corrections_export", ("../../etc/passwd",), "not in the list of choices"),
    ]
    for api, args, expected in refused:
        text = answer(demo_client, *args, api_name=api)
        assert text.startswith("error: ") and expected in text, (api, args, text)
        assert_no_leak(text)
    status = demo_client.predict(api_name="/status")
    assert status["state"] == "ready" and status["requested_model"] != str(outside["model"])
    assert canary_state(outside["root"]) == before
    assert demo_client.predict(SERVING_TEXT, api_name="/classify")["label"] in LABELS


def _call_value(ptype: str, value: str):
    if "list[str]" in ptype:
        return [value]
    if "dict" in ptype:
        return {"model": value, "data": value, "adapter": value}
    return value


def _filler(name: str, ptype: str):
    if ptype == "bool":
        return False
    if ptype == "int":
        return 5
    if ptype == "float":
        return 1.0
    return {"label": "joy", "text": "i am fine"}.get(name, _call_value(ptype, "i am fine"))


@pytest.mark.timeout(300)
def test_demo_every_endpoint_with_a_path_in_every_text_parameter(
    demo_client, demo_app, attacks, outside, leaks, record_property
):
    """Each named endpoint, each of its text parameters set to each path-like value (the others filled in):
    an answer or a clear error, never the contents of a file outside, and the app stays up."""
    before = canary_state(outside["root"])
    endpoints = demo_client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    calls = 0
    for api, info in endpoints.items():
        params = info["parameters"]
        for target in params:
            ptype = target["python_type"]["type"]
            if not any(t in ptype for t in ("str", "dict", "Literal")):
                continue
            for value in attacks:
                kwargs = {}
                for p in params:
                    if p is target:
                        kwargs[p["parameter_name"]] = _call_value(ptype, value)
                    elif not p["parameter_has_default"]:
                        kwargs[p["parameter_name"]] = _filler(p["parameter_name"], p["python_type"]["type"])
                text = answer(demo_client, api_name=api, **kwargs)
                assert_no_leak(text)
                leaks["answers"].append(text)
                calls += 1
    assert_fuzz_survived(calls, record_property, demo_app, demo_client, outside["root"], before)


@pytest.mark.timeout(120)
def test_file_inputs_only_take_files_the_visitor_uploaded(demo_app, demo_client, outside, record_property):
    """The page's file inputs (private events) sent a server path by hand: refused by gradio."""
    cfg = httpx.get(demo_app["url"] + "config", timeout=30).json()
    components = {c["id"]: c for c in cfg["components"]}
    events = [
        (i, dep)
        for i, dep in enumerate(cfg["dependencies"])
        if any(components[c]["type"] == "file" for c in dep["inputs"])
    ]
    assert len(events) >= 2  # the Classify and Compare file uploads at least
    paths = ["/etc/passwd", str(outside["secret"]), str(demo_app["runs"] / "link.csv"), str(REPO / "app.py")]
    for fn_index, dep in events:
        for path in paths:
            file = {"path": path, "orig_name": "texts.csv", "meta": {"_type": "gradio.FileData"}}
            data = [
                file if components[c]["type"] == "file" else components[c].get("props", {}).get("value")
                for c in dep["inputs"]
            ]
            trigger = dep["targets"][0][0] if dep["targets"] else None
            msg = queue_call(demo_app["url"], fn_index, data, trigger)
            assert msg["success"] is False, (dep.get("api_name"), path, msg)
            assert "not uploaded by a user" in json.dumps(msg)
            assert_no_leak(json.dumps(msg))
    record_property("calls", len(events) * len(paths))
    assert demo_client.predict(SERVING_TEXT, api_name="/classify")["label"] in LABELS


@pytest.mark.timeout(300)
def test_demo_every_page_event_with_a_path_in_every_text_input(
    demo_app, demo_client, attacks, outside, leaks, record_property
):
    """The page's own events (private: what a browser sends), each textbox and dropdown set to a path in
    turn: a dropdown refuses what it does not list, a textbox value is used as text or refused."""
    before = canary_state(outside["root"])
    cfg = httpx.get(demo_app["url"] + "config", timeout=30).json()
    components = {c["id"]: c for c in cfg["components"]}
    calls = 0
    for fn_index, dep in enumerate(cfg["dependencies"]):
        if dep.get("api_visibility") != "private" or not dep["inputs"]:
            continue
        kinds = [components[c]["type"] for c in dep["inputs"]]
        defaults = [None if k == "file" else components[c].get("props", {}).get("value") for c, k in
                    zip(dep["inputs"], kinds)]  # fmt: skip
        trigger = dep["targets"][0][0] if dep["targets"] else None
        for i, kind in enumerate(kinds):
            if kind not in ("textbox", "dropdown"):
                continue
            multi = components[dep["inputs"][i]].get("props", {}).get("multiselect")
            for value in attacks[:2]:
                data = list(defaults)
                data[i] = [value] if multi else value
                text = json.dumps(queue_call(demo_app["url"], fn_index, data, trigger))
                assert_no_leak(text)
                leaks["answers"].append(text)
                calls += 1
    assert_fuzz_survived(calls, record_property, demo_app, demo_client, outside["root"], before)


@pytest.mark.parametrize("name", ["../../etc", "..", "/etc/passwd", "a/../../b", "x\x00y"])
def test_run_names_never_leave_the_runs_folder(client, direct, name):
    for api, args in (("/train_status", (name, 0)), ("/compare_run", (name,))):
        text = answer(client, *args, api_name=api)
        assert text.startswith("error: ") and "is not allowed" in text
        assert_no_leak(text)
    assert_serving(client, direct)


def test_markup_in_a_text_comes_back_as_data(client, direct):
    res = client.predict(MARKUP, "score", False, False, api_name="/classify")
    assert res["text"] == MARKUP and res["raw"] in LABELS
    batch = client.predict([MARKUP, f"<script>alert(1)</script> {SERVING_TEXT}"], api_name="/classify_batch")
    assert [r["text"] for r in batch] == [MARKUP, f"<script>alert(1)</script> {SERVING_TEXT}"]
    assert_same_prediction(res, direct.classify(MARKUP, "score", adapter=False))


@pytest.mark.timeout(60)
def test_markup_in_a_model_name_is_escaped_in_the_status_line(client, app, direct):
    from gemma_emotion.ui.layout import status_markdown

    client.predict(MARKUP, "none", api_name="/load_model")
    status = wait_ready(client)
    assert status["state"] == "error" and MARKUP in status["error"]
    line = status_markdown(status)
    assert "<img" not in line and "&lt;img src=x onerror=alert(1)&gt;" in line
    # An adapter that fails is named in the line: the model itself was not at fault.
    line = status_markdown({**status, "requested_model": "embedded", "requested_adapter": "/srv/x/not-one"})
    assert line.startswith("❌ Could not load **embedded** with adapter `x/not-one`: ")
    assert_serving(client, direct)


def test_messages_shown_as_toasts_are_escaped(monkeypatch):
    """gr.Warning renders HTML: a message quoting a file name or a dataset row must arrive as text."""
    from gemma_emotion.ui import common
    from gemma_emotion.ui.state import UserError

    shown = []
    monkeypatch.setattr(common.gr, "Warning", shown.append)
    page = common.warn(UserError(f"rows.csv, line 2: unknown label '{MARKUP}'"))
    assert shown == ["rows.csv, line 2: unknown label &#x27;&lt;img src=x onerror=alert(1)&gt;&#x27;"]
    assert MARKUP in page  # the page's message field is a Textbox: plain text, shown as is


DANGEROUS = [
    '=HYPERLINK("http://x.test","click")',
    "+1+1 i feel odd",
    "-2+3 so sad",
    "@SUM(A1) angry",
    "- i feel a little sad about it",
    "'tis the season to be jolly",
]


def _cells(path: str | Path, column: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row[column] for row in csv.DictReader(fh)]


@pytest.mark.timeout(120)
def test_csv_exports_are_safe_from_formula_injection(client, tmp_path):
    from gemma_emotion.ui.common import csv_text

    data = tmp_path / "dangerous.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": i % 6}) + "\n" for i, t in enumerate(DANGEROUS)))
    res = client.predict(str(data), "test", 0, "score", "base", 0, api_name="/evaluate")
    predictions = Path(res["report_dir"]) / "base" / "predictions.csv"
    assert _cells(predictions, "text") == ["'" + t for t in DANGEROUS]  # disarmed (and quoted) on disk

    for text in DANGEROUS:
        client.predict(text=text, label="joy", source="=cmd|' /C calc'!A0", api_name="/label_submit")
    exported = client.predict("csv", api_name="/corrections_export")
    texts = [t for t in _cells(exported, "text") if t[1:] in DANGEROUS]
    assert sorted(texts) == sorted("'" + t for t in DANGEROUS)
    assert all(s.startswith("'=") for s in _cells(exported, "source") if "calc" in s)

    # The Classify and Compare tabs' downloads.
    table = csv_text([{"text": t, "label": "joy"} for t in DANGEROUS], ["text", "label"])
    assert [row["text"] for row in csv.DictReader(io.StringIO(table))] == ["'" + t for t in DANGEROUS]

    # The Evaluate tab's mistakes table, from the stored report: the texts as they are, no CSV quote.
    from gemma_emotion.evaluate import load_report
    from gemma_emotion.ui.evaluate import mistakes

    shown = set(mistakes({"predictions": load_report(predictions.parent).predictions})["text"])
    wrong = {p["text"] for p in load_report(predictions.parent).predictions if p["predicted"] != p["gold"]}
    assert shown == wrong and shown <= set(DANGEROUS) and shown, shown


def test_trust_remote_code_is_never_switched_on():
    sources = [REPO / "app.py", *sorted((REPO / "gemma_emotion").rglob("*.py"))]
    for path in sources:
        text = path.read_text(encoding="utf-8").replace(" ", "")
        assert "trust_remote_code=True" not in text and '"trust_remote_code":True' not in text, path
    models = (REPO / "gemma_emotion" / "models.py").read_text().replace(" ", "")
    assert '{"trust_remote_code":False}' in models


def remote_code_checkpoint(folder: Path, config: dict) -> Path:
    """A checkpoint whose config points at code of its own; running that code would leave a marker file."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "REMOTE-CODE-RAN"
    code = f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import PretrainedConfig\n"
    code += "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n"
    for name in ("configuration_evil.py", "modeling_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(code)
    auto_map = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilConfig",
        "AutoTokenizer": ["tokenization_evil.EvilConfig", None],
    }
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": auto_map}))
    return marker


def test_a_checkpoint_that_needs_its_own_code_fails_cleanly(tmp_path, tiny_gemma3):
    from gemma_emotion.models import ModelLoadError, load_model

    evil = tmp_path / "evil"
    marker = remote_code_checkpoint(evil, {"model_type": "evil", "architectures": ["EvilModel"]})
    with pytest.raises(ModelLoadError, match=r"never runs such code \(trust_remote_code stays off\)"):
        load_model(str(evil))
    assert not marker.exists()

    # A supported model type with an auto_map is loaded by transformers' own classes, its code ignored.
    sneaky = tmp_path / "sneaky"
    shutil.copytree(tiny_gemma3, sneaky)
    config = json.loads((sneaky / "config.json").read_text())
    marker = remote_code_checkpoint(sneaky, config)
    assert load_model(str(sneaky)).family == config["model_type"]
    assert not marker.exists()


@pytest.mark.timeout(60)
def test_the_app_refuses_a_checkpoint_that_needs_its_own_code(client, app, direct, tmp_path):
    evil = tmp_path / "evil"
    marker = remote_code_checkpoint(evil, {"model_type": "evil", "architectures": ["EvilModel"]})
    client.predict(str(evil), "none", api_name="/load_model")
    status = wait_ready(client)
    assert status["state"] == "error" and "trust_remote_code stays off" in status["error"]
    assert status["model"] == app["model"] and not marker.exists()
    assert_serving(client, direct)


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_markup_in_a_table_row_is_shown_as_text_in_the_page(app, tmp_path, browser):
    """A real Chromium: rows that are HTML/script land in the Classify file table as text, and a message
    quoting one shows as text in the toast (a toast renders HTML: unescaped, an <img> appeared there)."""
    from playwright.sync_api import expect

    rows = [MARKUP.replace("alert(1)", "window.__xss=1"), "<script>window.__xss=2</script>i am sad",
            "<b>bold</b> and **stars** i am happy"]  # fmt: skip
    upload = tmp_path / "markup.csv"
    with open(upload, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["text"], *[[r] for r in rows]])
    bad = tmp_path / "bad-label.csv"
    bad.write_text(f'text,label\ni am fine,"{rows[0]}"\n', encoding="utf-8")

    def classify_file(page, path: Path) -> None:
        page.goto(app["url"])
        page.locator("#classify-button").wait_for(timeout=60_000)  # the app has rendered
        # The page load's own events done (the status line is filled, whatever it says: an earlier test
        # here asked for a model that does not exist): a click before may be lost.
        expect(page.locator("#model-status")).to_contain_text(re.compile("✅|❌"), timeout=120_000)
        button = page.get_by_role("button", name="Classify file")

        def open_accordion() -> None:
            # A click that lands while the page is still settling can be lost under load, and a second click
            # on an accordion that did open closes it again: click only while the button is hidden.
            for _ in range(3):
                if button.is_visible():
                    return
                page.get_by_text("Classify a file of texts").click()
                with contextlib.suppress(Exception):  # long enough that a slow open is not clicked shut
                    button.wait_for(state="visible", timeout=30_000)
            button.wait_for(state="visible", timeout=10_000)

        open_accordion()
        page.locator("input[type=file]").first.set_input_files(str(path))
        page.get_by_text(path.name).wait_for(timeout=90_000)  # uploaded (30 s was short under a busy core)
        open_accordion()
        button.click(timeout=60_000)

    page = browser.new_page()
    classify_file(page, upload)
    page.get_by_text(rows[0], exact=True).wait_for(timeout=60_000)
    assert all(page.get_by_text(row, exact=True).count() >= 1 for row in rows)  # literal text in cells
    assert page.locator("img[src=x]").count() == 0 and page.locator("table b").count() == 0
    assert page.evaluate("window.__xss") is None

    classify_file(page, bad)
    toast = page.locator("[data-testid=toast-body]").first
    toast.wait_for(timeout=60_000)
    assert f"unknown label '{rows[0]}'" in toast.inner_text()
    assert toast.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None


# == the token, last: everything the module's apps printed, wrote and answered ===========================
@pytest.mark.timeout(120)
def test_hf_token_never_appears_in_logs_files_or_answers(
    app, client, demo_app, demo_client, leaks, record_property
):
    answers = list(leaks["answers"])
    for c in (client, demo_client):
        for api in ("/status", "/adapters", "/reports", "/corrections_list"):
            answers.append(answer(c, api_name=api))
        answers.append(answer(c, "", 0, api_name="/train_status"))
        answers.append(answer(c, "csv", api_name="/corrections_export"))
        answers.append(answer(c, "someone/missing-dataset", "test", 5, api_name="/evaluate"))
        answers.append(answer(c, "someone/gated-model", "none", api_name="/load_model"))
    wait_ready(client)
    answers.append(answer(client, "", 0, api_name="/train_status"))
    answers.append(json.dumps(wait_ready(client)))
    for url in (app["url"], demo_app["url"]):
        answers.append(httpx.get(url, timeout=30).text)
        answers.append(httpx.get(url + "config", timeout=30).text)
    for text in answers:
        assert TOKEN not in text
    record_property("answers", len(answers))

    assert len(leaks["logs"]) >= 2 and len(leaks["dirs"]) >= 2
    checked = 0
    for file in [*leaks["logs"], *(f for d in leaks["dirs"] for f in Path(d).rglob("*") if f.is_file())]:
        if file.exists():
            assert TOKEN.encode() not in file.read_bytes(), file
            checked += 1
    record_property("files", checked)
    assert checked > 10
    # Training processes' own output (process.log) is among them when the training tests ran before.
    record_property("training_logs", sum(1 for d in leaks["dirs"] for _ in Path(d).glob("*/process.log")))
