"""A user's own labelled file, as a user brings it: uploaded to Evaluate and Train through gradio_client
against a launched app, given to the `train` command, and in a real Chromium's Evaluate tab.

The file is the common shape: a CSV with columns `sentence` and `emotion`, label names in capitals, with a
duplicate row and an empty text that the preview reports as dropped. Bad uploads (no label column, an
unknown label, a binary file, a server path posing as an upload) get one clear message and the app stays
up.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_app_api import app_error, start_app, wait_for, wait_ready

from gemma_emotion.data import file_fingerprint, load_split
from gemma_emotion.labels import LABELS

REPO = Path(__file__).resolve().parents[1]


def write_user_csv(path: Path, shared_data: Path, n: int, *, seed: int = 5) -> list[tuple[str, str]]:
    """n rows of the validation split as `id,sentence,emotion` with capital label names, plus a duplicate
    of the first row and an empty text; returns the n (text, LABEL) rows."""
    ds = load_split(shared_data, "validation", limit=n, stratify=True, seed=seed)
    rows = [(t, LABELS[y].upper()) for t, y in zip(ds["text"], ds["label"])]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "sentence", "emotion"])
        writer.writerows([i, t, y] for i, (t, y) in enumerate(rows))
        writer.writerow([n, rows[0][0], rows[0][1]])  # a duplicate
        writer.writerow([n + 1, "   ", "JOY"])  # an empty text
    return rows


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("upload-runs")
    log = tmp_path_factory.mktemp("upload-log") / "app.log"
    with start_app(tiny_gemma3, runs, shared_data, log) as (url, proc):
        yield {"url": url, "runs": runs, "proc": proc, "model": str(tiny_gemma3)}


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    c = Client(app["url"], verbose=False)
    assert wait_ready(c)["state"] == "ready"
    return c


def upload(path: Path):
    from gradio_client import handle_file

    return handle_file(str(path))


# -- Evaluate -------------------------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_evaluate_an_uploaded_csv_of_sentences_and_capital_emotions(client, app, shared_data, tmp_path):
    from gemma_emotion.evaluate import load_report

    rows = write_user_csv(tmp_path / "my-emotions.csv", shared_data, 30)
    seen = client.predict(upload(tmp_path / "my-emotions.csv"), api_name="/data_preview")
    assert (seen["text_column"], seen["label_column"]) == ("sentence", "emotion")
    assert seen["columns"] == ["id", "sentence", "emotion"]
    assert seen["labels"] == list(LABELS)
    assert (seen["rows_read"], seen["rows"]) == (32, 30)
    assert seen["dropped"] == {"duplicate text": 1, "empty text": 1}
    assert seen["first"][0] == {"text": rows[0][0], "label": rows[0][1].lower()}
    counts = {name: sum(1 for _, y in rows if y == name.upper()) for name in LABELS}
    assert seen["label_counts"] == counts
    assert seen["warning"] is None

    res = client.predict(
        "", "test", 0, "score", "base", 0, upload(tmp_path / "my-emotions.csv"), api_name="/evaluate"
    )
    assert res["reports"]["base"]["n"] == 30
    assert res["dropped"] == "2 of 32 rows dropped: 1 duplicate text, 1 empty text"
    report = load_report(Path(res["report_dir"]) / "base")
    assert [p["text"] for p in report.predictions] == [t for t, _ in rows]  # all rows, file order
    assert [p["gold"] for p in report.predictions] == [y.lower() for _, y in rows]
    assert report.metrics["data"] == "upload: my-emotions.csv"
    assert report.metrics["label_column"] == "emotion"
    assert report.metrics["data_sha256"] == file_fingerprint(tmp_path / "my-emotions.csv")


@pytest.mark.timeout(300)
def test_columns_the_guess_misses_are_named_by_the_caller(client, tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("words,mood,text\ni am so happy today,JOY,x\nwhy does this always happen to me,ANGER,y\n")
    guessed = client.predict(upload(path), api_name="/data_preview")
    assert guessed["text_column"] == "text" and guessed["label_column"] is None
    picked = client.predict(upload(path), "words", "mood", api_name="/data_preview")
    assert picked["label_counts"]["joy"] == 1 and picked["label_counts"]["anger"] == 1
    res = client.predict(
        "", "test", 0, "score", "base", 0, upload(path), "words", "mood", api_name="/evaluate"
    )
    assert res["reports"]["base"]["n"] == 2


# (file name, content, the message of /evaluate, the message of /train_start)
BAD_UPLOADS = [
    ("no-labels.csv", "sentence,id\ni am fine,1\n", "no-labels.csv: no label column",
     "no-labels.csv: no label column"),
    ("neutral.csv", "sentence,emotion\ni am fine,NEUTRAL\ni am glad,JOY\nmeh,DISGUST\n",
     "neutral.csv, line 2: unknown label 'NEUTRAL'",
     "neutral.csv: 3 usable rows; training needs at least 10"),
    ("blob.csv", bytes(range(256)) * 40, "blob.csv: this is a binary file, not CSV",
     "blob.csv: this is a binary file, not CSV"),
    ("latin.csv", "sentence,emotion\ncaf\xe9 au lait makes me happy,JOY\n".encode("latin-1"),
     "latin.csv, line 2: bytes that are not UTF-8", "latin.csv, line 2: bytes that are not UTF-8"),
    ("notes.txt", "sentence,emotion\nhi,JOY\n", "notes.txt: use a .csv", "notes.txt: use a .csv"),
]  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("name", "content", "evaluated", "trained"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS]
)
def test_bad_uploads_get_a_clear_message_and_the_app_stays_up(
    client, app, tmp_path, name, content, evaluated, trained
):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    error = app_error(client, "", "test", 0, "score", "base", 0, upload(path), api_name="/evaluate")
    assert error.startswith(evaluated), error
    error = app_error(client, {"model": app["model"], "train_size": 8}, upload(path), api_name="/train_start")
    assert trained in error, error
    if name == "neutral.csv":
        evaluated = app_error(client, "", "test", 0, "score", "base", 0, upload(path), api_name="/evaluate")
        assert "(labels not in the set: NEUTRAL, DISGUST)" in evaluated
        seen = client.predict(upload(path), api_name="/data_preview")
        assert seen["unknown_labels"] == {"NEUTRAL": 1, "DISGUST": 1}
        assert "labels the model does not know: NEUTRAL, DISGUST" in seen["warning"]
    assert app["proc"].poll() is None
    assert client.predict("still serving", api_name="/classify")["label"] in LABELS
    assert client.predict("", 0, api_name="/train_status")["active"] is None  # no run was started


def test_a_server_path_is_not_an_upload(client, app):
    for api, args in (("/evaluate", ("", "test", 0, "score", "base", 0, {"path": "/etc/passwd"})),
                      ("/data_preview", ({"path": str(REPO / "README.md")},)),
                      ("/train_start", ({"model": app["model"]}, {"path": "/etc/hostname"}))):  # fmt: skip
        assert "a path on the server is not accepted" in app_error(client, *args, api_name=api)


# -- Train ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_train_on_an_uploaded_csv_makes_a_run_that_keeps_the_file(client, app, shared_data, tmp_path):
    path = tmp_path / "my-training.csv"
    write_user_csv(path, shared_data, 60, seed=7)
    config = {"model": app["model"], "train_size": 24, "epochs": 1, "name": "upload-run"}
    started = client.predict(config, upload(path), api_name="/train_start")
    assert started["status"] == "running"
    status = wait_for(client, lambda s: s["run"]["status"] != "running", timeout=540, every=2)
    assert status["run"]["status"] == "completed", status["run"]["error"]
    run_dir = Path(status["run"]["run_dir"])
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["data"].endswith("my-training.csv")
    (kept,) = record["data_files"]
    assert kept["name"] == "my-training.csv" and kept["role"] == "train"
    assert (kept["rows_read"], kept["rows"]) == (62, 60)
    assert (kept["text_column"], kept["label_column"]) == ("sentence", "emotion")
    assert kept["sha256"] == file_fingerprint(path) == file_fingerprint(run_dir / kept["copy"])
    notes = " | ".join(record["notes"])
    assert "my-training.csv: 2 of 62 rows dropped: 1 duplicate text, 1 empty text" in notes
    assert "my-training.csv is one file: 6 rows held out for validation and test" in notes
    assert record["n_train"] == 24
    assert record["metrics"]["n_test"] == 6  # the held-out slice, scored before and after
    assert (run_dir / "reports" / "finetuned" / "metrics.json").is_file()


@pytest.mark.timeout(300)
def test_train_refuses_an_upload_too_small_to_hold_out_rows_before_starting(client, app, tmp_path):
    few = tmp_path / "few.csv"
    few.write_text("text,label\nhello there,joy\nso sad,sadness\n")
    assert "few.csv: 2 usable rows; training needs at least 10" in app_error(
        client, {"model": app["model"]}, upload(few), api_name="/train_start"
    )
    assert client.predict("", 0, api_name="/train_status")["active"] is None


# -- the CLI --------------------------------------------------------------------------------------------
@pytest.mark.timeout(900)
def test_cli_trains_on_a_csv_with_named_columns(tiny_gemma3, shared_data, tmp_path):
    path = tmp_path / "FILE.csv"
    write_user_csv(path, shared_data, 120, seed=3)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "gemma_emotion", "train", "--data", str(path), "--text-column", "sentence",
           "--label-column", "emotion", "--train-size", "48", "--model", str(tiny_gemma3),
           "--runs-dir", str(runs)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"run \S+: completed", proc.stdout)
    assert "note: FILE.csv is one file: 12 rows held out for validation and test" in proc.stdout
    assert "note: FILE.csv: 2 of 122 rows dropped" in proc.stdout
    (run_dir,) = [p for p in runs.iterdir() if (p / "run.json").is_file()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["n_train"] == 48 and record["config"]["text_column"] == "sentence"
    assert record["data_files"][0]["sha256"] == file_fingerprint(path)
    assert (run_dir / "data" / "train.csv").read_bytes() == path.read_bytes()


# -- the browser ----------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.timeout(600)
def test_browser_uploads_a_file_in_evaluate_and_sees_the_preview_and_the_report(
    browser, app, shared_data, tmp_path
):
    from playwright.sync_api import expect

    path = tmp_path / "browser-emotions.csv"
    write_user_csv(path, shared_data, 20, seed=11)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(app["url"])
    expect(page.locator("#model-status")).to_contain_text("✅", timeout=120_000)
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#evaluate-upload input[type=file]").set_input_files(str(path))
    summary = page.locator("#evaluate-preview-summary")
    expect(summary).to_contain_text("20 rows usable of 22", timeout=60_000)
    expect(summary).to_contain_text("text column 'sentence'")
    expect(summary).to_contain_text("1 duplicate text")
    expect(page.locator("#evaluate-preview")).to_contain_text(
        path.read_text().splitlines()[1].split(",")[1][:30]
    )
    page.locator("#evaluate-which").get_by_label("base", exact=True).check()
    page.locator("#evaluate-button").click()
    message = page.locator("#evaluate-message textarea")
    expect(message).to_have_value(re.compile(r"base: accuracy [\d.]+ %.* 20 texts"), timeout=240_000)
    expect(message).to_have_value(re.compile("2 of 22 rows dropped"))
    expect(page.locator(".js-plotly-plot .heatmaplayer")).to_have_count(1)
    page.close()
