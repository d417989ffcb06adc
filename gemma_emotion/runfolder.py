"""The run folder's protocol: what a run folder holds, and the shape of run.json and of log.jsonl's lines.

`runs/<name>/` holds `run.json` (a `RunRecord`: config, status, phase, timestamps, metrics; rewritten
atomically on every change by its one writer, `RunFile`), `log.jsonl` (one `LogRecord` a line, appended by
the training's main process through `append_log`), `adapter/`, `reports/<report>/`, `process.log` (what
the training process printed) and `data/` (copies of the user files it was trained on). Every reader (the
registry, the Train tab, the plots, the benchmarks) goes through `read_record` and `read_log`. The writers
refuse keys the types do not name, so a record's shape is the one stated here.
"""

from __future__ import annotations

import json
import os
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

from gemma_emotion.files import atomic_write_json

RUN_FILE = "run.json"
LOG_FILE = "log.jsonl"
STOP_FILE = "STOP"
ADAPTER_DIR = "adapter"
REPORTS_DIR = "reports"
PROCESS_LOG = "process.log"

Status = Literal["running", "completed", "stopped", "failed"]
STATUSES: tuple[Status, ...] = typing.get_args(Status)
# starting: the folder is made; loading: data and model; training; evaluating: base and fine-tuned on the
# test rows; done: the status says how it ended.
Phase = Literal["starting", "loading", "training", "evaluating", "done"]
PHASES: tuple[Phase, ...] = typing.get_args(Phase)
LogKind = Literal["train", "eval"]


class ReportSummary(TypedDict):
    """The headline numbers of one report of the run's final evaluation."""

    accuracy: float
    macro_f1: float
    invalid: int


class RunMetrics(TypedDict, total=False):
    """run.json's `metrics`: the training's figures, then each report's summary, nested and flat."""

    train_loss: float
    final_loss: float | None
    steps: int
    epochs: float
    train_runtime_s: float
    train_examples_per_s: float
    train_tokens: int | None
    n_test: int
    base: ReportSummary
    finetuned: ReportSummary
    base_generate: ReportSummary
    finetuned_generate: ReportSummary
    base_accuracy: float
    base_macro_f1: float
    base_invalid: int
    finetuned_accuracy: float
    finetuned_macro_f1: float
    finetuned_invalid: int
    base_generate_accuracy: float
    base_generate_macro_f1: float
    base_generate_invalid: int
    finetuned_generate_accuracy: float
    finetuned_generate_macro_f1: float
    finetuned_generate_invalid: int


class RunRecord(TypedDict, total=False):
    """run.json. `config` is `TrainConfig.to_dict()`; `plan` is the device plan (`plan.TrainPlan`)."""

    name: str
    status: Status
    phase: Phase
    config: dict[str, Any]
    model: str
    model_resolved: str
    created_at: str
    updated_at: str
    finished_at: str | None
    pid: int | None
    pid_started: float | None
    metrics: RunMetrics | None
    error: str | None
    traceback: list[str]
    n_train: int | None
    n_corrections: int
    data_fingerprint: str
    data_files: list[dict[str, Any]]  # the user files trained on: role, name, copy, bytes, sha256, rows
    label_counts: dict[str, int]
    labels: list[str]  # the label set's names, in id order (also labels.json beside the adapter)
    notes: list[str]
    plan: dict[str, Any]
    total_steps: int
    world_size: int


class LogRecord(TypedDict, total=False):
    """One line of log.jsonl: a training step's figures (kind "train") or an evaluation's ("eval")."""

    kind: LogKind
    step: int
    epoch: float
    max_steps: int
    examples_per_s: float
    eta_s: float
    elapsed_s: float
    time: float
    loss: float
    learning_rate: float
    grad_norm: float
    mean_token_accuracy: float
    eval_loss: float
    eval_accuracy: float


RUN_KEYS = frozenset(RunRecord.__annotations__)
LOG_KEYS = frozenset(LogRecord.__annotations__)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check_keys(keys: typing.Iterable[str], known: frozenset[str], what: str) -> None:
    unknown = sorted(set(keys) - known)
    if unknown:  # a typo in a writer would otherwise go unseen until a reader misses the field
        raise KeyError(f"{what} has no field(s) {', '.join(unknown)}; add them to runfolder.py first")


# -- run.json -----------------------------------------------------------------------------------------
class RunFile:
    """The writer's view of one run.json: keeps the record in memory and replaces the file on each update."""

    def __init__(self, run_dir: str | os.PathLike, record: RunRecord | None = None):
        self.dir = Path(run_dir)
        self.path = self.dir / RUN_FILE
        self.record: RunRecord = record if record is not None else read_record(self.dir)

    def update(self, **fields: typing.Unpack[RunRecord]) -> RunRecord:
        _check_keys(fields, RUN_KEYS, RUN_FILE)
        self.record.update(fields)
        self.record["updated_at"] = utc_now()
        atomic_write_json(self.path, self.record)
        return self.record


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """A run folder's run.json; OSError when unreadable, ValueError when it is not a JSON object."""
    record = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return typing.cast(RunRecord, record)


# -- log.jsonl ----------------------------------------------------------------------------------------
def append_log(path: str | os.PathLike, record: LogRecord) -> None:
    """Append one record as one line; a reader sees whole lines or an unterminated tail, never half a line
    it would take for whole (one write per line in append mode)."""
    _check_keys(record, LOG_KEYS, LOG_FILE)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()


def read_log(path: str | os.PathLike, since: int = 0) -> tuple[list[LogRecord], int]:
    """The records from line `since` (0-based), and the line number to continue from next time; a line
    still being written (after the last newline) is left for the next read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return [], since
    lines = data.split(b"\n")[:-1]
    records: list[LogRecord] = []
    for line in lines[since:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(typing.cast(LogRecord, record))
    return records, max(since, len(lines))
