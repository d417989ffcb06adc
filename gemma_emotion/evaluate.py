"""Evaluation: metrics over predictions, reports on disk, and base-vs-fine-tuned comparison.

A report is one evaluation of one model (+ adapter) on one data slice: `metrics.json` and
`predictions.csv` in a folder. Metrics come from scikit-learn; an answer that is not one of the six
labels counts as wrong and gets its own *invalid* column in the confusion matrix.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from gemma_emotion.classify import BatchProgress, Classifier, Prediction
from gemma_emotion.files import atomic_write_text, csv_text, read_csv_rows
from gemma_emotion.labels import INVALID, LABEL_TO_ID, LABELS

INVALID_ID = len(LABELS)  # the seventh column of the confusion matrix
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"


@dataclass
class Report:
    """Metrics plus per-example predictions; `metrics` is exactly what metrics.json holds."""

    metrics: dict
    predictions: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    @property
    def macro_f1(self) -> float:
        return self.metrics["macro_f1"]

    @property
    def invalid(self) -> int:
        return self.metrics["invalid"]


def compute_metrics(
    gold: Sequence[int], predicted: Sequence[str], lenient: Sequence[str | None] | None = None
) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix (gold × six + invalid)."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    if not gold:
        raise ValueError("no examples to score")
    y_true = np.asarray(gold, dtype=int)
    y_pred = np.asarray([LABEL_TO_ID.get(p, INVALID_ID) for p in predicted], dtype=int)
    label_ids = list(range(len(LABELS)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=label_ids, zero_division=0
    )
    confusion = confusion_matrix(y_true, y_pred, labels=label_ids + [INVALID_ID])[: len(LABELS)]
    metrics = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=label_ids, average="macro", zero_division=0)),
        "invalid": int((y_pred == INVALID_ID).sum()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(LABELS)
        },
        "confusion": confusion.tolist(),
        "confusion_columns": list(LABELS) + [INVALID],
    }
    if lenient is not None:
        recovered = np.asarray([LABEL_TO_ID.get(x or "", INVALID_ID) for x in lenient])
        metrics["lenient_accuracy"] = float((recovered == y_true).mean())
    return metrics


def evaluate(
    classifier: Classifier,
    texts: Sequence[str],
    gold: Sequence[int],
    *,
    mode: str = "score",
    adapter: bool = True,
    batch_size: int | None = None,
    progress: BatchProgress | None = None,
    meta: dict | None = None,
) -> Report:
    """Classify `texts`, score against `gold`, and return the report (nothing written yet)."""
    start = time.perf_counter()
    preds = classifier.predict(texts, mode, adapter=adapter, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - start
    metrics = compute_metrics(list(gold), [p.label for p in preds], [p.lenient for p in preds])
    lm = classifier.lm
    metrics.update(
        mode=mode,
        model=lm.spec.name,
        adapter=lm.adapter if adapter else None,
        seconds=round(seconds, 3),
        examples_per_s=round(len(texts) / seconds, 2) if seconds > 0 else None,
        device=str(lm.device),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    metrics.update(meta or {})
    rows = [_prediction_row(p, g) for p, g in zip(preds, gold)]
    return Report(metrics=metrics, predictions=rows)


def _prediction_row(pred: Prediction, gold: int) -> dict:
    row = {
        "text": pred.text,
        "gold": LABELS[gold] if gold >= 0 else "",
        "predicted": pred.label,
        "correct": gold >= 0 and pred.label == LABELS[gold],
        "valid": pred.valid,
        "raw": pred.raw,
    }
    for name in LABELS:
        row[f"prob_{name}"] = round(pred.probabilities[name], 6) if pred.probabilities else ""
    return row


def write_report(report: Report, out_dir: str | os.PathLike) -> Path:
    """Write predictions.csv, then metrics.json, each atomically, into `out_dir`.

    metrics.json is what marks a folder as a report, so it goes last: a write that fails half way (a full
    disk) never leaves a folder that reads as a complete report without its predictions.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PREDICTIONS_FILE, predictions_csv(report.predictions))
    atomic_write_text(out / METRICS_FILE, json.dumps(report.metrics, indent=2, ensure_ascii=False) + "\n")
    return out


def predictions_csv(rows: list[dict]) -> str:
    fields = ["text", "gold", "predicted", "correct", "valid", "raw"] + [f"prob_{n}" for n in LABELS]
    return csv_text(rows, fields)


def load_report(path: str | os.PathLike) -> Report:
    """Read a report folder (or a metrics.json path); predictions are loaded when present."""
    path = Path(path)
    folder = path.parent if path.name == METRICS_FILE else path
    metrics = json.loads((folder / METRICS_FILE).read_text())
    preds_file = folder / PREDICTIONS_FILE
    predictions = []
    if preds_file.is_file():
        predictions = read_csv_rows(preds_file)  # texts as they are, not as disarmed for spreadsheets
    return Report(metrics=metrics, predictions=predictions)


def compare_reports(base: Report, tuned: Report) -> dict:
    """Before/after table: accuracy, macro-F1, invalid and per-class F1, with the change."""
    rows = {}
    for key in ("accuracy", "macro_f1", "invalid"):
        b, t = base.metrics[key], tuned.metrics[key]
        rows[key] = {"base": b, "finetuned": t, "delta": t - b}
    per_class = {
        name: {
            "base": base.metrics["per_class"][name]["f1"],
            "finetuned": tuned.metrics["per_class"][name]["f1"],
        }
        for name in LABELS
    }
    changed = None
    if base.predictions and tuned.predictions and len(base.predictions) == len(tuned.predictions):
        changed = sum(a["predicted"] != b["predicted"] for a, b in zip(base.predictions, tuned.predictions))
    return {"metrics": rows, "per_class_f1": per_class, "changed_predictions": changed}


def format_table(metrics: dict) -> str:
    """A short plain-text summary for the terminal."""
    lines = [
        f"{metrics.get('model', '?')}{' + ' + str(metrics['adapter']) if metrics.get('adapter') else ''}"
        f"  mode={metrics.get('mode')}  n={metrics['n']}",
        f"accuracy {metrics['accuracy'] * 100:6.2f} %   macro-F1 {metrics['macro_f1']:.3f}   "
        f"invalid {metrics['invalid']}",
        f"{'label':<10}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}",
    ]
    for name in LABELS:
        c = metrics["per_class"][name]
        lines.append(f"{name:<10}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>7.3f}{c['support']:>9}")
    if metrics.get("examples_per_s"):
        lines.append(f"{metrics['examples_per_s']:.1f} examples/s on {metrics.get('device', '?')}")
    return "\n".join(lines)
