"""A training run: config → data → TRL SFTTrainer with a PEFT LoRA adapter → log.jsonl, adapter, reports.

Owns the run's config (`TrainConfig`), its data (a stratified sample, balanced labels, corrections added),
the trainer, the callback that streams the loss to `log.jsonl` and honours a stop request, and the
evaluation of base vs fine-tuned afterwards (one loaded model, adapter switched off and on). The device
plan (batch, accumulation, 4-bit, precision) is `plan`'s; the token records are `records`'.
`run_training(run_dir)` is the body of the training process that `runs.Runner` starts; `train(config)`
runs one in the foreground (the `train` command), also under `accelerate launch` / `torchrun`, where the
main process alone writes the run folder. The run folder layout belongs to `runs`.

Heavy libraries (torch, transformers, TRL, PEFT) are imported inside functions: the CLI imports this
module to register its command, and that must stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gemma_emotion import paths
from gemma_emotion.labels import LABELS
from gemma_emotion.plan import BASE_LEARNING_RATE, TrainPlan, choose_4bit, estimate_parameters, plan_training
from gemma_emotion.records import (
    TokenisationError,
    fit_text,
    text_budget,
    tokenised_records,
    verify_tokenisation,
)
from gemma_emotion.runs import (
    ADAPTER_DIR,
    LOG_FILE,
    REPORTS_DIR,
    RunFile,
    RunInfo,
    Runner,
    RunRegistry,
    check_name,
    process_start_time,
    utc_now,
)

if TYPE_CHECKING:
    import datasets
    from transformers import TrainerCallback

    from gemma_emotion.classify import Classifier
    from gemma_emotion.evaluate import Report
    from gemma_emotion.models import LoadedModel

ENV_FAULT = "GEMMA_EMOTION_FAULT"  # test hook: "oom_at_step:N" raises an out-of-memory error after step N
WARMUP_FRACTION = 0.03
TRACEBACK_LINES = 20


# -- several processes (accelerate launch / torchrun) -------------------------------------------------
def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class _FollowerRun(RunFile):
    """Another rank's view of the run: it reads run.json, and only the main process writes it."""

    def update(self, **fields: Any) -> dict:
        self.record.update(fields)
        return self.record


def _share_run_dir(run_dir: Path | None) -> Path | None:
    """The main process's run folder (None: it could not make one), sent to every rank."""
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # joins the process group the launcher described; the Trainer reuses it
    box = [str(run_dir) if run_dir is not None else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0]) if box[0] is not None else None


