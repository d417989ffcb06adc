"""The run registry and the runner: the run folders of a runs directory, their status, and one training
process at a time; also merging an adapter into its model and pushing either to the Hub.

What a run folder holds and the shape of its records are `runfolder`'s. Training runs in a subprocess
(`python -m gemma_emotion train --run-dir DIR`, with `--resume DIR` to continue a stopped or failed run
from its last checkpoint: `resume` says when it may), so a crash or an out-of-memory error never takes
the app down. The process is found again from `run.json` (status "running" + a live pid) after the app
restarts; a "running" run whose process is gone reads as failed.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion.config import TrainConfig, check_name, default_run_name
from gemma_emotion.errors import UserError
from gemma_emotion.runfolder import (
    ADAPTER_DIR,
    LOG_FILE,
    PROCESS_LOG,
    REPORTS_DIR,
    RUN_FILE,
    STATUSES,
    STOP_FILE,
    LogRecord,
    Phase,
    ResumeEntry,
    RunEnd,
    RunFile,
    RunMetrics,
    RunRecord,
    Status,
    last_checkpoint,
    read_log,
    read_record,
    utc_now,
)

if TYPE_CHECKING:
    from gemma_emotion.evaluate import Report

LOCK_FILE = ".runner.lock"
ENDED_UNEXPECTEDLY = "the training process ended without finishing (killed or crashed)"
# A run written by a runner that died before it could record the child's pid counts as running this long.
_PID_GRACE_S = 60.0


class RunsError(UserError):
    """A request about runs that cannot be served (no such run, one already training, a push refused)."""


class RunNotFound(RunsError, KeyError):
    """No run of that name; str() is the message (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class RunnerBusy(RunsError, RuntimeError):
    """A second training was asked for while one is running."""


class RunExists(RunsError, ValueError):
    """A run of the name asked for is already in the runs directory."""


class PushError(RunsError, RuntimeError):
    """The Hub refused an upload, could not be reached, or there is no token or nothing to upload."""


# -- processes ----------------------------------------------------------------------------------------
def process_start_time(pid: int) -> float | None:
    """When the process started (seconds since the epoch), to tell it from a later one with the same pid."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def process_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether `pid` is a live process (not a zombie) and, when `started` is known, the same one."""
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 2.0
    except (psutil.Error, OSError):
        return False


# -- a run as read ------------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """One run as read from its folder. `status` already accounts for a training process that died."""

    name: str
    path: Path
    status: Status
    config: dict[str, Any]
    created_at: str
    updated_at: str
    finished_at: str | None
    metrics: RunMetrics | None
    error: str | None
    adapter_dir: Path | None
    n_train: int | None
    n_corrections: int
    pid: int | None
    phase: Phase | None = None
    notes: list[str] | None = None
    labels: list[str] | None = None  # the run's label set (None: not known yet, or a run made before sets)
    ended: RunEnd | None = None
    resumed: list[ResumeEntry] | None = None
    checkpoint_step: int | None = None  # the step of the newest complete checkpoint

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def resumable(self) -> bool:
        """Stopped or failed with a checkpoint to continue from (`Runner.resume` checks the rest)."""
        return self.status in ("stopped", "failed") and self.checkpoint_step is not None

    @property
    def model(self) -> str:
        return str(self.config.get("model", "?"))

    @classmethod
    def from_record(cls, run_dir: Path, record: RunRecord) -> RunInfo:
        status = record.get("status", "failed")
        error = record.get("error")
        if status == "running" and not _looks_alive(record):
            status, error = "failed", error or ENDED_UNEXPECTEDLY + _last_output(run_dir)
        adapter = run_dir / ADAPTER_DIR
        checkpoint = last_checkpoint(run_dir)
        return cls(
            name=run_dir.name,
            path=run_dir,
            status=status if status in STATUSES else "failed",
            config=record.get("config") or {},
            created_at=record.get("created_at", ""),
            updated_at=record.get("updated_at", ""),
            finished_at=record.get("finished_at"),
            metrics=record.get("metrics"),
            error=error,
            adapter_dir=adapter if (adapter / "adapter_config.json").is_file() else None,
            n_train=record.get("n_train"),
            n_corrections=int(record.get("n_corrections") or 0),
            pid=record.get("pid"),
            phase=record.get("phase"),
            notes=record.get("notes"),
            labels=record.get("labels") or (record.get("config") or {}).get("labels"),
            ended=record.get("ended"),
            resumed=record.get("resumed"),
            checkpoint_step=checkpoint[0] if checkpoint else None,
        )


def _last_output(run_dir: Path) -> str:
    """The last line the training process printed (a crash before training started leaves its reason)."""
    try:
        with open(run_dir / PROCESS_LOG, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""


def _looks_alive(record: RunRecord) -> bool:
    pid = record.get("pid")
    if pid is None:  # the runner writes the pid right after starting the process
        try:
            updated = datetime.fromisoformat(record.get("updated_at", ""))
        except ValueError:
            return False
        return (datetime.now(UTC) - updated).total_seconds() < _PID_GRACE_S
    return process_alive(pid, record.get("pid_started"))


# -- the registry -------------------------------------------------------------------------------------
class RunRegistry:
    """The run folders of one runs directory."""

    def __init__(self, runs_dir: str | os.PathLike):
        self.root = Path(runs_dir)

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def list(self) -> list[RunInfo]:
        """All runs, newest first; folders without run.json are not runs and are skipped."""
        if not self.root.is_dir():
            return []
        runs = [self._read(p) for p in self.root.iterdir() if (p / RUN_FILE).is_file()]
        return sorted(runs, key=lambda r: (r.created_at, r.name), reverse=True)

    def get(self, name: str) -> RunInfo:
        return self._read(self._existing(name))

    def _existing(self, name: str) -> Path:
        """The run's folder; RunNotFound when no run of that name is here."""
        path = self.path(name)
        if not (path / RUN_FILE).is_file():
            raise RunNotFound(f"no run named {name!r} in {self.root}")
        return path

    def _read(self, run_dir: Path) -> RunInfo:
        try:
            record = read_record(run_dir)
        except (OSError, ValueError) as exc:  # a hand-edited or foreign file must not break the listing
            try:
                mtime = datetime.fromtimestamp(run_dir.stat().st_mtime, UTC).isoformat(timespec="seconds")
            except OSError:
                mtime = ""
            record = {"status": "failed", "error": f"{RUN_FILE} is unreadable: {exc}", "created_at": mtime}
        return RunInfo.from_record(run_dir, record)

    def log(self, name: str, since: int = 0) -> list[LogRecord]:
        """The log.jsonl records from line `since` on (0-based); a line still being written is left out."""
        return self.read_log(name, since)[0]

    def read_log(self, name: str, since: int = 0) -> tuple[list[LogRecord], int]:
        """Records from line `since`, and the line number to continue from next time."""
        return read_log(self.path(name) / LOG_FILE, since)

    def reports(self, name: str) -> dict[str, Report]:
        """{"base": Report, "finetuned": Report} (and any other report folder of the run) once written;
        RunNotFound when there is no such run (an empty answer would read as "no reports yet")."""
        from gemma_emotion.evaluate import METRICS_FILE, load_report

        folder = self._existing(name) / REPORTS_DIR
        if not folder.is_dir():
            return {}
        found = {p.name: load_report(p) for p in sorted(folder.iterdir()) if (p / METRICS_FILE).is_file()}
        order = {"base": 0, "finetuned": 1}
        return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0], 2), kv[0])))

    def create(self, config: TrainConfig, pid: int | None = None) -> RunFile:
        """A new run folder with run.json (status "running"); the name is the config's or a fresh one."""
        self.root.mkdir(parents=True, exist_ok=True)
        if config.name:
            run_dir = self.path(config.name)
            try:
                run_dir.mkdir()
            except FileExistsError:
                raise RunExists(f"a run named {config.name!r} already exists in {self.root}") from None
        else:
            run_dir = self._fresh_dir(config.model)
        now = utc_now()
        record: RunRecord = {
            "name": run_dir.name,
            "status": "running",
            "phase": "starting",
            "config": config.to_dict(),
            "model": config.model,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
            "pid": pid,
            "pid_started": process_start_time(pid) if pid else None,
            "metrics": None,
            "error": None,
            "n_train": None,
            "n_corrections": 0,
        }
        run = RunFile(run_dir, record)
        run.update()
        return run

    def _fresh_dir(self, model: str) -> Path:
        stem = default_run_name(model)
        for i in range(1, 1000):
            candidate = self.root / (stem if i == 1 else f"{stem}-{i}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        raise RunExists(f"could not find a free run name for {stem} in {self.root}")


def check_importable() -> None:
    """RunsError unless a fresh `python -m gemma_emotion` finds this package: installed (pip install .,
    or -e . for a clone), or a clone's folder is the working directory, where `-m` looks first."""
    package_root = Path(__file__).resolve().parent.parent
    if Path.cwd().resolve() == package_root:
        return
    try:
        importlib.metadata.distribution("gemma-emotion")
    except importlib.metadata.PackageNotFoundError:
        raise RunsError(
            f"the training process could not import gemma_emotion from {Path.cwd()}: install the package "
            f"(pip install -e {package_root}) or start the app from {package_root}"
        ) from None


# -- the runner ---------------------------------------------------------------------------------------
class Runner:
    """Owns at most one training process per runs directory (across app processes, through a lock file)."""

    def __init__(self, runs_dir: str | os.PathLike, *, python: str = sys.executable):
        self.registry = RunRegistry(runs_dir)
        self.python = python
        self._proc: subprocess.Popen | None = None

    def start(self, config: TrainConfig) -> RunInfo:
        """Start training `config` in a subprocess; RunnerBusy when a run is already training."""
        config.validate()
        check_importable()
        with self._lock():
            run = self._claim(config, pid=None)
            self._spawn(run)
        return self.registry.get(run.dir.name)

    def resume(self, name: str) -> RunInfo:
        """Continue a stopped or failed run from its last checkpoint in a subprocess; RunnerBusy when a run
        is training, `resume.ResumeError` saying why when this one cannot be resumed."""
        check_importable()
        with self._lock():
            run = self._claim_resume(name, pid=None)
            self._spawn(run, resume=True)
        return self.registry.get(run.dir.name)

    def _spawn(self, run: RunFile, *, resume: bool = False) -> None:
        """The training process of a claimed run; its pid goes into run.json."""
        env = dict(os.environ)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        run_dir = str(run.dir.resolve())
        # --beside-app: on a CPU the process leaves this one a core and precedence (`sharing`).
        command = [self.python, "-m", "gemma_emotion", "train", "--run-dir", run_dir, "--beside-app"]
        if resume:
            command += ["--resume", run_dir]
        with open(run.dir / PROCESS_LOG, "ab") as out:
            # A new session: Ctrl-C in the app's terminal does not reach the training; stop() does.
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        run.update(pid=proc.pid, pid_started=process_start_time(proc.pid))
        self._proc = proc

    def claim(self, config: TrainConfig, pid: int | None) -> RunFile:
        """Create the run folder of a training that process `pid` runs itself (the foreground command);
        RunnerBusy when another run is training in this runs directory."""
        with self._lock():
            return self._claim(config, pid)

    def _claim(self, config: TrainConfig, pid: int | None) -> RunFile:
        current = self.active()
        if current is not None:
            raise RunnerBusy(f"a run is already training: {current.name}")
        return self.registry.create(config, pid=pid)

    def claim_resume(self, name: str, pid: int | None) -> RunFile:
        """Mark a stopped or failed run as running again for process `pid`, which resumes it itself (the
        foreground `train --resume`); RunnerBusy or `resume.ResumeError` when it may not."""
        with self._lock():
            return self._claim_resume(name, pid)

    def _claim_resume(self, name: str, pid: int | None) -> RunFile:
        from gemma_emotion.resume import check_resumable

        current = self.active()
        if current is not None:
            raise RunnerBusy(f"a run is already training: {current.name}")
        info = self.registry.get(name)
        run = RunFile(info.path)
        point = check_resumable(info.name, info.path, info.status, run.record)
        (info.path / STOP_FILE).unlink(missing_ok=True)  # the request that stopped it last time
        resumed: list[ResumeEntry] = [
            *(run.record.get("resumed") or []),
            {"at": utc_now(), "from_step": point.step},
        ]
        run.update(
            status="running",
            phase="starting",
            pid=pid,
            pid_started=process_start_time(pid) if pid else None,
            finished_at=None,
            error=None,
            traceback=[],
            ended=None,
            resumed=resumed,
        )
        return run

    def active(self) -> RunInfo | None:
        """The run now training (started by this runner, another app process, or the CLI), else None."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None  # reaped: a finished child must not linger as a zombie
        for info in self.registry.list():
            if info.status == "running":
                return info
        return None

    def stop(self, timeout: float = 30) -> RunInfo | None:
        """Ask the running training to stop (STOP file + SIGTERM) and wait; the adapter so far is saved.

        A stop at any moment ends the run as "stopped": one sent while the process is still starting
        (Python, imports: before it handles SIGTERM) ends it before it could record anything, and then
        the runner, which asked for the stop, records it."""
        info = self.active()
        if info is None:
            return None
        (info.path / STOP_FILE).touch()
        if info.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(info.pid, signal.SIGTERM)
        run_json = RunFile(info.path)
        started = run_json.record.get("pid_started")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()
            if not process_alive(info.pid, started) and info.pid:
                break
            if info.pid is None and self.registry.get(info.name).status != "running":
                break
            time.sleep(0.1)
        else:
            if info.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(info.pid, signal.SIGKILL)
                if self._proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(5)
            run_json = RunFile(info.path)
            run_json.update(
                status="stopped",
                phase="done",
                finished_at=utc_now(),
                error=f"the training did not stop within {timeout:g} s and was killed; "
                "the adapter may be missing",
            )
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        if info.pid and not process_alive(info.pid, started):
            _record_unrecorded_stop(info.path)
        return self.registry.get(info.name)

    def follow(self, name: str, poll: float = 0.5) -> Iterator[LogRecord]:
        """Yield log records as the training appends them, until the run has ended and all are read."""
        since = 0
        while True:
            records, since = self.registry.read_log(name, since)
            yield from records
            if records:
                continue
            if self.registry.get(name).status != "running":
                records, since = self.registry.read_log(name, since)
                yield from records
                return
            if self._proc is not None:
                self._proc.poll()
            time.sleep(poll)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.registry.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: the in-process check is all there is
            yield
            return
        with open(self.registry.root / LOCK_FILE, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _record_unrecorded_stop(run_dir: Path) -> None:
    """A run whose process ended on our stop without writing how it ended is "stopped"; a half-written
    adapter (killed while saving) is removed, as training never saved one."""
    run_json = RunFile(run_dir)
    if run_json.record.get("status") != "running":
        return
    shutil.rmtree(run_dir / (ADAPTER_DIR + ".tmp"), ignore_errors=True)
    run_json.update(status="stopped", phase="done", finished_at=utc_now())


# -- merge and push -----------------------------------------------------------------------------------
def adapter_base_model(adapter_dir: str | os.PathLike) -> str | None:
    """The model an adapter was trained on: its run's config, else adapter_config.json."""
    adapter_dir = Path(adapter_dir)
    run_json = adapter_dir.parent / RUN_FILE
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return json.loads(run_json.read_text(encoding="utf-8"))["config"]["model"]
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    return None


def merge_adapter(
    adapter_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model: str | None = None,
    dtype: str = "bfloat16",
) -> Path:
    """Write the base model with the adapter merged into its weights (plus the tokenizer) to `out_dir`."""
    import torch

    from gemma_emotion.models import LoadOptions, load_model

    model = model or adapter_base_model(adapter_dir)
    # Merge in fp32 on the CPU, then cast once: merging into bf16 weights rounds twice.
    lm = load_model(model, LoadOptions(device="cpu", dtype="float32", adapter=str(adapter_dir)))
    merged = lm.model.merge_and_unload()
    merged.to(getattr(torch, dtype))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    lm.labels.save(out)  # the merged model answers with the adapter's labels; loading it restores them
    from gemma_emotion.cards import write_merged_card

    write_merged_card(out, adapter_dir, model)  # the adapter's card, for the merged weights
    return out


def push_folder(folder: str | os.PathLike, repo: str, *, private: bool = True, kind: str = "adapter") -> str:
    """Upload an adapter (with its card and its run's reports) or a merged model to a Hub model repo with
    HF_TOKEN from the environment; returns the repo URL (gemma_emotion.hub does the work)."""
    from gemma_emotion import hub

    try:
        if kind == "adapter":
            return hub.push_adapter(folder, repo, private=private)
        return hub.push_merged(folder, repo, private=private)
    except hub.HubError as exc:
        raise PushError(str(exc)) from None
