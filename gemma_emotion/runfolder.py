"""The run folder's protocol: what a run folder holds, and the shape of run.json and of log.jsonl's lines.

`runs/<name>/` holds `run.json` (a `RunRecord`: config, status, phase, timestamps, metrics, why the run
ended, its resumes; rewritten atomically on every change by its one writer, `RunFile`), `log.jsonl` (one
`LogRecord` a line, appended by the training's main process through `append_log`, cut back to a
checkpoint's step by `truncate_log` when the run resumes), `adapter/`, `reports/<report>/`, `process.log`
(what the training process printed), `data/` (copies of the user files it was trained on) and, until the
run completes, `checkpoints/checkpoint-<step>/` (the Trainer's checkpoints, each finished by a
`CheckpointState` file that `checkpoints` looks for). Every reader (the registry, the Train tab, the
plots, the benchmarks) goes through `read_record` and `read_log`.
The writers refuse keys the types do not name, so a record's shape is the one stated here.
"""

from __future__ import annotations

import json
import os
import re
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

from gemma_emotion.files import atomic_write_json, atomic_write_text

RUN_FILE = "run.json"
LOG_FILE = "log.jsonl"
STOP_FILE = "STOP"
ADAPTER_DIR = "adapter"
REPORTS_DIR = "reports"
PROCESS_LOG = "process.log"
CHECKPOINTS_DIR = "checkpoints"
# Written into a checkpoint folder after the Trainer's own files: a checkpoint without it is incomplete
# (the process was killed while saving it) and is never resumed from.
CHECKPOINT_STATE = "run_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")  # the Trainer's folder names (PREFIX_CHECKPOINT_DIR)

Status = Literal["running", "completed", "stopped", "failed"]
STATUSES: tuple[Status, ...] = typing.get_args(Status)
# starting: the folder is made; loading: data and model; training; evaluating: base and fine-tuned on the
# test rows; done: the status says how it ended.
Phase = Literal["starting", "loading", "training", "evaluating", "done"]
PHASES: tuple[Phase, ...] = typing.get_args(Phase)
LogKind = Literal["train", "eval"]
# How a run ended: trained all its steps, stopped by early stopping (status "completed" too), stopped on
# request, or failed.
EndReason = Literal["completed", "early_stopped", "stopped", "failed"]
END_REASONS: tuple[EndReason, ...] = typing.get_args(EndReason)


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


class RunEnd(TypedDict, total=False):
    """run.json's `ended`: why the run ended and at which step (None: before the first step). Early
    stopping adds the evaluation it kept (`best_step`, `best_eval_loss`) and its `patience`."""

    reason: EndReason
    step: int | None
    best_step: int | None
    best_eval_loss: float | None
    patience: int


class ResumeEntry(TypedDict):
    """One resume of a run: when, and the checkpoint's step it continued from."""

    at: str
    from_step: int


class CheckpointState(TypedDict, total=False):
    """A checkpoint's `run_state.json`: what the run was at that step, to refuse a resume whose config or
    data differ and to carry the run's totals (loss, tokens, time) across the resume."""

    step: int
    config: dict[str, Any]
    plan: dict[str, Any]
    data_fingerprint: str
    loss_sum: float  # the training loss summed over the logged steps (each logged mean times its steps)
    loss_steps: int  # the steps loss_sum covers: all of 1..step, unless a stop saved between two logs
    tokens: int | None
    train_runtime_s: float


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
    ended: RunEnd | None
    resumed: list[ResumeEntry]


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
CHECKPOINT_KEYS = frozenset(CheckpointState.__annotations__)


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


def truncate_log(path: str | os.PathLike, step: int) -> int:
    """Keep the records up to `step` (a resumed run logs the later ones again), replacing the file
    atomically; a line that is not a record (half written by a killed process) goes too. Returns how many
    records were dropped."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return 0
    kept, dropped = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(record, dict) and int(record.get("step") or 0) <= step:
            kept.append(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            dropped += 1
    atomic_write_text(path, "".join(kept))
    return dropped


# -- checkpoints --------------------------------------------------------------------------------------
def checkpoints(run_dir: str | os.PathLike, *, complete: bool = True) -> list[tuple[int, Path]]:
    """The run's checkpoint folders as (step, folder), oldest first; only the complete ones unless asked."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir() and (not complete or (entry / CHECKPOINT_STATE).is_file()):
            found.append((int(match.group(1)), entry))
    return sorted(found)


def last_checkpoint(run_dir: str | os.PathLike) -> tuple[int, Path] | None:
    """The newest complete checkpoint as (step, folder), or None."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


def write_checkpoint_state(folder: str | os.PathLike, state: CheckpointState) -> None:
    _check_keys(state, CHECKPOINT_KEYS, CHECKPOINT_STATE)
    atomic_write_json(Path(folder) / CHECKPOINT_STATE, state)


def read_checkpoint_state(folder: str | os.PathLike) -> CheckpointState:
    """A checkpoint's state; OSError when unreadable, ValueError when it is not a JSON object."""
    state = json.loads((Path(folder) / CHECKPOINT_STATE).read_text(encoding="utf-8"))
    if not isinstance(state, dict):
        raise ValueError("not a JSON object")
    return typing.cast(CheckpointState, state)
