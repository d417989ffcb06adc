"""One training run, top to bottom: config → data → trainer → log.jsonl, adapter, reports.

`run_training(run_dir)` trains the config recorded in a run folder and records everything there: it loads
the rows with the run's label set (`train_data`; the set is recorded in run.json and saved as labels.json
beside the adapter), the model and the device plan (`plan`), builds the trainer (`trainer`), streams the
loss to log.jsonl through the callback below while honouring stop requests (`stopping`) and saving
checkpoints, saves the adapter, and evaluates base against fine-tuned with the one loaded model (adapter
switched off and on); run.json says why the run ended. With `resume=True` it continues the run from its
last checkpoint instead (`resume` checks that it may, and rewinds the log). It is the body of the training
process that `runs.Runner` starts; `train(config)` runs one in the foreground (the `train` command) and
`resume(run)` continues one (`train --resume`), also under `accelerate launch` / `torchrun`, where the
main process alone writes the run folder (`distributed`). The run folder's records are `runfolder`'s.

Heavy libraries (torch, transformers, TRL, PEFT) are imported inside functions, so that importing this
module stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import shutil
import signal
import sys
import time
import traceback
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion import paths
from gemma_emotion.cards import base_model_id, write_adapter_card
from gemma_emotion.config import TrainConfig
from gemma_emotion.distributed import FollowerRun, any_rank, is_main_process, share_run_dir, world_size
from gemma_emotion.errors import UserError
from gemma_emotion.labels import EMOTIONS, LabelSet
from gemma_emotion.plan import TrainPlan, choose_4bit, estimate_parameters, plan_checkpoints, plan_training
from gemma_emotion.records import TokenisationError, fit_text, text_budget, verify_tokenisation
from gemma_emotion.resume import ResumePoint, check_data, check_device, resume_point, rewind
from gemma_emotion.runfolder import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    LOG_FILE,
    REPORTS_DIR,
    CheckpointState,
    EndReason,
    LogRecord,
    RunEnd,
    RunFile,
    append_log,
    read_log,
    utc_now,
    write_checkpoint_state,
)
from gemma_emotion.runs import RunInfo, Runner, RunRegistry, process_start_time
from gemma_emotion.sharing import yield_cpu_to_app
from gemma_emotion.stopping import StopRequested, StopSignal
from gemma_emotion.train_data import prepare_data, run_labels
from gemma_emotion.trainer import answer_positions_only, build_trainer, total_steps

if TYPE_CHECKING:
    import datasets
    from transformers import TrainerCallback

    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadedModel

ENV_FAULT = "GEMMA_EMOTION_FAULT"  # test hook: "oom_at_step:N" raises an out-of-memory error after step N
TRACEBACK_LINES = 20
DATA_DIR = "data"  # in a run folder: copies of the user files it was trained on
MAX_DATA_COPY_MB = 200  # larger files are recorded (size, sha256, rows) but not copied


# -- one run -------------------------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    runs_dir: str | os.PathLike | None = None,
    *,
    progress_bar: bool = False,
    notice: Callable[[str], None] | None = None,
) -> RunInfo:
    """Run one training in this process (the foreground `train` command); Ctrl-C / SIGTERM stop it cleanly
    (`notice` is told what a first Ctrl-C does).

    Under `accelerate launch` / `torchrun` every process calls this: the main one creates and records the
    run, the others train their share of each batch into it."""
    config.validate()
    runner = Runner(paths.runs_dir(runs_dir))
    run_dir = _claimed_everywhere(lambda: runner.claim(config, pid=os.getpid()).dir)
    return _run_here(run_dir, progress_bar=progress_bar, notice=notice, resume=False)


def resume(
    ref: str,
    runs_dir: str | os.PathLike | None = None,
    *,
    progress_bar: bool = False,
    notice: Callable[[str], None] | None = None,
) -> RunInfo:
    """Continue a stopped or failed run (its name in `runs_dir`, or its folder) from its last checkpoint in
    this process (`train --resume`); `resume.ResumeError` says why when it cannot be."""
    from gemma_emotion.resume import resolve_run_dir

    run_dir = resolve_run_dir(ref, paths.runs_dir(runs_dir))
    runner = Runner(run_dir.parent)
    run_dir = _claimed_everywhere(lambda: runner.claim_resume(run_dir.name, pid=os.getpid()).dir)
    return _run_here(run_dir, progress_bar=progress_bar, notice=notice, resume=True)


def _claimed_everywhere(claim: Callable[[], Path]) -> Path:
    """The run folder the main process claims, known to every process of a distributed launch."""
    if world_size() == 1:
        return claim()
    claimed, refused = None, None
    if is_main_process():
        try:
            claimed = claim()
        except Exception as exc:  # noqa: BLE001 - raised below, once the other ranks know too
            refused = exc
    run_dir = share_run_dir(claimed)
    if run_dir is None:
        raise refused or RuntimeError("the main process could not claim the run")
    return run_dir


def _run_here(
    run_dir: Path, *, progress_bar: bool, notice: Callable[[str], None] | None, resume: bool
) -> RunInfo:
    stop = StopSignal(run_dir, notice=notice)
    with stop.handling(signal.SIGINT, signal.SIGTERM):
        return run_training(
            run_dir, progress_bar=progress_bar and is_main_process(), stop=stop, resume=resume
        )


def run_training(
    run_dir: str | os.PathLike,
    *,
    progress_bar: bool = False,
    stop: StopSignal | None = None,
    beside_app: bool = False,
    resume: bool = False,
) -> RunInfo:
    """Train the run folder's config in this process and record everything in the folder; with `resume`,
    continue from its last checkpoint. `beside_app`: the app started this process and serves requests
    meanwhile; on a CPU it gets a core and precedence (`sharing`).

    Never raises for a failed run (the failure is in run.json); KeyboardInterrupt is recorded, then re-raised.
    """
    run_dir = Path(run_dir)
    run = RunFile(run_dir) if is_main_process() else FollowerRun(run_dir)
    stop = stop or StopSignal(run_dir)
    run.update(
        status="running", phase="loading", pid=os.getpid(), pid_started=process_start_time(os.getpid())
    )
    try:
        stop.check()  # a stop asked for before this process got here (the STOP file)
        config = TrainConfig.from_dict(run.record.get("config") or {})
        config.validate()
        with _quiet_datasets():
            _train_and_evaluate(config, run, stop, progress_bar, beside_app, resume)
    except StopRequested:
        run.update(status="stopped", phase="done", finished_at=utc_now(), ended=_ended("stopped", run_dir))
    except KeyboardInterrupt:
        run.update(
            status="stopped",
            phase="done",
            finished_at=utc_now(),
            error="interrupted",
            ended=_ended("stopped", run_dir),
        )
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends up in run.json, whatever its type
        tail = traceback.format_exception(exc)
        if stop.requested() and not isinstance(exc, (UserError, ValueError, TokenisationError)):
            # What the stop cut short is kept (not as an error: the user asked for the stop).
            run.update(
                status="stopped",
                phase="done",
                finished_at=utc_now(),
                traceback="".join(tail).splitlines()[-TRACEBACK_LINES:],
                ended=_ended("stopped", run_dir),
            )
        else:
            run.update(
                status="failed",
                phase="done",
                finished_at=utc_now(),
                error=describe_error(exc),
                traceback="".join(tail).splitlines()[-TRACEBACK_LINES:],
                ended=_ended("failed", run_dir),
            )
    return RunRegistry(run_dir.parent).get(run_dir.name)


def _ended(reason: EndReason, run_dir: Path, step: int | None = None, **extra: Any) -> RunEnd:
    """run.json's `ended`; the step defaults to the last one logged (None before the first)."""
    if step is None:
        steps = [
            r["step"] for r in read_log(run_dir / LOG_FILE)[0] if r.get("kind") == "train" and "step" in r
        ]
        step = max(steps) if steps else None
    return typing.cast(RunEnd, {"reason": reason, "step": step, **extra})


