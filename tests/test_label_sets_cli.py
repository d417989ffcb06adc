"""A label set of your own through the CLI: train with --labels, then eval and classify with its adapter."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import VALENCE, label_set_cli
from label_set_data import write_set


def test_train_with_labels_saves_the_set_beside_the_adapter(valence_run):
    proc, run_dir = valence_run["proc"], valence_run["dir"]
    assert "labels (3, given): negative, positive, surprise" in proc.stderr  # shown before training
    assert json.loads((run_dir / "adapter" / "labels.json").read_text())["names"] == VALENCE
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["labels"] == VALENCE
    assert record["config"]["labels"] == ",".join(VALENCE)
    assert list(record["label_counts"]) == VALENCE
    # Base and fine-tuned were asked for the same three labels.
    for variant in ("base", "finetuned"):
        metrics = json.loads((run_dir / "reports" / variant / "metrics.json").read_text())
        assert metrics["labels"] == VALENCE and list(metrics["per_class"]) == VALENCE
    assert "negative" in proc.stdout and "sadness" not in proc.stdout  # the before/after table


def test_eval_with_the_adapter_scores_its_three_labels(valence_run, tiny_words3, valence_file, tmp_path):
    adapter = valence_run["dir"] / "adapter"
    out = tmp_path / "eval"
    proc = label_set_cli(
        "eval", "--model", str(tiny_words3), "--adapter", str(adapter), "--data", str(valence_file),
        "--limit", "30", "--out", str(out), runs=valence_run["runs"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["per_class"]) == VALENCE
    assert metrics["confusion_columns"] == [*VALENCE, "invalid"] and len(metrics["confusion"]) == 3
    assert sum(map(sum, metrics["confusion"])) == metrics["n"] == 30
    with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header[-3:] == ["prob_negative", "prob_positive", "prob_surprise"]


def test_classify_with_the_adapter_gives_three_probabilities(valence_run, tiny_words3):
    adapter = valence_run["dir"] / "adapter"
    proc = label_set_cli(
        "classify", "i feel wonderful today", "--model", str(tiny_words3), "--adapter", str(adapter),
        "--json", runs=valence_run["runs"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert list(result["probabilities"]) == VALENCE
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["label"] in VALENCE


def test_eval_on_labels_outside_the_adapters_set_names_them(valence_run, tiny_words3, shared_data, tmp_path):
    adapter = valence_run["dir"] / "adapter"
    emotions = write_set(shared_data, tmp_path / "renamed", "renamed", fmt="csv", limit=50) / "test.csv"
    proc = label_set_cli(
        "eval", "--model", str(tiny_words3), "--adapter", str(adapter), "--data", str(emotions),
        "--out", str(tmp_path / "never"), runs=valence_run["runs"],
    )  # fmt: skip
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "labels not in the set:" in line
    for name in ("sad", "happy", "scared"):
        assert name in line.split("labels not in the set:")[1]
    assert not (tmp_path / "never").exists()
