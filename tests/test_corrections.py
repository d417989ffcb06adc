"""Tests of the corrections store, review queue, exports, Hub push and CLI handlers."""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hubfake import FakeHub

from gemma_emotion import corrections as corr
from gemma_emotion.cli.corrections import register as register_cli
from gemma_emotion.corrections import (
    CorrectionsError,
    CorrectionStore,
    ReviewItem,
    export,
    filter_queue,
    mark_corrected,
    oversample,
    queue_from_predictions,
    queue_from_unlabeled,
    render,
    training_examples,
)
from gemma_emotion.hub import HubError, push_corrections
from gemma_emotion.labels import LABELS, SYSTEM_PROMPT

REPO_ROOT = Path(__file__).resolve().parent.parent


class StepClock:
    """A clock that advances one second per reading, so timestamps in the expected output are known."""

    def __init__(self, start: datetime = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC), step: float = 1.0):
        self.now = start
        self.step = timedelta(seconds=step)

    def __call__(self) -> datetime:
        value = self.now
        self.now += self.step
        return value


@pytest.fixture
def store(tmp_path: Path) -> CorrectionStore:
    return CorrectionStore(tmp_path / "runs", clock=StepClock())


def _fill(store: CorrectionStore) -> None:
    """The corrections every export test expects, in this order (clock: 12:00:00, :01, ...)."""
    store.add(
        "=SUM(A1:A2) feels great", "joy", predicted="sadness", gold="sadness", source="evaluation",
        source_ref="report-1#4", model="embedded", adapter="runs/r1/adapter", annotator="ana",
    )  # fmt: skip
    store.add('she said "wow", then left', "surprise")
    store.add("=SUM(A1:A2) feels great", "love", annotator="ana")  # an edit: latest label wins
    store.add("-5 degrees and i am fine", "fear")
    store.add("שלום 你好 😀", "sadness", predicted="invalid")


# -- store --------------------------------------------------------------------------------------------