def _train_and_evaluate(
    config: TrainConfig,
    run: RunFile,
    stop: StopSignal,
    progress_bar: bool,
    beside_app: bool = False,
    resume: bool = False,
) -> None:
    import torch

    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import fingerprint, label_counts
    from gemma_emotion.models import TRAINING_ADAPTER, LoadOptions, load_model, pick_device

    fault_step = parse_fault(os.environ.get(ENV_FAULT))
    device = pick_device()
    shared_cpu = yield_cpu_to_app() if beside_app and device.type == "cpu" else None
    labels = run_labels(config)
    run.update(labels=list(labels.names))
    data = prepare_data(config, run.dir.parent, labels)
    if is_main_process():
        run.update(data_files=keep_data_files(data.files, run.dir))
    data_fingerprint = fingerprint(data.train)
    point: ResumePoint | None = None
    recorded_plan: TrainPlan | None = None
    if resume:
        name = run.dir.name
        point = resume_point(name, run.dir, run.record)
        check_data(name, run.record, data_fingerprint)
        recorded_plan = TrainPlan.from_dict(point.state.get("plan") or run.record.get("plan") or {})
        check_device(name, recorded_plan.device, device.type)
        if is_main_process():
            rewind(run.dir, point.step)
    stop.check()

    if recorded_plan is not None:  # the plan the run started with: another batch would be another run
        four_bit, note = recorded_plan.load_in_4bit, None
    else:
        gpu_gb = (
            torch.cuda.get_device_properties(device).total_memory / 1e9 if device.type == "cuda" else None
        )
        n_params = (
            estimate_parameters(config.model)
            if config.load_in_4bit is None and gpu_gb and gpu_gb < 20
            else None
        )
        four_bit, note = choose_4bit(config, device.type, gpu_gb, n_params)
    lm = load_model(config.model, LoadOptions(load_in_4bit=four_bit))
    stop.check()
    if recorded_plan is not None:
        plan = recorded_plan
    else:
        text_cfg = lm.model.config.get_text_config()
        plan = plan_training(
            config,
            device_type=lm.device.type,
            load_in_4bit=four_bit,
            free_memory_gb=torch.cuda.mem_get_info(lm.device)[0] / 1e9 if lm.device.type == "cuda" else None,
            hidden_size=getattr(text_cfg, "hidden_size", None),
            num_layers=getattr(text_cfg, "num_hidden_layers", None),
            bf16_supported=lm.device.type == "cuda" and torch.cuda.is_bf16_supported(),
        )
        if note:
            plan.notes.insert(0, note)
    if shared_cpu:
        plan.notes.insert(0, shared_cpu)

    budget = text_budget(config, lm.tokenizer, labels)
    # Not Dataset.map: its fingerprint would pickle the tokenizer (seconds to tens of seconds).
    fitted = fit_text(list(data.train["text"]), lm.tokenizer, budget)
    train = data.train.remove_columns("text").add_column("text", fitted)
    validation = data.validation if config.eval_steps else None
    n_steps = total_steps(len(train), plan, config.epochs, world_size())
    if recorded_plan is None:
        plan_checkpoints(plan, config, n_steps)
    run.update(
        model_resolved=lm.spec.name,
        n_train=len(train),
        n_corrections=data.n_corrections,
        data_fingerprint=data_fingerprint,
        label_counts=label_counts(train, labels),
        notes=data.notes + plan.notes,
        plan=dataclasses.asdict(plan),
        total_steps=n_steps,
        world_size=world_size(),
    )

    classifier = Classifier(lm, labels)
    eval_batch = plan.batch_size * 4
    callback = make_callback(
        run.dir / LOG_FILE,
        stop,
        plan.batch_size * plan.grad_accum * world_size(),
        eval_accuracy=(lambda: _score_accuracy(classifier, validation, eval_batch))
        if validation is not None
        else None,
        fault_step=fault_step,
        progress_bar=progress_bar,
        save_every_s=plan.save_every_s,
        checkpoint_state={
            "config": config.to_dict(),
            "plan": dataclasses.asdict(plan),
            "data_fingerprint": data_fingerprint,
        },
        resumed=point.state if point else None,
    )
    _seed_everything(config.seed)  # the LoRA weights' initialisation is the seed's, whatever ran before
    trainer = build_trainer(
        lm, train, config, plan, run.dir / CHECKPOINTS_DIR,
        validation=validation, callbacks=[callback], classifier=classifier, run_name=run.dir.name,
    )  # fmt: skip
    _log_tensorboard_to(trainer, run.dir / "tensorboard")
    verify_tokenisation(trainer.train_dataset, train["text"], train["label"], classifier)
    notes = [trainer.shared_prefix_note] + ([trainer.int8_note] if trainer.int8_note else [])
    run.update(notes=[*run.record.get("notes", []), *notes])
    lm.model, lm.adapter = trainer.model, TRAINING_ADAPTER  # the classifier sees the adapter being trained
    if point is not None and hasattr(trainer, "_total_train_tokens"):
        trainer._total_train_tokens = int(point.state.get("tokens") or 0)  # TRL's count goes on
    stop.check()

    run.update(phase="training")
    # Deferred until the run's adapter and metrics are written: a SIGTERM that lands just after the last
    # step (the runner's stop) would otherwise end the run with neither (seen twice in CI).
    with stop.deferred():
        with answer_positions_only():
            result = trainer.train(resume_from_checkpoint=str(point.folder) if point else None)
        if not is_main_process():
            return  # the main process saves the adapter and evaluates
        adapter_dir = _save_adapter(trainer.model, run.dir, config.model, labels)
        steps = trainer.state.global_step
        train_loss, runtime = result.training_loss, result.metrics.get("train_runtime", 0.0)
        if point is not None:  # the Trainer's figures cover this process's steps; the run's cover them all
            trained = steps - point.step
            before = float(point.state.get("loss_sum") or 0.0), int(point.state.get("loss_steps") or 0)
            train_loss = (before[0] + train_loss * trained) / max(before[1] + trained, 1)
            runtime += float(point.state.get("train_runtime_s") or 0.0)
        metrics = {
            "train_loss": round(train_loss, 6),
            "final_loss": callback.last_loss,
            "steps": steps,
            "epochs": round(trainer.state.epoch or 0.0, 4),
            "train_runtime_s": round(runtime, 2),
            "train_examples_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 3),
            "train_tokens": callback.tokens,
        }
        if callback.stopped or stop.requested():
            run.update(
                status="stopped",
                phase="done",
                finished_at=utc_now(),
                metrics=metrics,
                ended=_ended("stopped", run.dir, steps),
            )
            return
        ended = _end_of_training(trainer, config, run.dir)
        run.update(phase="evaluating", metrics=metrics)
    # A stop that came after the last step's check ends the run here, its adapter and metrics written.
    stop.check()

    # Free the optimizer state before evaluating; the model itself stays loaded for both passes.
    model = trainer.model
    trainer.optimizer = trainer.lr_scheduler = None
    del trainer
    gc.collect()
    if lm.device.type == "cuda":
        torch.cuda.empty_cache()
    lm.model, lm.adapter, lm.labels = model, str(adapter_dir), labels
    model.eval()
    if data.test is not None:
        metrics.update(_evaluate_both(lm, data.test, run, config, progress_bar))
    write_adapter_card(adapter_dir)  # again, now with the reports' results
    run.update(status="completed", phase="done", finished_at=utc_now(), metrics=metrics, ended=ended)
    # The checkpoints served resuming; the adapter is the run's result.
    shutil.rmtree(run.dir / CHECKPOINTS_DIR, ignore_errors=True)


