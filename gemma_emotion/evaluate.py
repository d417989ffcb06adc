"""Evaluation: metrics over predictions, reports on disk, and base-vs-fine-tuned comparison.

A report is one evaluation of one model (+ adapter) on one data slice: `metrics.json` and
`predictions.csv` in a folder. Metrics come from scikit-learn over the classifier's label set (recorded
as `labels` in metrics.json, in its order: per-class keys, confusion rows and columns follow it); an
answer that is not a label of the set counts as wrong and gets its own *invalid* column in the confusion
matrix.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from gemma_emotion.classify import BatchProgress, Classifier, Prediction
from gemma_emotion.files import atomic_write_text, csv_text, read_csv_rows
from gemma_emotion.labels import EMOTIONS, INVALID, LabelSet

if TYPE_CHECKING:
    from gemma_emotion.models import LoadedModel

INVALID_ID = len(EMOTIONS)  # the default set's invalid column (for any set: its number of labels)
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
    gold: Sequence[int],
    predicted: Sequence[str],
    lenient: Sequence[str | None] | None = None,
    labels: LabelSet = EMOTIONS,
) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix (gold × labels + invalid).

    `gold` holds label ids of `labels`; `predicted` holds label names as the set spells them (anything
    else is an invalid answer)."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    if not gold:
        raise ValueError("no examples to score")
    names = list(labels.names)
    invalid_id = len(names)
    to_id = {name: i for i, name in enumerate(names)}
    y_true = np.asarray(gold, dtype=int)
    if ((y_true < 0) | (y_true >= invalid_id)).any():
        raise ValueError(f"gold label ids must be 0-{invalid_id - 1} for the labels {', '.join(names)}")
    y_pred = np.asarray([to_id.get(p, invalid_id) for p in predicted], dtype=int)
    label_ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=label_ids, zero_division=0
    )
    confusion = confusion_matrix(y_true, y_pred, labels=label_ids + [invalid_id])[: len(names)]
    metrics = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=label_ids, average="macro", zero_division=0)),
        "invalid": int((y_pred == invalid_id).sum()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion": confusion.tolist(),
        "confusion_columns": names + [INVALID],
        "labels": names,
    }
    if lenient is not None:
        recovered = np.asarray([to_id.get(x or "", invalid_id) for x in lenient])
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
    """Classify `texts`, score against `gold` (label ids of the classifier's label set), and return the
    report (nothing written yet)."""
    labels = classifier.labels
    start = time.perf_counter()
    preds = classifier.predict(texts, mode, adapter=adapter, batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - start
    return build_report(
        preds, gold, classifier.lm, labels, mode=mode, adapter=adapter, seconds=seconds, meta=meta
    )


def build_report(
    preds: Sequence[Prediction],
    gold: Sequence[int],
    lm: LoadedModel,
    labels: LabelSet,
    *,
    mode: str,
    adapter: bool,
    seconds: float,
    meta: dict | None = None,
) -> Report:
    """The report of predictions made by `lm` (fine-tuned when `adapter`) in `seconds`, against `gold`
    (label ids of `labels`, the set the predictions were made with)."""
    metrics = compute_metrics(list(gold), [p.label for p in preds], [p.lenient for p in preds], labels)
    metrics.update(
        mode=mode,
        model=lm.spec.name,
        adapter=lm.adapter if adapter else None,
        seconds=round(seconds, 3),
        examples_per_s=round(len(preds) / seconds, 2) if seconds > 0 else None,
        device=str(lm.device),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    metrics.update(meta or {})
    rows = [_prediction_row(p, g, labels) for p, g in zip(preds, gold)]
    return Report(metrics=metrics, predictions=rows)


def report_labels(metrics: dict) -> list[str]:
    """The label names a report was made with, in order (reports written before label sets: the six)."""
    return list(metrics.get("labels") or metrics.get("per_class") or EMOTIONS.names)


def _prediction_row(pred: Prediction, gold: int, labels: LabelSet) -> dict:
    row = {
        "text": pred.text,
        "gold": labels.names[gold] if gold >= 0 else "",
        "predicted": pred.label,
        "correct": gold >= 0 and pred.label == labels.names[gold],
        "valid": pred.valid,
        "raw": pred.raw,
    }
    for name in labels.names:
        row[f"prob_{name}"] = round(pred.probabilities[name], 6) if pred.probabilities else ""
    return row


def write_report(report: Report, out_dir: str | os.PathLike) -> Path:
    """Write predictions.csv, then metrics.json, each atomically, into `out_dir`.

    metrics.json is what marks a folder as a report, so it goes last: a write that fails half way (a full
    disk) never leaves a folder that reads as a complete report without its predictions.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / PREDICTIONS_FILE, predictions_csv(report.predictions, report_labels(report.metrics))
    )
    atomic_write_text(out / METRICS_FILE, json.dumps(report.metrics, indent=2, ensure_ascii=False) + "\n")
    return out


def predictions_csv(rows: list[dict], labels: Sequence[str] = EMOTIONS.names) -> str:
    """The per-example rows as CSV, one `prob_<label>` column per label of the report's set."""
    fields = ["text", "gold", "predicted", "correct", "valid", "raw"] + [f"prob_{n}" for n in labels]
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
    """Before/after table: accuracy, macro-F1, invalid and per-class F1, with the change.

    Both reports must be made with the same label set (the base model is prompted with the fine-tune's)."""
    names = report_labels(tuned.metrics)
    if report_labels(base.metrics) != names:
        raise ValueError(
            f"the reports use different label sets ({', '.join(report_labels(base.metrics))} against "
            f"{', '.join(names)}), so they cannot be compared"
        )
    rows = {}
    for key in ("accuracy", "macro_f1", "invalid"):
        b, t = base.metrics[key], tuned.metrics[key]
        rows[key] = {"base": b, "finetuned": t, "delta": t - b}
    per_class = {
        name: {
            "base": base.metrics["per_class"][name]["f1"],
            "finetuned": tuned.metrics["per_class"][name]["f1"],
        }
        for name in names
    }
    changed = None
    if base.predictions and tuned.predictions and len(base.predictions) == len(tuned.predictions):
        changed = sum(a["predicted"] != b["predicted"] for a, b in zip(base.predictions, tuned.predictions))
    return {"metrics": rows, "per_class_f1": per_class, "changed_predictions": changed}


def format_table(metrics: dict) -> str:
    """A short plain-text summary for the terminal."""
    names = report_labels(metrics)
    width = max(10, *(len(n) + 2 for n in names))
    lines = [
        f"{metrics.get('model', '?')}{' + ' + str(metrics['adapter']) if metrics.get('adapter') else ''}"
        f"  mode={metrics.get('mode')}  n={metrics['n']}",
        f"accuracy {metrics['accuracy'] * 100:6.2f} %   macro-F1 {metrics['macro_f1']:.3f}   "
        f"invalid {metrics['invalid']}",
        f"{'label':<{width}}{'precision':>10}{'recall':>8}{'f1':>7}{'support':>9}",
    ]
    for name in names:
        c = metrics["per_class"][name]
        lines.append(
            f"{name:<{width}}{c['precision']:>10.3f}{c['recall']:>8.3f}{c['f1']:>7.3f}{c['support']:>9}"
        )
    if metrics.get("examples_per_s"):
        lines.append(f"{metrics['examples_per_s']:.1f} examples/s on {metrics.get('device', '?')}")
    return "\n".join(lines)