def test_store_file_is_wal_in_the_given_folder(tmp_path: Path) -> None:
    s = CorrectionStore(tmp_path / "runs")
    assert s.path == tmp_path / "runs" / "corrections.db"
    with sqlite3.connect(s.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_add_edit_latest_wins_and_history(store: CorrectionStore) -> None:
    first = store.add(
        "i feel awful",
        "sadness",
        predicted="joy",
        gold="joy",
        source="evaluation",
        source_ref="r#1",
        model="embedded",
        probabilities={"joy": 0.7, "sadness": 0.3},
    )
    assert (first.label, first.n_edits, first.created_at) == ("sadness", 0, "2024-05-01T12:00:00.000000Z")
    assert first.probabilities == {"joy": 0.7, "sadness": 0.3}

    edited = store.add("  i feel awful\n", "fear", annotator="bo")  # same text once stripped
    assert edited.label == "fear"
    assert edited.n_edits == 1
    assert edited.created_at == "2024-05-01T12:00:00.000000Z"
    assert edited.updated_at == "2024-05-01T12:00:01.000000Z"
    # The edit gave no prediction/source metadata: the earlier values are kept.
    assert (edited.predicted, edited.gold, edited.model, edited.source_ref) == (
        "joy",
        "joy",
        "embedded",
        "r#1",
    )
    assert edited.annotator == "bo"

    store.add("what a day", 1)  # a label id is accepted too
    assert store.count() == 2
    assert [c.text for c in store.current()] == ["i feel awful", "what a day"]
    assert store.counts_by_label() == {
        "sadness": 0,
        "joy": 1,
        "love": 0,
        "anger": 0,
        "fear": 1,
        "surprise": 0,
    }
    assert store.get("i feel awful") == edited
    assert store.get("never corrected") is None

    hist = store.history("i feel awful")
    assert [(h.action, h.label, h.undone) for h in hist] == [
        ("set", "sadness", False),
        ("set", "fear", False),
    ]
    assert hist[1].annotator == "bo"


@pytest.mark.parametrize("label", ["happy", "", 6, -1, None, True])
def test_add_rejects_unknown_labels(store: CorrectionStore, label: object) -> None:
    with pytest.raises(ValueError, match="sadness, joy, love, anger, fear, surprise"):
        store.add("some text", label)  # type: ignore[arg-type]
    assert store.count() == 0


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_add_rejects_empty_text(store: CorrectionStore, text: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        store.add(text, "joy")
    assert store.history("x") == []


def test_undo_restores_previous_label_then_removes(store: CorrectionStore) -> None:
    store.add("t", "joy")
    store.add("t", "anger")
    store.add("other", "love")

    undone = store.undo_last()
    assert undone is not None and undone.event.text == "other" and undone.current is None
    assert store.get("other") is None

    undone = store.undo_last()
    assert undone is not None and undone.event.label == "anger"
    assert undone.current is not None and undone.current.label == "joy" and undone.current.n_edits == 0
    assert store.get("t").label == "joy"

    undone = store.undo_last()
    assert undone is not None and undone.current is None
    assert store.count() == 0
    assert store.undo_last() is None

    hist = store.history("t")
    assert [(h.action, h.undone) for h in hist] == [
        ("set", True),
        ("set", True),
        ("undo", False),
        ("undo", False),
    ]
    assert {h.reverts for h in hist if h.action == "undo"} == {hist[0].id, hist[1].id}


def test_undo_by_annotator_only_touches_their_last_action(store: CorrectionStore) -> None:
    store.add("shared", "joy", annotator="ana")
    store.add("shared", "fear", annotator="bo")
    store.add("ana's own", "love", annotator="ana")

    undone = store.undo_last(annotator="bo")
    assert undone is not None and undone.event.label == "fear"
    assert store.get("shared").label == "joy"
    assert store.get("ana's own").label == "love"
    assert store.undo_last(annotator="bo") is None
    assert store.undo_last(annotator="nobody") is None


def test_remove_and_undo_of_remove(store: CorrectionStore) -> None:
    store.add("t", "joy")
    assert store.remove("t") is True
    assert store.remove("t") is False
    assert store.get("t") is None
    undone = store.undo_last()
    assert undone is not None and undone.event.action == "remove"
    assert store.get("t").label == "joy"


def test_export_order_ties_broken_by_text(tmp_path: Path) -> None:
    frozen = datetime(2024, 1, 1, tzinfo=UTC)
    s = CorrectionStore(tmp_path, clock=lambda: frozen)
    for text in ["b", "c", "a"]:
        s.add(text, "joy")
    assert [c.text for c in s.current()] == ["a", "b", "c"]


def test_threads_share_one_store(store: CorrectionStore) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                store.add(f"w{worker} text {i}", LABELS[i % len(LABELS)], annotator=f"w{worker}")
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 80
    assert store.integrity_check() == "ok"


def test_opening_a_missing_store_without_create_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        CorrectionStore(tmp_path / "nowhere", create=False)
    assert not (tmp_path / "nowhere").exists()


# -- exports --------------------------------------------------------------------------------------------


def test_export_emotion_jsonl_bytes(store: CorrectionStore, tmp_path: Path) -> None:
    _fill(store)
    out = export(store, "emotion-jsonl", tmp_path / "out" / "train.jsonl")
    expected = (
        '{"text": "=SUM(A1:A2) feels great", "label": 2}\n'
        '{"text": "she said \\"wow\\", then left", "label": 5}\n'
        '{"text": "-5 degrees and i am fine", "label": 4}\n'
        '{"text": "שלום 你好 😀", "label": 0}\n'
    )
    assert out.read_bytes() == expected.encode("utf-8")


def test_export_chat_jsonl_bytes(store: CorrectionStore, tmp_path: Path) -> None:
    _fill(store)
    out = export(store, "chat-jsonl", tmp_path / "chat.jsonl")
    system = json.dumps(SYSTEM_PROMPT, ensure_ascii=False)  # the prompt text is owned by labels.py

    def line(text_json: str, label: str) -> str:
        return (
            f'{{"prompt": [{{"role": "system", "content": {system}}}, '
            f'{{"role": "user", "content": {text_json}}}], '
            f'"completion": [{{"role": "assistant", "content": "{label}"}}]}}\n'
        )

    expected = (
        line('"=SUM(A1:A2) feels great"', "love")
        + line('"she said \\"wow\\", then left"', "surprise")
        + line('"-5 degrees and i am fine"', "fear")
        + line('"שלום 你好 😀"', "sadness")
    )
    assert out.read_bytes() == expected.encode("utf-8")


def test_export_csv_bytes_with_formula_escaping(store: CorrectionStore, tmp_path: Path) -> None:
    _fill(store)
    out = export(store, "csv", tmp_path / "corrections.csv")

    def row(*cells: str) -> str:  # every cell quoted (a ";"-splitting spreadsheet sees no bare "=")
        return ",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\n"

    expected = (
        row(*corr.CSV_COLUMNS)
        + row("'=SUM(A1:A2) feels great", "love", "2", "sadness", "sadness", "evaluation", "report-1#4",
              "embedded", "runs/r1/adapter", "ana", "2024-05-01T12:00:00.000000Z",
              "2024-05-01T12:00:02.000000Z", "1")
        + row('she said "wow", then left', "surprise", "5", "", "", "live", "", "", "", "",
              "2024-05-01T12:00:01.000000Z", "2024-05-01T12:00:01.000000Z", "0")
        + row("'-5 degrees and i am fine", "fear", "4", "", "", "live", "", "", "", "",
              "2024-05-01T12:00:03.000000Z", "2024-05-01T12:00:03.000000Z", "0")
        + row("שלום 你好 😀", "sadness", "0", "invalid", "", "live", "", "", "", "",
              "2024-05-01T12:00:04.000000Z", "2024-05-01T12:00:04.000000Z", "0")
    )  # fmt: skip
    assert out.read_bytes() == expected.encode("utf-8")


@pytest.mark.parametrize(
    "dangerous", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")']
)
def test_csv_escapes_every_formula_start_in_every_text_column(tmp_path: Path, dangerous: str) -> None:
    s = CorrectionStore(tmp_path)
    # The text is stripped on entry, so put the risky character after a safe prefix for \t / \r.
    text = dangerous if dangerous.strip() == dangerous else "ok" + dangerous
    s.add(
        text,
        "joy",
        predicted=dangerous,
        source=dangerous,
        source_ref=dangerous,
        model=dangerous,
        adapter=dangerous,
        annotator=dangerous,
    )
    rows = list(csv.DictReader(io.StringIO(render(s, "csv"), newline="")))
    assert len(rows) == 1
    for col in ("predicted", "source", "source_ref", "model", "adapter", "annotator"):
        assert rows[0][col] == "'" + dangerous
    assert rows[0]["text"] == (("'" + text) if text[0] in "=+-@\t\r" else text)
    assert rows[0]["label_id"] == "1"


def test_export_is_reproducible(store: CorrectionStore, tmp_path: Path) -> None:
    _fill(store)
    for fmt in corr.FORMATS:
        a = export(store, fmt, tmp_path / f"a.{fmt}").read_bytes()
        b = export(store, fmt, tmp_path / f"b.{fmt}").read_bytes()
        assert a == b
        assert b"\r\n" not in a


def test_unicode_and_one_megabyte_text_round_trip(store: CorrectionStore, tmp_path: Path) -> None:
    texts = {
        "emoji 😀👩‍👩‍👧‍👦🇫🇷": "joy",
        "RTL עברית ومرحبا بكم": "love",
        "CJK 我很害怕 怖い 무서워": "fear",
        "combining e\u0301 and line\u2028separator": "surprise",
        "big " + ("λ😀x" * 262_144): "anger",  # about 1.8 MB of UTF-8, 1 M code points
    }
    for text, label in texts.items():
        store.add(text, label)
    assert {c.text: c.label for c in store.current()} == texts

    lines = export(store, "emotion-jsonl", tmp_path / "u.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    back = {r["text"]: LABELS[r["label"]] for r in map(json.loads, lines[:-1])}
    assert back == texts

    chat = export(store, "chat-jsonl", tmp_path / "u.chat.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    assert {json.loads(x)["prompt"][1]["content"] for x in chat} == set(texts)

    limit = csv.field_size_limit(4 * 1024 * 1024)  # the reader's default cap is 128 KiB per field
    try:
        with open(export(store, "csv", tmp_path / "u.csv"), encoding="utf-8", newline="") as f:
            assert {r["text"]: r["label"] for r in csv.DictReader(f)} == texts
    finally:
        csv.field_size_limit(limit)


def test_unknown_format_and_folder_target_are_clear_errors(store: CorrectionStore, tmp_path: Path) -> None:
    store.add("x", "joy")
    with pytest.raises(ValueError, match="unknown export format 'xml'"):
        export(store, "xml", tmp_path / "x.xml")
    with pytest.raises(CorrectionsError, match="is a folder"):
        export(store, "csv", tmp_path)


def test_disk_full_leaves_no_file_under_the_final_name(
    store: CorrectionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(store)
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    kept = out_dir / "kept.csv"
    kept.write_bytes(b"old export\n")
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:7]))  # some bytes reach the temp file before the disk fills
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(corr.os, "write", full_disk)
    with pytest.raises(CorrectionsError, match="no space left"):
        export(store, "csv", out_dir / "new.csv")
    with pytest.raises(CorrectionsError, match="no space left"):
        export(store, "emotion-jsonl", kept)
    monkeypatch.undo()

    assert sorted(p.name for p in out_dir.iterdir()) == ["kept.csv"]  # no temp file left behind either
    assert kept.read_bytes() == b"old export\n"


# -- a killed writer ---------------------------------------------------------------------------------------

_CHILD = """
import sys
from gemma_emotion.corrections import CorrectionStore
from gemma_emotion.labels import LABELS
store = CorrectionStore(sys.argv[1])
start = int(sys.argv[2])
i = start
while True:
    store.add(f"text {i}:" + "x" * (i % 50) * 100, LABELS[i % 6], source="child", source_ref=str(i))
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_sigkilled_writer_loses_no_acknowledged_correction(tmp_path: Path) -> None:
    acked: list[int] = []
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for round_no in range(3):  # later rounds open a database whose previous writer died mid-write
        start = round_no * 1000
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path), str(start)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env,
        )  # fmt: skip
        assert child.stdout is not None
        seen = 0
        while seen < 25 + 10 * round_no:
            line = child.stdout.readline()
            assert line, child.stderr.read().decode() if child.stderr else "child died"
            seen += 1
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        # Everything the child acknowledged before dying, including what was still sitting in the pipe.
        acked += range(start, start + seen)
        acked += [int(x) for x in rest.decode().split("\n")[:-1]]

    with sqlite3.connect(tmp_path / "corrections.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    current = {c.source_ref: c for c in CorrectionStore(tmp_path).current()}
    for i in acked:
        assert str(i) in current, f"correction {i} was acknowledged but is missing"
        assert current[str(i)].label == LABELS[i % 6]
        assert current[str(i)].text.startswith(f"text {i}:")


# -- Hub push -----------------------------------------------------------------------------------------------

SECRET = "hf_SuperSecretTokenValue123"


def test_push_uploads_the_corrections_as_a_dataset_with_label_names(
    store: CorrectionStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    import datasets

    _fill(store)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with FakeHub().patched() as hub:
        url = push_corrections(store, "me/corr")
    assert url.startswith("https://huggingface.co/datasets/me/corr/commit/")  # the card's commit, the last
    assert hub.commits[-1]["files"] == ["README.md"] and len(hub.commits) == 2
    repo, kwargs = hub.repos[0]
    assert repo == "me/corr"
    assert kwargs == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert set(hub.tokens) == {SECRET}  # taken from the environment
    assert all(SECRET not in c["message"] for c in hub.commits)
    # What is on the Hub now loads with the label names, and holds the store's current corrections.
    ds = datasets.load_dataset(str(hub.write_to(tmp_path / "repo")), split="train")
    assert ds.features["label"].names == list(LABELS)
    expected = [json.loads(line) for line in render(store, "emotion-jsonl").splitlines()]
    assert [{"text": r["text"], "label": r["label"]} for r in ds] == expected
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err


def test_push_without_token_is_a_clear_error(store: CorrectionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add("x", "joy")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub().patched() as hub, pytest.raises(HubError, match="HF_TOKEN"):
        push_corrections(store, "me/corr")
    assert hub.repos == [] and hub.commits == []


def test_push_failure_never_shows_the_token(
    store: CorrectionStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add("x", "joy")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    parser = _parser()
    args = parser.parse_args(["export", "--runs-dir", str(store.path.parent), "--push-to-hub", "me/corr"])
    leaky = RuntimeError(f"401 Unauthorized for token {SECRET}")
    with FakeHub(fail=leaky).patched():
        code = args.func(args)
    out = capsys.readouterr()
    assert code == 2
    assert SECRET not in out.out + out.err
    assert out.err.count("\n") == 1 and "push to me/corr failed" in out.err and "***" in out.err
    assert "Traceback" not in out.err


def test_cli_push_reports_url_without_token(
    store: CorrectionStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add("x", "joy")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    args = _parser().parse_args(
        ["export", "--runs-dir", str(store.path.parent), "--push", "me/c", "--public"]
    )
    with FakeHub().patched() as hub:
        assert args.func(args) == 0
    assert hub.repos[0][1]["private"] is False
    out = capsys.readouterr()
    assert hub.commits[-1]["message"] == "Dataset card"
    assert "pushed 1 corrections to https://huggingface.co/datasets/me/c/commit/" in out.err
    assert SECRET not in out.out + out.err


# -- review queue -------------------------------------------------------------------------------------------


def _pred(text: str, gold: str, predicted: str, probs: dict[str, float], raw: str | None = None) -> dict:
    row = {
        "text": text,
        "gold": gold,
        "predicted": predicted,
        "raw": raw or predicted,
        "valid": predicted in LABELS,
    }
    row.update({f"prob_{name}": probs.get(name, 0.0) for name in LABELS})
    return row


PREDICTIONS = [
    _pred("right", "joy", "joy", {"joy": 0.9, "love": 0.1}),
    _pred("wrong", "joy", "love", {"joy": 0.3, "love": 0.7}),
    _pred("rambling", "fear", "invalid", {"fear": 0.5, "surprise": 0.5}, raw="I think it is scary"),
    _pred("wrong too", "anger", "sadness", {"sadness": 0.55, "anger": 0.45}),
]


def test_queue_from_predictions_keeps_mistakes_and_invalid_answers() -> None:
    items = queue_from_predictions(PREDICTIONS, source_ref="runs/r1/report")
    assert [(i.text, i.gold, i.predicted, i.valid) for i in items] == [
        ("wrong", "joy", "love", True),
        ("rambling", "fear", "invalid", False),
        ("wrong too", "anger", "sadness", True),
    ]
    assert items[0].confidence == 0.7
    assert items[0].probabilities["joy"] == 0.3
    assert items[1].raw == "I think it is scary"
    assert [i.source_ref for i in items] == ["runs/r1/report#1", "runs/r1/report#2", "runs/r1/report#3"]
    assert {i.source for i in items} == {"evaluation"}
    assert len(queue_from_predictions(PREDICTIONS, only_mistakes=False)) == 4


def test_queue_reads_rows_as_csv_gives_them() -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PREDICTIONS[0]))
    writer.writeheader()
    writer.writerows(PREDICTIONS)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows[0]["valid"] == "True"  # strings, not bools
    from_csv = queue_from_predictions(rows)
    assert from_csv == queue_from_predictions(PREDICTIONS)


def test_queue_rejects_bad_rows_with_their_index() -> None:
    with pytest.raises(ValueError, match="row 1"):
        queue_from_predictions([PREDICTIONS[0], {**PREDICTIONS[1], "gold": "happy"}])
    with pytest.raises(ValueError, match="row 0"):
        queue_from_predictions([{"gold": "joy"}])


def test_queue_from_unlabeled_least_confident_first() -> None:
    rows = [
        {"text": "sure", "prob_joy": 0.95, "prob_love": 0.05},
        {"text": "unsure", "probabilities": {"fear": 0.4, "anger": 0.35, "sadness": 0.25}},
        {"text": "no scores", "raw": "love"},
        {"text": "middling", "prob_anger": 0.6, "prob_fear": 0.4},
    ]
    items = queue_from_unlabeled(rows)
    assert [i.text for i in items] == ["no scores", "unsure", "middling", "sure"]
    assert [i.predicted for i in items] == ["love", "fear", "anger", "joy"]
    assert all(i.gold is None and i.source == "unlabeled" for i in items)


def test_filter_queue_and_mark_corrected(store: CorrectionStore) -> None:
    items = queue_from_predictions(PREDICTIONS, only_mistakes=False)
    assert [i.text for i in filter_queue(items, gold="joy")] == ["right", "wrong"]
    assert [i.text for i in filter_queue(items, predicted=["love", "invalid"])] == ["wrong", "rambling"]
    assert [i.text for i in filter_queue(items, max_confidence=0.6)] == ["rambling", "wrong too"]
    assert filter_queue(items, source="live") == []
    assert [i.text for i in filter_queue(items, gold="joy", max_confidence=0.8)] == ["wrong"]

    store.add("wrong", "love")
    marked = mark_corrected(items, store)
    assert [i.corrected for i in marked] == [None, "love", None, None]
    assert [i.text for i in filter_queue(marked, uncorrected_only=True)] == ["right", "rambling", "wrong too"]
    assert isinstance(marked[0], ReviewItem) and marked[0] is not items[0]


# -- training hook ------------------------------------------------------------------------------------------


def test_training_examples_and_oversample(store: CorrectionStore) -> None:
    _fill(store)
    rows = training_examples(store)
    assert rows == [
        {"text": "=SUM(A1:A2) feels great", "label": 2},
        {"text": 'she said "wow", then left', "label": 5},
        {"text": "-5 degrees and i am fine", "label": 4},
        {"text": "שלום 你好 😀", "label": 0},
    ]
    tripled = oversample(rows, 3)
    assert tripled == rows * 3
    tripled[0]["label"] = 0
    assert rows[0]["label"] == 2  # copies, not aliases
    assert oversample(rows, 1) == rows
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="factor"):
            oversample(rows, bad)  # type: ignore[arg-type]


# -- CLI ---------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemma-emotion")
    parser.add_argument("--runs-dir")
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_export_to_stdout_and_file(
    store: CorrectionStore, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    _fill(store)
    runs = str(store.path.parent)
    args = _parser().parse_args(["export", "--format", "emotion-jsonl", "--runs-dir", runs])
    assert args.func(args) == 0
    assert capsysbinary.readouterr().out == render(store, "emotion-jsonl").encode("utf-8")

    out = tmp_path / "c.csv"
    args = _parser().parse_args(["export", "--format", "csv", "--out", str(out), "--runs-dir", runs])
    assert args.func(args) == 0
    assert out.read_bytes() == render(store, "csv").encode("utf-8")
    assert capsysbinary.readouterr().out == b""


def test_cli_runs_dir_from_main_parser_and_environment(
    store: CorrectionStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store.add("x", "joy")
    runs = str(store.path.parent)
    args = _parser().parse_args(["--runs-dir", runs, "corrections"])  # not clobbered by the subcommand
    assert args.func(args) == 0
    assert "joy       1\n" in capsys.readouterr().out

    monkeypatch.setenv("GEMMA_EMOTION_RUNS", runs)
    args = _parser().parse_args(["corrections"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "sadness   0", "joy       1", "love      0", "anger     0",
        "fear      0", "surprise  0", "total     1",
    ]  # fmt: skip


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "no-runs")
    args = _parser().parse_args(["export", "--runs-dir", missing])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "corrections.db" in err
    # Counting before anything was saved: zero of each label, and a line on stderr saying why.
    args = _parser().parse_args(["corrections", "--runs-dir", missing])
    assert args.func(args) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[0] == "sadness   0" and printed.out.splitlines()[-1] == "total     0"
    assert printed.err.startswith("no corrections yet (") and "corrections.db" in printed.err
    assert not Path(missing).exists()

    s = CorrectionStore(tmp_path)
    s.add("x", "joy")
    (tmp_path / "folder").mkdir()
    args = _parser().parse_args(["export", "--runs-dir", str(tmp_path), "--out", str(tmp_path / "folder")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err and "Traceback" not in err

    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["export", "--format", "xml"])
    assert exc.value.code == 2


def test_a_semicolon_splitting_spreadsheet_finds_no_formula_cell(tmp_path: Path) -> None:
    """OWASP: prefix *and* quote. A locale that splits on ";" must not see the text's "=" start a cell."""
    s = CorrectionStore(tmp_path)
    s.add("fine;=cmd|' /C calc'!A0", "joy")
    line = render(s, "csv").splitlines()[1]
    # A spreadsheet reading ";" as the separator honours a quote at the start of a field, as csv does.
    first = next(csv.reader([line], delimiter=";"))[0]
    assert first.startswith("fine;=cmd"), first  # the ";" is inside the quoted text cell, not a boundary
    unquoted = "fine;=cmd|' /C calc'!A0,joy"  # what the old writer produced for this text
    assert next(csv.reader([unquoted], delimiter=";"))[1].startswith("=")


@pytest.mark.parametrize("text", ["=1+1", "'tis the season", "''", "- a dash", "plain", "@home", "x\r\ny"])
def test_csv_cells_read_back_exactly(tmp_path: Path, text: str) -> None:
    from gemma_emotion.files import csv_text, read_csv_rows

    path = tmp_path / "t.csv"
    path.write_text(csv_text([{"text": text, "n": 1}], ["text", "n"]), encoding="utf-8", newline="")
    assert read_csv_rows(path) == [{"text": text, "n": "1"}]
