"""Comparing runs: the settings in which they differ and their final figures, side by side.

`compare_runs` reads the runs' records and logs into a `Comparison`: one row per setting whose value is
not the same in every run (the config's options by their titles, then what the device plan made of the
"auto" ones: batch, accumulation, learning rate, device), and one row per figure (how each run ended, its
steps, losses, the best and last validation loss from its log, accuracy and macro-F1 before and after).
`comparison_table` is the same as rows of text, which the `runs --compare` command prints and the Train
tab shows; the loss curves overlaid are the tab's (`ui/plots.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gemma_emotion.config import config_fields
from gemma_emotion.errors import UserError
from gemma_emotion.runfolder import LogRecord
from gemma_emotion.runs import RunInfo

# What the device plan decided, where a config may say "auto": compared as settings too.
PLAN_SETTINGS = (
    ("batch_size", "batch size (as run)"),
    ("grad_accum", "gradient accumulation (as run)"),
    ("learning_rate", "learning rate (as run)"),
    ("device", "device"),
)
# The figures of a run's metrics shown side by side, by key; the log's validation losses come first.
METRICS = (
    ("train_loss", "train loss (mean)"),
    ("final_loss", "train loss (last step)"),
    ("base_accuracy", "base accuracy"),
    ("finetuned_accuracy", "fine-tuned accuracy"),
    ("base_macro_f1", "base macro-F1"),
    ("finetuned_macro_f1", "fine-tuned macro-F1"),
    ("finetuned_invalid", "fine-tuned invalid"),
    ("n_test", "test rows"),
    ("train_runtime_s", "training time (s)"),
)


class CompareError(UserError, ValueError):
    """A comparison that cannot be made (fewer than two runs, a run named twice)."""


@dataclass
class Comparison:
    """Runs side by side: `settings` rows differ between them, `metrics` rows are every figure any run has;
    each row is (title, one value per run, in the order of `runs`)."""

    runs: list[str]
    settings: list[tuple[str, list[Any]]]
    metrics: list[tuple[str, list[Any]]]


def compare_runs(runs: list[RunInfo], logs: list[list[LogRecord]]) -> Comparison:
    """The comparison of `runs` (at least two), each with its log records."""
    names = [r.name for r in runs]
    if len(runs) < 2:
        raise CompareError("pick at least two runs to compare")
    if len(set(names)) != len(names):
        raise CompareError(f"a run is named twice: {', '.join(names)}")
    settings: list[tuple[str, list[Any]]] = []
    for f in config_fields():
        if f.name == "name":  # each column is headed by its run's name
            continue
        values = [r.config.get(f.name, f.default) for r in runs]
        if _differ(values):
            # None reads as what it means for the option: "auto", "all", "off"
            settings.append((f.title, [f.option.none if v is None and f.option.none else v for v in values]))
    plans = [_plan_of(r) for r in runs]
    for key, title in PLAN_SETTINGS:
        values = [p.get(key) for p in plans]
        if _differ(values):
            settings.append((title, values))
    rows = [r.n_train for r in runs]
    if _differ(rows):
        settings.append(("training rows (as run)", rows))

    metrics: list[tuple[str, list[Any]]] = [
        ("status", [r.status for r in runs]),
        ("ended", [_ending(r) for r in runs]),
        ("steps", [(r.metrics or {}).get("steps") for r in runs]),
    ]
    evals = [[x["eval_loss"] for x in log if x.get("eval_loss") is not None] for log in logs]
    if any(evals):
        metrics.append(("validation loss (best)", [min(e) if e else None for e in evals]))
        metrics.append(("validation loss (last)", [e[-1] if e else None for e in evals]))
    for key, title in METRICS:
        values = [(r.metrics or {}).get(key) for r in runs]
        if any(v is not None for v in values):
            metrics.append((title, values))
    return Comparison(names, settings, metrics)


def comparison_table(c: Comparison) -> list[list[str]]:
    """The comparison as rows of text: a header (blank, then the run names), the settings that differ
    (or a line saying none do), then the figures."""
    rows = [["", *c.runs]]
    if c.settings:
        rows += [[title, *map(format_value, values)] for title, values in c.settings]
    else:
        rows.append(["settings", *(["same"] * len(c.runs))])
    rows += [[title, *map(format_value, values)] for title, values in c.metrics]
    return rows


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == int(value) and abs(value) < 1e6:
            return f"{value:g}"
        return f"{value:.4g}" if abs(value) < 1e-2 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def _differ(values: list[Any]) -> bool:
    return any(v != values[0] for v in values[1:])


def _plan_of(run: RunInfo) -> dict[str, Any]:
    from gemma_emotion.runfolder import read_record

    try:
        plan = read_record(run.path).get("plan")
    except (OSError, ValueError):
        return {}
    return plan if isinstance(plan, dict) else {}


def _ending(run: RunInfo) -> str:
    """How the run ended, in words: completed, early-stopped at step S (kept step B), stopped, failed."""
    ended = run.ended or {}
    reason = ended.get("reason")
    if reason is None:
        return "running" if run.status == "running" else run.status
    text = reason.replace("_", "-")
    if ended.get("step") is not None:
        text += f" at step {ended['step']}"
    if reason == "early_stopped" and ended.get("best_step") is not None:
        text += f" (kept step {ended['best_step']})"
    return text