# -- config -------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything that defines a run; stored in run.json and read back by the training process."""

    model: str = "embedded"  # model spec, as for load_model
    data: str = field(default_factory=paths.default_data)  # Hub id / folder / file
    train_size: int | None = None  # None = all rows; else a stratified seeded sample
    epochs: float = 1.0
    learning_rate: float | None = None  # None = auto_learning_rate(effective batch)
    batch_size: int | None = None  # None = fit the device
    grad_accum: int | None = None
    max_length: int = 256
    seed: int = 0
    eval_steps: int | None = None  # evaluate on a validation slice every N steps (None = off)
    eval_size: int = 200
    test_size: int | None = 500  # test rows evaluated after training (None = all, 0 = no evaluation)
    load_in_4bit: bool | None = None  # None = auto (4-bit on small CUDA cards for big models), never on CPU
    lora_r: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    name: str | None = None  # run name; default: timestamp + model
    use_corrections: bool = False  # add the corrections store's examples to the training data
    corrections_oversample: int = 1
    eval_generate: bool = False  # also evaluate in generate mode after training (slow on a CPU)
    balance: bool = False  # repeat the rarer labels' rows until every label is as frequent as the commonest

    def validate(self) -> None:
        """ValueError with a message for the user when a setting makes no sense."""

        def whole(name: str, value: Any, low: int, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")

        def number(name: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            return float(value)

        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model is empty: name a model (embedded, a Hub id, a folder or a .gguf file)")
        if not isinstance(self.data, str) or not self.data.strip():
            raise ValueError("data is empty: name a dataset (Hub id, folder or file)")
        if not 0 < number("epochs", self.epochs) <= 1000:
            raise ValueError(f"epochs must be more than 0 (and at most 1000), got {self.epochs!r}")
        if self.learning_rate is not None and not 0 < number("learning rate", self.learning_rate) < 1:
            raise ValueError(f"learning rate must be between 0 and 1 (e.g. 2e-4), got {self.learning_rate!r}")
        whole("train size", self.train_size, 1, allow_none=True)
        whole("batch size", self.batch_size, 1, allow_none=True)
        if self.batch_size is not None and self.train_size is not None and self.batch_size > self.train_size:
            raise ValueError(
                f"batch size {self.batch_size} is larger than the {self.train_size} training rows: "
                f"use at most {self.train_size}, or leave it unset to fit the device"
            )
        whole("gradient accumulation", self.grad_accum, 1, allow_none=True)
        whole("max length", self.max_length, 16)
        whole("seed", self.seed, 0)
        whole("eval steps", self.eval_steps, 1, allow_none=True)
        whole("eval size", self.eval_size, 1)
        whole("test size", self.test_size, 0, allow_none=True)
        whole("LoRA r", self.lora_r, 1)
        if not number("LoRA alpha", self.lora_alpha) > 0:
            raise ValueError(f"LoRA alpha must be positive, got {self.lora_alpha!r}")
        if not 0 <= number("LoRA dropout", self.lora_dropout) < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.lora_dropout!r}")
        whole("corrections oversample", self.corrections_oversample, 1)
        if self.load_in_4bit not in (None, True, False):
            raise ValueError(f"load_in_4bit must be true, false or unset, got {self.load_in_4bit!r}")
        if self.load_in_4bit:
            import torch

            if not torch.cuda.is_available():
                raise ValueError("4-bit (QLoRA) training needs a CUDA GPU; none was found")
        if self.name is not None:
            check_name(self.name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config from run.json; keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# -- data ---------------------------------------------------------------------------------------------
@dataclass
class TrainData:
    """The rows of one run: training (with corrections), validation slice, test slice."""

    train: datasets.Dataset
    validation: datasets.Dataset | None
    test: datasets.Dataset | None
    n_corrections: int = 0
    notes: list[str] = field(default_factory=list)


def prepare_data(config: TrainConfig, runs_dir: str | os.PathLike) -> TrainData:
    """Load and sample the splits, and fold in the corrections when the config asks for them."""
    import datasets

    from gemma_emotion.data import DataError, load_split, resolve_source, sample

    notes: list[str] = []
    full = load_split(config.data, "train")
    validation = test = None
    try:
        same_file = resolve_source(config.data, "train") == resolve_source(config.data, "test")
    except DataError:
        same_file = False
    if same_file or _is_single_file(config.data):
        # One file for all splits: hold part of it out, or the test would score the training rows.
        held = max(1, min(len(full) // 10, 2000))
        order = sample(full, held, stratify=True, seed=config.seed + 1)
        held_texts = set(order["text"])
        full = full.filter(lambda row: row["text"] not in held_texts)
        validation = test = order
        notes.append(f"{config.data} is one file: {held} rows held out for evaluation")
    else:
        validation = _optional_split(config.data, "validation")
        test = _optional_split(config.data, "test")
        if test is None and validation is not None:
            test = validation
            notes.append("no test split: the validation split is used for the final evaluation")
    if config.train_size is not None and config.train_size > len(full):
        notes.append(f"train size {config.train_size} is more than the {len(full)} rows there are: using all")
    train = sample(full, config.train_size, stratify=True, seed=config.seed)
    if config.balance:
        before = len(train)
        train = balanced(train, config.seed)
        notes.append(
            f"labels balanced: {before} rows became {len(train)} ({len(train) // len(LABELS)} a label)"
        )

    n_corrections = 0
    if config.use_corrections:
        rows = _correction_rows(runs_dir, notes)
        n_corrections = len(rows)
        if rows:
            from gemma_emotion.corrections import oversample

            corrected = {r["text"] for r in rows}
            before = len(train)
            train = train.filter(lambda row: row["text"] not in corrected)
            if before - len(train):
                notes.append(f"{before - len(train)} training rows replaced by their correction")
            extra = datasets.Dataset.from_list(oversample(rows, config.corrections_oversample))
            train = datasets.concatenate_datasets([train, extra.cast(train.features)])
            if test is not None:
                # A corrected text trained on must not be scored as unseen.
                n_test = len(test)
                test = test.filter(lambda row: row["text"] not in corrected)
                if n_test - len(test):
                    notes.append(f"{n_test - len(test)} test rows left out: they are corrections trained on")
    if len(train) == 0:
        raise ValueError("no training rows")

    if validation is not None and config.eval_steps:
        validation = sample(validation, config.eval_size, stratify=True, seed=config.seed)
    elif config.eval_steps:
        notes.append("no validation split: no evaluation during training")
    if test is not None:
        test = (
            sample(test, config.test_size, stratify=True, seed=config.seed) if config.test_size != 0 else None
        )
    return TrainData(train, validation, test, n_corrections, notes)


def balanced(ds: datasets.Dataset, seed: int) -> datasets.Dataset:
    """Every label as often as the commonest: rarer labels' rows repeated whole, the remainder a seeded
    sample of them, all in a seeded order. For macro-F1, which weighs the rare labels (surprise: 3.6 % of
    the training split) as much as the common ones."""
    import random

    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(ds["label"]):
        by_label.setdefault(int(y), []).append(i)
    target = max(len(rows) for rows in by_label.values())
    rng = random.Random(seed)
    order: list[int] = []
    for _, rows in sorted(by_label.items()):
        whole, rest = divmod(target, len(rows))
        order += rows * whole + rng.sample(rows, rest)
    rng.shuffle(order)
    return ds.select(order)


def _is_single_file(source: str) -> bool:
    return Path(source).expanduser().is_file()


def _optional_split(source: str, split: str) -> datasets.Dataset | None:
    from gemma_emotion.data import DataError, load_split, resolve_source

    try:
        resolve_source(source, split)
    except DataError:
        return None
    return load_split(source, split)


def _correction_rows(runs_dir: str | os.PathLike, notes: list[str]) -> list[dict]:
    from gemma_emotion.corrections import CorrectionStore, training_examples

    try:
        store = CorrectionStore(runs_dir, create=False)
    except FileNotFoundError:
        notes.append(f"no corrections database in {runs_dir}: trained without corrections")
        return []
    return training_examples(store)


# -- stopping -----------------------------------------------------------------------------------------
class StopRequested(BaseException):  # noqa: N818 - a control signal like KeyboardInterrupt, not an error
    """Raised where a stop cannot wait for the end of a training step (loading, evaluating).

    A BaseException so that library code catching `Exception` does not swallow it."""


class StopSignal:
    """A stop request: the run folder's STOP file, SIGTERM, or Ctrl-C (a second Ctrl-C interrupts hard).

    While training, a request only sets a flag that the callback reads after each step, so the adapter
    is saved whole; in the other phases it raises StopRequested at once.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None):
        self.file = Path(run_dir) / "STOP" if run_dir else None
        self._event = threading.Event()
        self._interruptible = True

    def request(self) -> None:
        self._event.set()

    def requested(self) -> bool:
        if not self._event.is_set() and self.file is not None and self.file.exists():
            self._event.set()
        return self._event.is_set()

    def check(self) -> None:
        if self.requested():
            raise StopRequested()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block a signal only sets the flag."""
        self._interruptible = False
        try:
            yield
        finally:
            self._interruptible = True

    @contextlib.contextmanager
    def handling(self, *signums: int) -> Iterator[None]:
        """Route these signals to the stop request (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in signums}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._event.is_set():
            raise KeyboardInterrupt
        self.request()
        if signum == signal.SIGINT:
            print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr, flush=True)
        if self._interruptible:
            raise StopRequested()


def parse_fault(value: str | None) -> int | None:
    """The step of a simulated out-of-memory error from GEMMA_EMOTION_FAULT=oom_at_step:N."""
    if not value:
        return None
    kind, _, step = value.partition(":")
    if kind != "oom_at_step" or not step.isdigit():
        raise ValueError(f"{ENV_FAULT}={value!r}: expected oom_at_step:N")
    return int(step)


# -- the callback -------------------------------------------------------------------------------------
def make_callback(
    log_path: Path,
    stop: StopSignal,
    examples_per_step: int,
    *,
    eval_accuracy: Callable[[], float] | None = None,
    fault_step: int | None = None,
    progress_bar: bool = False,
) -> TrainerCallback:
    """A TrainerCallback that appends one JSON line per logging step and stops when asked."""
    import torch
    from transformers import TrainerCallback

    class RunCallback(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.time()
            self.stopped = False
            self.last_loss: float | None = None
            self.tokens: int | None = None
            self.bar = None

        def _write(self, record: dict) -> None:
            if not is_main_process():
                return
            # One write per line in append mode: a reader sees whole lines or an unterminated tail.
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()

        def _base(self, state: Any) -> dict:
            elapsed = max(time.time() - self.started, 1e-9)
            step = state.global_step
            record = {"step": step, "epoch": round(state.epoch or 0.0, 4), "max_steps": state.max_steps}
            if step:
                record["examples_per_s"] = round(step * examples_per_step / elapsed, 3)
                record["eta_s"] = round((state.max_steps - step) * elapsed / step, 1)
            record["elapsed_s"] = round(elapsed, 2)
            record["time"] = round(time.time(), 3)
            return record

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.time()
            if progress_bar and is_main_process():
                from tqdm import tqdm

                self.bar = tqdm(total=state.max_steps, desc="training", unit="step", file=sys.stderr)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
            if fault_step is not None and state.global_step >= fault_step:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory at step {state.global_step} (simulated by {ENV_FAULT})"
                )
            if _any_rank(stop.requested()):
                control.should_training_stop = True
                self.stopped = True
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
                self.stopped = True

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return RunCallback()


def _any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one: ranks that stopped at different steps would hang."""
    if world_size() == 1:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# -- the trainer --------------------------------------------------------------------------------------
def lora_config(model: Any, config: TrainConfig) -> Any:
    """LoRA on the decoder's linear projections only (full names: no tower, nothing in modules_to_save)."""
    from peft import LoraConfig

    from gemma_emotion.models import lora_target_modules

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_target_modules(model),
        bias="none",
        task_type="CAUSAL_LM",
    )


def total_steps(n_train: int, plan: TrainPlan, epochs: float, world: int = 1) -> int:
    per_epoch = max(1, math.ceil(n_train / (plan.batch_size * world)) // plan.grad_accum)
    return max(1, math.ceil(per_epoch * epochs))


def build_trainer(
    lm: LoadedModel,
    train: datasets.Dataset,
    config: TrainConfig,
    plan: TrainPlan,
    output_dir: str | os.PathLike,
    *,
    validation: datasets.Dataset | None = None,
    callbacks: list | None = None,
    classifier: Classifier | None = None,
) -> Any:
    """An SFTTrainer for prompt/completion records of `train`; LoRA is put on `lm.model` by the trainer.
    The prompts are `classifier`'s (one is made for `lm` when not given)."""
    from transformers import PrinterCallback
    from trl import SFTConfig

    from gemma_emotion.classify import Classifier

    steps = total_steps(len(train), plan, config.epochs, world_size())
    args = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=config.epochs,
        learning_rate=plan.learning_rate,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.grad_accum,
        lr_scheduler_type="cosine",
        # transformers 5 has no warmup_ratio; an int keeps the meaning plain.
        warmup_steps=int(round(WARMUP_FRACTION * steps)),
        max_length=config.max_length,
        # Fewer distinct batch shapes on a GPU, so kernels and their setups are reused across steps.
        pad_to_multiple_of=8 if plan.device == "cuda" else None,
        seed=config.seed,
        data_seed=config.seed,
        bf16=plan.bf16,
        fp16=plan.fp16,
        use_cpu=plan.device != "cuda",
        optim=plan.optim,
        gradient_checkpointing=plan.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if plan.gradient_checkpointing else None,
        # Every step for small runs, about 200 points for large ones.
        logging_steps=max(1, steps // 200),
        logging_first_step=True,
        eval_strategy="steps" if validation is not None and config.eval_steps else "no",
        eval_steps=config.eval_steps,
        prediction_loss_only=True,  # otherwise eval makes TRL run a second forward pass for full logits
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        # Batches of similar length waste little on padding; the order stays seeded.
        train_sampling_strategy="group_by_length",
        dataset_num_proc=None,
    )
    classifier = classifier or Classifier(lm)
    trainer = _lean_trainer_class()(
        model=lm.model,
        args=args,
        train_dataset=tokenised_records(list(train["text"]), list(train["label"]), classifier),
        eval_dataset=tokenised_records(list(validation["text"]), list(validation["label"]), classifier)
        if validation is not None
        else None,
        processing_class=lm.tokenizer,
        peft_config=lora_config(lm.model, config),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; log.jsonl holds them
    return trainer


LEAN_LOSS = True  # benchmarks switch it off to measure TRL's own loss step


def _lean_trainer_class() -> type:
    """SFTTrainer with a training loss step that never waits for the GPU.

    TRL's `compute_loss` reads three numbers back to the CPU on every step (entropy, token accuracy, token
    count) so that it can log them. Each read drains the GPU's queue, and a small model's step is mostly
    the CPU launching kernels, so the GPU then idles while the next step is launched. Here the token
    accuracy and count add up on the device and are read once per logging step; entropy is not logged.
    The loss is TRL's: the fused LM head's log-probabilities of the answer tokens, averaged.
    """
    import torch
    from trl import SFTTrainer

    from gemma_emotion.models import attention_kernels

    class LeanSFTTrainer(SFTTrainer):
        _lean_stats: torch.Tensor | None = None

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not (LEAN_LOSS and model.training):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            with self._lean_autocast(), attention_kernels(model.device):
                out = model(**inputs, fused_lm_head=True)
            n_items = out.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = -out.log_probs.sum() / torch.as_tensor(n_items).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients
            stats = torch.stack(
                [out.is_top1.sum(), out.label_mask.sum(), inputs["attention_mask"].sum()]
            ).double()
            self._lean_stats = stats if self._lean_stats is None else self._lean_stats + stats
            return (loss, out) if return_outputs else loss

        def _lean_autocast(self) -> contextlib.AbstractContextManager:
            # PEFT keeps LoRA weights in fp32 over a bf16 model and casts each layer's input up to match:
            # without autocast every adapter product runs in fp32 on fp32 copies of the activations (most
            # of a 270M model's step on an H200). Autocast runs them in bf16; fp32 stays the master copy.
            # Under autocast PEFT's cast of the input to fp32 is undone before the product anyway, so it is
            # switched off: the same bf16 product without two copies of each adapted layer's input.
            if not (self.args.bf16 and self.model.device.type == "cuda"):
                return contextlib.nullcontext()
            from peft.helpers import disable_input_dtype_casting

            stack = contextlib.ExitStack()
            stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
            stack.enter_context(disable_input_dtype_casting(self.model))
            return stack

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if self._lean_stats is not None and "loss" in logs:
                correct, valid, tokens = self.accelerator.reduce(self._lean_stats, "sum").tolist()
                self._lean_stats = None
                self._total_train_tokens += int(tokens)
                self._metrics["train"]["mean_token_accuracy"] = [correct / valid if valid else 0.0]
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            super().log(logs, start_time)

    return LeanSFTTrainer


@contextlib.contextmanager
def answer_positions_only() -> Iterator[None]:
    """Make TRL's fused LM head score only the trained (answer) positions on a CPU too.

    TRL projects through the LM head only where the label is not -100 on CUDA, but at every position
    elsewhere (fixed shapes for Neuron's compiler). A CPU has no such need, and with a 262k vocabulary the
    extra positions cost a lot: Gemma 3 270M on 64 emotion rows, batch 8, 2 shared CPU cores, took
    157-300 s scoring every position and 32-48 s scoring the answers, to the same final loss. Loss and
    gradients are identical (tested). If TRL renames the switch this does nothing but slow training down.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


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
    return round(sum(p.label == LABELS[g] for p, g in zip(preds, ds["label"])) / max(1, len(preds)), 4)


# -- one run ------------------------------------------------------------------------------------------
def describe_error(exc: BaseException) -> str:
    """One line for the user; an out-of-memory error says what to change."""
    import torch

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return (
            f"out of memory: {text[:300]}. Try a smaller batch size (with more gradient accumulation), "
            "4-bit loading, or a shorter max length"
        )
    return f"{type(exc).__name__}: {text[:500]}"


def run_training(
    run_dir: str | os.PathLike, *, progress_bar: bool = False, stop: StopSignal | None = None
) -> RunInfo:
    """Train the run folder's config in this process and record everything in the folder.

    Never raises for a failed run (the failure is in run.json); KeyboardInterrupt is recorded, then re-raised.
    """
    run_dir = Path(run_dir)
    run = RunFile(run_dir) if is_main_process() else _FollowerRun(run_dir)
    stop = stop or StopSignal(run_dir)
    run.update(
        status="running", phase="loading", pid=os.getpid(), pid_started=process_start_time(os.getpid())
    )
    try:
        config = TrainConfig.from_dict(run.record.get("config") or {})
        config.validate()
        with _quiet_datasets():
            _train_and_evaluate(config, run, stop, progress_bar)
    except StopRequested:
        run.update(status="stopped", phase="done", finished_at=utc_now())
    except KeyboardInterrupt:
        run.update(status="stopped", phase="done", finished_at=utc_now(), error="interrupted")
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends up in run.json, whatever its type
        if stop.requested() and not isinstance(exc, (ValueError, TokenisationError)):
            run.update(status="stopped", phase="done", finished_at=utc_now())
        else:
            tail = traceback.format_exception(exc)
            run.update(
                status="failed",
                phase="done",
                finished_at=utc_now(),
                error=describe_error(exc),
                traceback="".join(tail).splitlines()[-TRACEBACK_LINES:],
            )
    finally:
        with contextlib.suppress(OSError):  # the Trainer's output folder; empty, as nothing is saved there
            (run_dir / "trainer").rmdir()
    return RunRegistry(run_dir.parent).get(run_dir.name)


def _train_and_evaluate(config: TrainConfig, run: RunFile, stop: StopSignal, progress_bar: bool) -> None:
    import torch

    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import fingerprint, label_counts
    from gemma_emotion.models import TRAINING_ADAPTER, LoadOptions, load_model, pick_device

    fault_step = parse_fault(os.environ.get(ENV_FAULT))
    device = pick_device()
    data = prepare_data(config, run.dir.parent)
    stop.check()

    gpu_gb = torch.cuda.get_device_properties(device).total_memory / 1e9 if device.type == "cuda" else None
    n_params = (
        estimate_parameters(config.model) if config.load_in_4bit is None and gpu_gb and gpu_gb < 20 else None
    )
    four_bit, note = choose_4bit(config, device.type, gpu_gb, n_params)
    lm = load_model(config.model, LoadOptions(load_in_4bit=four_bit))
    stop.check()
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

    budget = text_budget(config, lm.tokenizer)
    # Not Dataset.map: its fingerprint would pickle the tokenizer (seconds to tens of seconds).
    fitted = fit_text(list(data.train["text"]), lm.tokenizer, budget)
    train = data.train.remove_columns("text").add_column("text", fitted)
    validation = data.validation if config.eval_steps else None
    run.update(
        model_resolved=lm.spec.name,
        n_train=len(train),
        n_corrections=data.n_corrections,
        data_fingerprint=fingerprint(data.train),
        label_counts=label_counts(train),
        notes=data.notes + plan.notes,
        plan=dataclasses.asdict(plan),
        total_steps=total_steps(len(train), plan, config.epochs, world_size()),
        world_size=world_size(),
    )

    classifier = Classifier(lm)
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
    )
    trainer = build_trainer(
        lm, train, config, plan, run.dir / "trainer",
        validation=validation, callbacks=[callback], classifier=classifier,
    )  # fmt: skip
    verify_tokenisation(trainer.train_dataset, train["text"], train["label"], classifier)
    lm.model, lm.adapter = trainer.model, TRAINING_ADAPTER  # the classifier sees the adapter being trained
    stop.check()

    run.update(phase="training")
    with stop.deferred(), answer_positions_only():
        result = trainer.train()
    if not is_main_process():
        return  # the main process saves the adapter and evaluates
    adapter_dir = _save_adapter(trainer.model, run.dir)
    metrics = {
        "train_loss": round(result.training_loss, 6),
        "final_loss": callback.last_loss,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 2),
        "train_examples_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 3),
        "train_tokens": callback.tokens,
    }
    if callback.stopped or stop.requested():
        run.update(status="stopped", phase="done", finished_at=utc_now(), metrics=metrics)
        return

    # Free the optimizer state before evaluating; the model itself stays loaded for both passes.
    model = trainer.model
    trainer.optimizer = trainer.lr_scheduler = None
    del trainer
    gc.collect()
    if lm.device.type == "cuda":
        torch.cuda.empty_cache()
    lm.model, lm.adapter = model, str(adapter_dir)
    model.eval()
    run.update(phase="evaluating", metrics=metrics)
    if data.test is not None:
        metrics.update(_evaluate_both(lm, data.test, run, config, progress_bar))
    run.update(status="completed", phase="done", finished_at=utc_now(), metrics=metrics)


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


def _save_adapter(model: Any, run_dir: Path) -> Path:
    """Save the LoRA adapter; written beside and renamed, so a crash never leaves half an adapter."""
    final = run_dir / ADAPTER_DIR
    tmp = run_dir / (ADAPTER_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _evaluate_both(
    lm: LoadedModel, test: datasets.Dataset, run: RunFile, config: TrainConfig, progress_bar: bool
) -> dict:
    """Base and fine-tuned on the same test rows with the same loaded model; reports written."""
    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import fingerprint
    from gemma_emotion.evaluate import evaluate, write_report

    classifier = Classifier(lm)
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


def _bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ex", file=sys.stderr)


def train(
    config: TrainConfig, runs_dir: str | os.PathLike | None = None, *, progress_bar: bool = False
) -> RunInfo:
    """Run one training in this process (the foreground `train` command); Ctrl-C / SIGTERM stop it cleanly.

    Under `accelerate launch` / `torchrun` every process calls this: the main one creates and records the
    run, the others train their share of each batch into it."""
    config.validate()
    runner = Runner(paths.runs_dir(runs_dir))
    if world_size() == 1:
        run_dir = runner.claim(config, pid=os.getpid()).dir
    else:
        claimed, refused = None, None
        if is_main_process():
            try:
                claimed = runner.claim(config, pid=os.getpid()).dir
            except Exception as exc:  # noqa: BLE001 - raised below, once the other ranks know too
                refused = exc
        run_dir = _share_run_dir(claimed)
        if run_dir is None:
            raise refused or RuntimeError("the main process could not create the run")
    stop = StopSignal(run_dir)
    with stop.handling(signal.SIGINT, signal.SIGTERM):
        return run_training(run_dir, progress_bar=progress_bar and is_main_process(), stop=stop)


# -- CLI ----------------------------------------------------------------------------------------------
def config_from_args(args: argparse.Namespace) -> TrainConfig:
    given = {
        "model": args.model or paths.default_model(),
        "data": args.data or paths.default_data(),
        "train_size": args.train_size,
        "epochs": args.epochs,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "max_length": args.max_length,
        "seed": args.seed,
        "eval_steps": args.eval_steps,
        "eval_size": args.eval_size,
        "test_size": args.test_size,
        "load_in_4bit": True if args.load_in_4bit else None,
        "name": args.name,
        "use_corrections": args.use_corrections,
        "corrections_oversample": args.oversample,
        "eval_generate": args.eval_generate,
        "balance": args.balance,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
        "lora_dropout": args.lora_dropout,
    }
    defaults = TrainConfig()
    # A flag left out keeps the dataclass default (None is a real value for some fields).
    kwargs = {k: v for k, v in given.items() if v is not None or getattr(defaults, k) is None}
    if args.test_size is None:
        kwargs.pop("test_size", None)
    return TrainConfig(**kwargs)


def format_comparison(reports: dict[str, Report]) -> str:
    """The before/after table printed at the end of `train`."""
    from gemma_emotion.evaluate import compare_reports

    if "base" not in reports or "finetuned" not in reports:
        return ""
    table = compare_reports(reports["base"], reports["finetuned"])
    lines = [f"{'':<10}{'base':>10}{'finetuned':>11}{'change':>9}"]
    for key, row in table["metrics"].items():
        if key == "invalid":
            lines.append(f"{key:<10}{row['base']:>10}{row['finetuned']:>11}{row['delta']:>+9}")
        else:
            lines.append(f"{key:<10}{row['base']:>10.4f}{row['finetuned']:>11.4f}{row['delta']:>+9.4f}")
    lines.append("f1 per label")
    for name, row in table["per_class_f1"].items():
        lines.append(
            f"  {name:<8}{row['base']:>10.3f}{row['finetuned']:>11.3f}{row['finetuned'] - row['base']:>+9.3f}"
        )
    if table["changed_predictions"] is not None:
        lines.append(f"{table['changed_predictions']} of {reports['base'].metrics['n']} predictions changed")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    if args.run_dir:  # the worker started by Runner.start
        stop = StopSignal(args.run_dir)
        with stop.handling(signal.SIGTERM, signal.SIGINT):
            info = run_training(args.run_dir, stop=stop)
        return {"completed": 0, "stopped": 0}.get(info.status, 1)

    from gemma_emotion.cli import UserError
    from gemma_emotion.runs import RunnerBusy

    config = config_from_args(args)
    try:
        info = train(config, getattr(args, "runs_dir", None), progress_bar=True)
    except RunnerBusy as exc:
        raise UserError(str(exc)) from None
    if not is_main_process():
        return 0
    print(f"run {info.name}: {info.status}  ({info.path})")
    for note in info.notes or []:
        print(f"  note: {note}")
    if info.error:
        print(f"  {info.error}", file=sys.stderr)
    if info.adapter_dir:
        print(f"adapter: {info.adapter_dir}")
    table = format_comparison(RunRegistry(info.path.parent).reports(info.name))
    if table:
        print(table)
    return {"completed": 0, "stopped": 130}.get(info.status, 1)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `train`: a LoRA run in the foreground with a progress bar and the before/after table."""
    d = TrainConfig()
    p = subparsers.add_parser(
        "train", help="fine-tune a LoRA adapter (a run in runs/)",
        description="Fine-tune with LoRA/QLoRA (TRL + PEFT), then evaluate base vs fine-tuned. "
        "Ctrl-C stops after the current step and keeps the adapter trained so far.",
    )  # fmt: skip
    p.add_argument("--model", default=None, help=f"model spec (default: ${paths.ENV_MODEL} or embedded)")
    p.add_argument(
        "--data", default=None, help=f"Hub id, folder or file (default: ${paths.ENV_DATA} or dair-ai/emotion)"
    )
    p.add_argument("--train-size", type=int, default=None, help="train on N rows, a stratified seeded sample")
    p.add_argument("--epochs", type=float, default=None, help=f"default {d.epochs:g}")
    p.add_argument(
        "--lr", type=float, default=None,
        help=f"learning rate (default {BASE_LEARNING_RATE:g} x batch / 16 above a batch of 16, at most 1e-3)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=None, help="default: fit the device (8 on a CPU)")
    p.add_argument("--grad-accum", type=int, default=None, help="gradient accumulation steps (default: fit)")
    p.add_argument(
        "--max-length", type=int, default=None, help=f"tokens per example (default {d.max_length})"
    )
    p.add_argument("--seed", type=int, default=None, help=f"default {d.seed}")
    p.add_argument(
        "--eval-steps", type=int, default=None, help="evaluate on a validation slice every N steps"
    )
    p.add_argument(
        "--eval-size",
        type=int,
        default=None,
        help=f"validation rows for --eval-steps (default {d.eval_size})",
    )
    p.add_argument("--test-size", type=int, default=None,
                   help=f"test rows evaluated after training (default {d.test_size}; 0: none)")  # fmt: skip
    p.add_argument(
        "--eval-generate", action="store_true", help="also evaluate in generate mode (slow on a CPU)"
    )
    p.add_argument("--load-in-4bit", action="store_true", help="QLoRA: 4-bit NF4 base weights (CUDA)")
    p.add_argument("--lora-r", type=int, default=None, help=f"LoRA rank (default {d.lora_r})")
    p.add_argument("--lora-alpha", type=float, default=None, help=f"LoRA alpha (default {d.lora_alpha})")
    p.add_argument("--lora-dropout", type=float, default=None, help=f"default {d.lora_dropout}")
    p.add_argument(
        "--balance", action="store_true", help="repeat rarer labels' rows so every label is equally frequent"
    )
    p.add_argument(
        "--runs-dir", default=argparse.SUPPRESS, help=f"runs directory (default: ${paths.ENV_RUNS} or ./runs)"
    )
    p.add_argument("--name", default=None, help="run name (default: timestamp + model)")
    p.add_argument("--use-corrections", action="store_true", help="add the corrections store's examples")
    p.add_argument("--oversample", type=int, default=None, help="copies of each correction (default 1)")
    p.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)  # the worker: train this prepared run
    p.set_defaults(func=cmd_train)
