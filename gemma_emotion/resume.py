"""Resuming a run: which checkpoint it continues from, whether it may, and the run folder made ready for it.

A stopped or failed run (a killed one reads as failed) continues in its own folder from its newest complete
checkpoint. It is refused with one clear message when there is nothing to continue (completed, no
checkpoint), when run.json's settings are not those the checkpoint was trained with (a hand-edited record),
when the training rows differ from the recorded ones (the data or the corrections changed: the rest of
the run would train on other rows), or when the device is not the kind the run was planned for. The
runner checks before it claims the run, so the command line and the app answer at once; the training
process checks the config and the data again once it has loaded them, as they may change in between.
Before the training continues, the log is cut back to the checkpoint's step, so no step is logged twice,
and checkpoints past it (or half written) are removed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from gemma_emotion.config import TrainConfig, config_fields
from gemma_emotion.errors import UserError
from gemma_emotion.runfolder import (
    LOG_FILE,
    RUN_FILE,
    CheckpointState,
    RunRecord,
    checkpoints,
    last_checkpoint,
    read_checkpoint_state,
    truncate_log,
)

RESUMABLE = ("stopped", "failed")


class ResumeError(UserError, ValueError):
    """A run that cannot be resumed, and why."""


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from: its step, folder and state."""

    step: int
    folder: Path
    state: CheckpointState


def resolve_run_dir(ref: str, runs_dir: str | os.PathLike) -> Path:
    """The folder of the run `ref` names: a run folder (with run.json), or a run's name in `runs_dir`."""
    from gemma_emotion.config import check_name

    path = Path(ref).expanduser()
    if (path / RUN_FILE).is_file():
        return path.resolve()
    if path.name == RUN_FILE and path.is_file():
        return path.parent.resolve()
    candidate = Path(runs_dir) / check_name(ref)
    if (candidate / RUN_FILE).is_file():
        return candidate.resolve()
    raise ResumeError(f"no run named {ref!r} in {runs_dir}, nor a run folder at {ref}")


def check_status(name: str, status: str) -> None:
    """ResumeError unless the run is stopped or failed."""
    if status == "completed":
        raise ResumeError(
            f"run {name} completed: there is nothing to resume; repeat it with `train --config {name}`"
        )
    if status not in RESUMABLE:
        raise ResumeError(f"run {name} is {status}: only a stopped or failed run can be resumed")


def resume_point(name: str, run_dir: Path, record: RunRecord) -> ResumePoint:
    """The newest complete checkpoint of the run, trained with the settings run.json records; ResumeError
    saying why not otherwise."""
    found = last_checkpoint(run_dir)
    if found is None:
        raise ResumeError(
            f"run {name} has no checkpoint to resume from: it ended before its first checkpoint was saved; "
            f"start it again with `train --config {name}`"
        )
    step, folder = found
    try:
        state = read_checkpoint_state(folder)
    except (OSError, ValueError) as exc:
        raise ResumeError(f"run {name}: the checkpoint at step {step} is unreadable: {exc}") from exc
    check_config(name, record, state)
    return ResumePoint(step, folder, state)


def check_config(name: str, record: RunRecord, state: CheckpointState) -> None:
    """ResumeError when run.json's settings are not those the checkpoint was trained with."""
    try:
        recorded = TrainConfig.from_dict(record.get("config") or {})
        trained = TrainConfig.from_dict(state.get("config") or {})
    except TypeError as exc:
        raise ResumeError(f"run {name}: its recorded settings are unreadable: {exc}") from exc
    changed = [
        f"{f.title} {getattr(trained, f.name)!r} → {getattr(recorded, f.name)!r}"
        for f in config_fields()
        if getattr(trained, f.name) != getattr(recorded, f.name)
    ]
    if changed:
        raise ResumeError(
            f"run {name}: its settings changed since the checkpoint at step {state.get('step')} "
            f"({'; '.join(changed)}): a resumed run keeps its settings; start a new run with them "
            f"(`train --config {name}`)"
        )


def check_data(name: str, record: RunRecord, fingerprint: str) -> None:
    """ResumeError when the training rows are not the ones the run started with."""
    recorded = record.get("data_fingerprint")
    if recorded and recorded != fingerprint:
        raise ResumeError(
            f"run {name}: its training rows changed since it started (fingerprint {recorded}, now "
            f"{fingerprint}; the data or the corrections are not the same): the rest of the run would train "
            f"on other rows. Restore the data, or start a new run (`train --config {name}`)"
        )


def check_device(name: str, planned: str, found: str) -> None:
    if planned != found:
        raise ResumeError(
            f"run {name} was planned for {planned} and this machine trains on {found}: resume it where "
            f"it started, or start a new run (`train --config {name}`)"
        )


def current_fingerprint(config: TrainConfig, runs_dir: str | os.PathLike) -> str:
    """The fingerprint of the training rows `config` gives now (loads and samples the data)."""
    from gemma_emotion.data import fingerprint
    from gemma_emotion.train_data import prepare_data, run_labels

    return fingerprint(prepare_data(config, runs_dir, run_labels(config)).train)


def check_resumable(name: str, run_dir: Path, status: str, record: RunRecord) -> ResumePoint:
    """Every check a resume passes before it is claimed, the data's included (loads the data: seconds)."""
    check_status(name, status)
    point = resume_point(name, run_dir, record)
    config = TrainConfig.from_dict(record.get("config") or {})
    check_data(name, record, current_fingerprint(config, run_dir.parent))
    return point


def rewind(run_dir: Path, step: int) -> int:
    """Make the folder what it was at the checkpoint of `step`: log records past it and later or half
    written checkpoints removed. Returns the number of log records dropped."""
    complete = {folder for _, folder in checkpoints(run_dir)}
    for later, folder in checkpoints(run_dir, complete=False):
        if later > step or folder not in complete:
            shutil.rmtree(folder, ignore_errors=True)
    return truncate_log(run_dir / LOG_FILE, step)