def _end_of_training(trainer: Any, config: TrainConfig, run_dir: Path) -> RunEnd:
    """Completed, or early-stopped: the evaluation it kept and how many came after without improving."""
    from transformers import EarlyStoppingCallback

    state = trainer.state
    early = next(
        (cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EarlyStoppingCallback)), None
    )
    if early is not None and early.early_stopping_patience_counter >= early.early_stopping_patience:
        best = state.best_metric
        return _ended(
            "early_stopped",
            run_dir,
            state.global_step,
            best_step=state.best_global_step,
            best_eval_loss=round(float(best), 6) if best is not None else None,
            patience=int(config.early_stopping_patience or 0),
        )
    return _ended("completed", run_dir, state.global_step)


def _seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _log_tensorboard_to(trainer: Any, folder: Path) -> None:
    """TensorBoard's event files beside the run's other records: its default folder is inside the
    checkpoints' folder, which goes when the run completes."""
    for cb in trainer.callback_handler.callbacks:
        if type(cb).__name__ == "TensorBoardCallback":
            cb.logging_dir = str(folder)


def keep_data_files(files: list[dict], run_dir: Path) -> list[dict]:
    """Copy the user files a run was given into its `data/` folder (an upload's temporary copy goes away
    with the app), and return what run.json records of each: role, name, copy, bytes, sha256, rows."""
    from gemma_emotion.data import file_fingerprint

    kept = []
    for info in files:
        source = Path(info["path"])
        copy = run_dir / DATA_DIR / f"{info['role']}{source.suffix.lower()}"
        record = {
            **info,
            "name": source.name,
            "bytes": source.stat().st_size,
            "sha256": file_fingerprint(source),
        }
        if record["bytes"] <= MAX_DATA_COPY_MB * 1024 * 1024:
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_name(copy.name + ".tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, copy)  # never half a copy under the final name
            record["copy"] = f"{DATA_DIR}/{copy.name}"
        kept.append(record)
    return kept


def _evaluate_both(
    lm: LoadedModel, test: datasets.Dataset, run: RunFile, config: TrainConfig, progress_bar: bool
) -> dict:
    """Base and fine-tuned on the same test rows with the same loaded model; reports written."""
    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import fingerprint
    from gemma_emotion.evaluate import evaluate, write_report

    classifier = Classifier(lm)  # the adapter's label set: base and fine-tuned are asked the same
    meta = {"data": config.data, "split": "test", "test_fingerprint": fingerprint(test), "run": run.dir.name}
    modes = ("score", "generate") if config.eval_generate else ("score",)
    summary: dict = {"n_test": len(test)}
    for mode in modes:
        for which, adapter in (("base", False), ("finetuned", True)):
            bar = _bar(progress_bar, len(test), f"eval {which} ({mode})")
            report = evaluate(
                classifier, test["text"], test["label"], mode=mode, adapter=adapter,
                progress=(lambda done, total, b=bar: b.update(done - b.n)) if bar else None, meta=meta,
            )  # fmt: skip
            if bar:
                bar.close()
            key = which if mode == "score" else f"{which}_generate"
            write_report(report, run.dir / REPORTS_DIR / key)
            m = report.metrics
            summary[key] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "invalid": m["invalid"]}
            for name in ("accuracy", "macro_f1", "invalid"):
                summary[f"{key}_{name}"] = m[name]
    return summary


