"""Corrections under label sets: the set is recorded, old databases migrate, exports use each set."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from gemma_emotion import corrections as corr
from gemma_emotion.cli import corrections as cli_corrections
from gemma_emotion.corrections import CorrectionsError, CorrectionStore, render, training_examples
from gemma_emotion.labels import EMOTIONS, LabelSet

VALENCE = LabelSet.parse("negative,positive,surprise")

# The schema of version 1 (before label sets), as gemma-emotion wrote it.
V1_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('set', 'remove', 'undo')), key TEXT, text TEXT, label TEXT,
    predicted TEXT, gold TEXT, source TEXT, source_ref TEXT, model TEXT, adapter TEXT, annotator TEXT,
    probabilities TEXT, reverts INTEGER REFERENCES events(id)
);
CREATE INDEX events_key ON events(key);
CREATE UNIQUE INDEX events_reverts ON events(reverts) WHERE reverts IS NOT NULL;
CREATE TABLE corrections (
    key TEXT PRIMARY KEY, text TEXT NOT NULL, label TEXT NOT NULL, predicted TEXT, gold TEXT, source TEXT,
    source_ref TEXT, model TEXT, adapter TEXT, annotator TEXT, probabilities TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, n_edits INTEGER NOT NULL
);
CREATE INDEX corrections_order ON corrections(created_at, text);
"""


def make_v1_database(folder: Path) -> Path:
    """A version-1 corrections.db holding one correction ("old text" → joy) and its event."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / corr.DB_NAME
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    key = corr._key("old text")
    at = "2024-01-01T00:00:00.000000Z"
    conn.execute(
        "INSERT INTO events (at, action, key, text, label, source) VALUES (?, 'set', ?, ?, 'joy', 'live')",
        (at, key, "old text"),
    )
    conn.execute(
        "INSERT INTO corrections (key, text, label, source, created_at, updated_at, n_edits) "
        "VALUES (?, ?, 'joy', 'live', ?, ?, 0)",
        (key, "old text", at, at),
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    return path


def test_a_version_1_database_migrates_and_keeps_its_rows(tmp_path: Path) -> None:
    make_v1_database(tmp_path)
    store = CorrectionStore(tmp_path)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        for table in ("events", "corrections"):
            assert "label_set" in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    (old,) = store.current()
    assert (old.text, old.label, old.labels, old.label_set, old.label_id) == (
        "old text",
        "joy",
        None,
        EMOTIONS,
        1,
    )
    # The old row lives on beside a new one made under another set, and history still works on it.
    store.add("new text", "surprise", labels=VALENCE)
    store.add("old text", "sadness")
    assert [c.label for c in store.current()] == ["sadness", "surprise"]
    assert [e.label for e in store.history("old text")] == ["joy", "sadness"]
    assert store.undo_last().current.label == "joy"
    assert store.integrity_check() == "ok"


def test_a_correction_records_its_label_set_and_is_checked_against_it(tmp_path: Path) -> None:
    store = CorrectionStore(tmp_path)
    c = store.add(
        "what a surprise", "SURPRISE", labels=VALENCE, gold="positive", probabilities={"negative": 0.2}
    )
    assert (c.label, c.labels, c.label_id, c.gold) == (
        "surprise",
        ["negative", "positive", "surprise"],
        2,
        "positive",
    )
    assert store.history("what a surprise")[0].labels == list(VALENCE.names)
    with pytest.raises(ValueError, match="unknown label 'joy'; expected one of negative, positive, surprise"):
        store.add("x", "joy", labels=VALENCE)
    with pytest.raises(ValueError, match="unknown label 'positive'"):
        store.add("x", "positive")  # the six emotions unless a set is named
    # An edit under another set changes the correction's set with its label.
    edited = store.add("what a surprise", "joy")
    assert (edited.label, edited.labels, edited.label_id) == ("joy", None, 1)


def test_exports_write_each_correction_in_its_own_set(tmp_path: Path) -> None:
    store = CorrectionStore(tmp_path)
    store.add("i lost my keys", "negative", labels=VALENCE)
    store.add("wow, a party for me", 2, labels=VALENCE)
    lines = [json.loads(x) for x in render(store, "emotion-jsonl").splitlines()]
    assert lines == [{"text": "i lost my keys", "label": 0}, {"text": "wow, a party for me", "label": 2}]
    chat = [json.loads(x) for x in render(store, "chat-jsonl").splitlines()]
    assert chat[1]["prompt"][0]["content"] == VALENCE.system_prompt
    assert chat[1]["completion"] == [{"role": "assistant", "content": "surprise"}]
    rows = list(csv.DictReader(io.StringIO(render(store, "csv"), newline="")))
    assert [(r["label"], r["label_id"], r["label_set"]) for r in rows] == [
        ("negative", "0", "negative,positive,surprise"),
        ("surprise", "2", "negative,positive,surprise"),
    ]


def test_corrections_of_other_sets_are_kept_counted_and_never_mixed_up(tmp_path: Path) -> None:
    store = CorrectionStore(tmp_path)
    store.add("i am so happy", "joy")  # the six emotions
    store.add("i lost my keys", "negative", labels=VALENCE)
    # Ids of two sets in one emotion-jsonl file would mean different labels: refused, with what to do.
    with pytest.raises(CorrectionsError, match="2 label sets .* export csv or chat-jsonl"):
        render(store, "emotion-jsonl")
    assert render(store, "emotion-jsonl", VALENCE) == '{"text": "i lost my keys", "label": 0}\n'
    assert render(store, "emotion-jsonl", EMOTIONS) == '{"text": "i am so happy", "label": 1}\n'
    assert len(list(csv.DictReader(io.StringIO(render(store, "csv"))))) == 2
    # Counted under the set in use, then the labels of other sets: shown, not hidden.
    assert store.counts_by_label(VALENCE) == {"negative": 1, "positive": 0, "surprise": 0, "joy": 1}
    assert store.counts_by_label()["joy"] == 1 and store.counts_by_label()["negative"] == 1
    assert store.label_sets() == [EMOTIONS, VALENCE]
    # A run trains on the corrections whose label its set has, as ids of its set; the rest stay stored.
    assert training_examples(store, VALENCE) == [{"text": "i lost my keys", "label": 0}]
    assert training_examples(store) == [{"text": "i am so happy", "label": 1}]
    assert store.count() == 2


def test_cli_exports_one_label_set(tmp_path: Path, capsys) -> None:
    store = CorrectionStore(tmp_path)
    store.add("i am so happy", "joy")
    store.add("wow", "surprise", labels=VALENCE)
    out = tmp_path / "valence.jsonl"
    args = argparse.Namespace(
        runs_dir=str(tmp_path),
        format="emotion-jsonl",
        out=str(out),
        push_to_hub=None,
        labels="negative,positive,surprise",
    )
    assert cli_corrections.cmd_export(args) == 0
    assert out.read_text() == '{"text": "wow", "label": 2}\n'
    args = argparse.Namespace(
        runs_dir=str(tmp_path), format="emotion-jsonl", out=None, push_to_hub=None, labels=None
    )
    assert cli_corrections.cmd_export(args) == 2
    assert "label sets" in capsys.readouterr().err
    assert (
        cli_corrections.cmd_corrections(
            argparse.Namespace(runs_dir=str(tmp_path), labels="negative,positive,surprise")
        )
        == 0
    )
    printed = capsys.readouterr().out.split("\n")
    assert printed[:4] == ["negative  0", "positive  0", "surprise  1", "joy       1"]
