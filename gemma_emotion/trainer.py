"""The trainer of a run: TRL's SFTTrainer with a PEFT LoRA adapter, and a training loss step that never
waits for the GPU.

`build_trainer` turns a run's rows, config and device plan into an SFTTrainer over token-id records (the
classifier's own prompt encoding, `records.tokenised_records`); LoRA goes on the decoder's projections
only (`lora_config`). `training_arguments` holds every Trainer setting, checkpoints (for resuming), early
stopping and the optional tracker included. `LeanSFTTrainer`'s loss step is TRL's loss without TRL's
per-step reads back to the CPU, and runs the prompt prefix every row shares once per batch
(`shared_prefix`, unless the config turns it off); its training order is fixed by seed and epoch
(`sampling`); `answer_positions_only` makes TRL's fused LM head score only the answer positions on a CPU
too. With `TrainConfig.int8` the frozen base layers under LoRA run in int8 on a CPU (`gemma_emotion.int8`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from gemma_emotion.config import TrainConfig
from gemma_emotion.distributed import world_size
from gemma_emotion.plan import TrainPlan
from gemma_emotion.records import tokenised_records

if TYPE_CHECKING:
    import datasets

    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadedModel

WARMUP_FRACTION = 0.03
KEEP_CHECKPOINTS = 2  # the newest two: the newest may be half written when the process is killed
TRACKIO_PROJECT = "gemma-emotion"


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


def training_arguments(
    config: TrainConfig,
    plan: TrainPlan,
    n_train: int,
    output_dir: str | os.PathLike,
    *,
    evaluate: bool = False,
    run_name: str | None = None,
) -> Any:
    """The SFTConfig of a run: `n_train` rows planned by `plan`, checkpoints into `output_dir`, evaluation
    every `config.eval_steps` when `evaluate`, early stopping on the validation loss when configured."""
    from trl import SFTConfig

    steps = total_steps(n_train, plan, config.epochs, world_size())
    evaluate = bool(evaluate and config.eval_steps)
    early = evaluate and config.early_stopping_patience is not None
    return SFTConfig(
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
        eval_strategy="steps" if evaluate else "no",
        eval_steps=config.eval_steps,
        prediction_loss_only=True,  # otherwise eval makes TRL run a second forward pass for full logits
        # Checkpoints (adapter, optimizer, scheduler, RNG state) for `train --resume`.
        save_strategy="steps",
        save_steps=plan.save_steps,
        save_total_limit=KEEP_CHECKPOINTS,
        # Early stopping: the best evaluation's checkpoint is loaded at the end and its count of evaluations
        # without improvement survives a resume.
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        load_best_model_at_end=early,
        restore_callback_states_from_checkpoint=early,
        report_to=[config.report_to] if config.report_to != "none" else "none",
        project=TRACKIO_PROJECT,
        run_name=run_name,
        disable_tqdm=True,
        # Batches of similar length waste little on padding; the order is seeded (`sampling`).
        train_sampling_strategy="group_by_length",
        dataset_num_proc=None,
    )


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
    run_name: str | None = None,
) -> Any:
    """An SFTTrainer for prompt/completion records of `train`; LoRA is put on `lm.model` by the trainer.
    The prompts are `classifier`'s (one is made for `lm` when not given)."""
    from transformers import EarlyStoppingCallback, PrinterCallback

    from gemma_emotion.classify import Classifier
    from gemma_emotion.shared_prefix import prefix_length

    args = training_arguments(
        config, plan, len(train), output_dir, evaluate=validation is not None, run_name=run_name
    )
    callbacks = list(callbacks or [])
    if args.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
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
    # Auto: on a CPU only. On an H200 (2026-12-02, benchmarks/README.md "Shared prompt prefix") the
    # prefix pass plus the cache expansion cost more than they saved: 270M 458 -> 386 ex/s at batch 128,
    # E4B-shaped bf16 LoRA 189 -> 151 ex/s at batch 64, QLoRA 31.8 -> 28.6 ex/s at batch 32.
    use = config.shared_prefix if config.shared_prefix is not None else lm.device.type == "cpu"
    trainer.shared_prefix, trainer.shared_prefix_note = (
        0,
        (
            "shared prefix off (--no-shared-prefix)"
            if config.shared_prefix is False
            else "shared prefix off: slower on a GPU (--shared-prefix turns it on)"
        ),
    )
    if use:
        rows = trainer.train_dataset
        trainer.shared_prefix, trainer.shared_prefix_note = prefix_length(
            trainer.model, rows["input_ids"], rows["labels"]
        )
    trainer.int8_note = _int8_base(trainer.model, lm, config)
    return trainer


def _int8_base(model: Any, lm: LoadedModel, config: TrainConfig) -> str | None:
    """Frozen base layers in int8 on a CPU (gemma_emotion.int8); the note for the run, None when off."""
    from gemma_emotion import int8

    if lm.device.type != "cpu" or lm.load_in_4bit or not config.int8:
        return None
    return f"frozen base layers in int8: {int8.freeze_base_layers_in_int8(model)} (--int8)"


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
    from gemma_emotion.shared_prefix import fused_outputs as shared_prefix_outputs

    class LeanSFTTrainer(SFTTrainer):
        _lean_stats: torch.Tensor | None = None
        shared_prefix: int = 0  # leading tokens every row shares, run once per batch (build_trainer sets it)

        def _get_train_sampler(self, train_dataset=None):
            from gemma_emotion.sampling import EpochSeededLengthSampler

            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
                return super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return EpochSeededLengthSampler([len(ids) for ids in dataset["input_ids"]], batch, seed)

        def training_step(self, model, inputs, num_items_in_batch=None):
            # The backward pass recomputes the checkpointed layers' attention: outside the forward's kernel
            # order it may pick another kernel, whose saved tensors differ (torch's CheckpointError).
            with attention_kernels(model.device):
                return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not (LEAN_LOSS and model.training):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs["use_cache"] = False
            with self._lean_autocast():  # the attention kernels are training_step's, backward included
                if self.shared_prefix:
                    out = shared_prefix_outputs(model, inputs, self.shared_prefix)
                else:
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