def _save_adapter(model: Any, run_dir: Path, base_model: str, labels: LabelSet = EMOTIONS) -> Path:
    """Save the LoRA adapter with its label set (labels.json) and its model card; written beside and
    renamed, so a crash never leaves half an adapter. Its config names the base by Hub id
    (`cards.base_model_id`), not by this machine's path."""
    final = run_dir / ADAPTER_DIR
    tmp = run_dir / (ADAPTER_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for peft_config in getattr(model, "peft_config", {}).values():
        peft_config.base_model_name_or_path = base_model_id(base_model)
    model.save_pretrained(str(tmp))
    labels.save(tmp)
    write_adapter_card(tmp, model=base_model)  # replaces PEFT's card, which names the local path
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


# -- helpers of the run --------------------------------------------------------------------------------------
def describe_error(exc: BaseException) -> str:
    """One line for the user; an out-of-memory error says what to change."""
    import torch

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return (
            f"out of memory: {text[:300]}. Try a smaller batch size (with more gradient accumulation), "
            "4-bit loading, or a shorter max length"
        )
    if isinstance(exc, UserError):  # its message is the whole story
        return text[:500]
    return f"{type(exc).__name__}: {text[:500]}"


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    # TRL maps the dataset four times; four progress bars per run say nothing the training bar does not.
    from datasets.utils import logging as ds_logging

    enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            ds_logging.enable_progress_bar()


def _bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ex", file=sys.stderr)


def _score_accuracy(classifier: Classifier, ds: datasets.Dataset, batch_size: int) -> float:
    """Label accuracy on `ds` in score mode, with the model in eval mode for the duration."""
    model = classifier.lm.model
    was_training = model.training
    model.eval()
    classifier.invalidate_cache()  # the weights moved since the last call
    try:
        preds = classifier.predict(ds["text"], "score", batch_size=batch_size)
    finally:
        classifier.invalidate_cache()
        if was_training:
            model.train()
    names = classifier.labels.names
    return round(sum(p.label == names[g] for p, g in zip(preds, ds["label"])) / max(1, len(preds)), 4)


def parse_fault(value: str | None) -> int | None:
    """The step of a simulated out-of-memory error from GEMMA_EMOTION_FAULT=oom_at_step:N."""
    if not value:
        return None
    kind, _, step = value.partition(":")
    if kind != "oom_at_step" or not step.isdigit():
        raise ValueError(f"{ENV_FAULT}={value!r}: expected oom_at_step:N")
    return int(step)


# -- the callback: log.jsonl, checkpoints' state and stop requests ----------------------------------------
def make_callback(
    log_path: Path,
    stop: StopSignal,
    examples_per_step: int,
    *,
    eval_accuracy: Callable[[], float] | None = None,
    fault_step: int | None = None,
    progress_bar: bool = False,
    save_every_s: float | None = None,
    checkpoint_state: CheckpointState | None = None,
    resumed: CheckpointState | None = None,
) -> TrainerCallback:
    """A TrainerCallback that appends one JSON line per logging step, stops when asked, and finishes each
    checkpoint with its `CheckpointState` (`checkpoint_state` plus the run's totals at that step).

    A stop request saves a checkpoint at the step it ends, so that a resume continues from there; so does
    `save_every_s` passing since the last save. Every checkpoint's step is logged, so the loss summed over
    the logged steps is exact at each checkpoint. `resumed` (the state of the checkpoint a resumed run
    continues from) carries the loss, token and time totals on.
    """
    import torch
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class RunCallback(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.time()
            self.last_save = time.monotonic()
            self.stopped = False
            self.last_loss: float | None = None
            self.tokens: int | None = (resumed or {}).get("tokens")
            self.loss_sum = float((resumed or {}).get("loss_sum") or 0.0)
            self.loss_steps = int((resumed or {}).get("loss_steps") or 0)
            self.logged_step = int((resumed or {}).get("step") or 0)
            self.time_before = float((resumed or {}).get("train_runtime_s") or 0.0)
            self.first_step = 0  # the step this process started from (a resumed run's checkpoint)
            self.bar = None

        def _write(self, record: LogRecord) -> None:
            if is_main_process():
                append_log(log_path, record)

        def _base(self, state: Any) -> LogRecord:
            elapsed = max(time.time() - self.started, 1e-9)
            step = state.global_step
            done = step - self.first_step
            record: LogRecord = {
                "step": step,
                "epoch": round(state.epoch or 0.0, 4),
                "max_steps": state.max_steps,
            }
            if done > 0:
                record["examples_per_s"] = round(done * examples_per_step / elapsed, 3)
                record["eta_s"] = round((state.max_steps - step) * elapsed / done, 1)
            record["elapsed_s"] = round(self.time_before + elapsed, 2)
            record["time"] = round(time.time(), 3)
            return record

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.time()
            self.last_save = time.monotonic()
            self.first_step = state.global_step
            if progress_bar and is_main_process():
                from tqdm import tqdm

                self.bar = tqdm(
                    total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                    file=sys.stderr,
                )  # fmt: skip

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
            if fault_step is not None and state.global_step >= fault_step:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory at step {state.global_step} (simulated by {ENV_FAULT})"
                )
            if save_every_s is not None and time.monotonic() - self.last_save >= save_every_s:
                control.should_save = True
            if any_rank(stop.requested()):
                control.should_training_stop = True
                control.should_save = True  # a resume continues from the step it stopped at
                self.stopped = True
            if control.should_save:
                control.should_log = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "num_tokens" in logs:
                self.tokens = int(logs["num_tokens"])
            if "loss" not in logs:  # eval results go out with their accuracy in on_evaluate
                return
            record = self._base(state)
            record["kind"] = "train"
            for key in ("loss", "learning_rate", "grad_norm", "mean_token_accuracy"):
                if logs.get(key) is not None:
                    record[key] = float(logs[key])
            self.last_loss = record["loss"]
            # The logged loss is the mean since the last log: times its steps, the sum over them.
            self.loss_sum += record["loss"] * (state.global_step - self.logged_step)
            self.loss_steps += state.global_step - self.logged_step
            self.logged_step = state.global_step
            self._write(record)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{record['loss']:.4f}")

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            record = self._base(state)
            record["kind"] = "eval"
            if metrics and metrics.get("eval_loss") is not None:
                record["eval_loss"] = float(metrics["eval_loss"])
            if eval_accuracy is not None:
                record["eval_accuracy"] = eval_accuracy()
            self._write(record)
            if stop.requested():
                control.should_training_stop = True
                control.should_save = True
                self.stopped = True

        def on_save(self, args, state, control, **kwargs):
            self.last_save = time.monotonic()
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if checkpoint_state is None or not is_main_process() or not folder.is_dir():
                return
            # Written last: a checkpoint without it was cut short and is never resumed from.
            write_checkpoint_state(
                folder,
                {
                    **checkpoint_state,
                    "step": state.global_step,
                    "loss_sum": self.loss_sum,
                    "loss_steps": self.loss_steps,
                    "tokens": self.tokens,
                    "train_runtime_s": round(self.time_before + time.time() - self.started, 2),
                },
            )

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return RunCallback()
