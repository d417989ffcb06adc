"""The device plan of a training run: what a config's unset settings become on the device found.

The one place where device-dependent defaults are decided, for the command line and the app alike:
`device_defaults` fills the settings that must be known before a run starts (the training rows on a CPU),
`plan_training` and `choose_4bit` the rest once the model is loaded: batch size and gradient accumulation
fitted to the free GPU memory, bf16 or fp16, 4-bit (QLoRA) on small cards, gradient checkpointing when
activations would not fit, the optimizer, and the learning rate for the batch; `plan_checkpoints` how
often the run saves a checkpoint once its length is known. Explicit settings always win; each decision
the plan makes is written in its notes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gemma_emotion.config import TrainConfig

CPU_BATCH = 8
CPU_TRAIN_ROWS = 1000  # all 16,000 rows of dair-ai/emotion take hours on a CPU; 1,000 take minutes
TARGET_EFFECTIVE_BATCH = 16  # the published recipe's batch; GPU plans accumulate up to it
# A small model's training step is mostly the CPU launching kernels, whatever the batch: on an H200 the
# embedded model trained at 135 examples/s in batches of 32 and 595 in batches of 256
# (benchmarks/profile_gpu.py). Memory bounds the batch below this for larger models.
MAX_GPU_BATCH = 128
BASE_LEARNING_RATE = 2e-4  # up to the recipe's batch of 16; larger batches scale it, up to the max below
# Chosen on the validation split (benchmarks/README.md, "learning rate"): at batch 128, 1e-3 scored 93.75 %
# against 93.25 % for 5.7e-4 (sqrt scaling) and 91.95 % for 3e-4.
MAX_AUTO_LEARNING_RATE = 1e-3
CHECKPOINTS_PER_RUN = 10  # a checkpoint about every tenth of the run
# On a GPU a tenth of a long run can be an hour of work; a checkpoint at least once a minute bounds what a
# crash loses. A LoRA checkpoint (adapter and its optimizer state) takes a second or less to write.
GPU_CHECKPOINT_EVERY_S = 60.0


@dataclass
class TrainPlan:
    """How a config runs on this device: what the `None` settings became, and why."""

    device: str
    batch_size: int
    grad_accum: int
    load_in_4bit: bool
    bf16: bool
    fp16: bool
    gradient_checkpointing: bool
    optim: str
    notes: list[str] = field(default_factory=list)
    learning_rate: float = BASE_LEARNING_RATE
    save_steps: int = 1  # a checkpoint every this many steps (`plan_checkpoints`)
    save_every_s: float | None = None  # and one whenever this long has passed since the last (GPU)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainPlan:
        """The plan recorded in run.json; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def device_defaults(device_type: str | None = None) -> dict[str, Any]:
    """Config values that depend on the device and must be known before a run starts: on a CPU, 1,000
    training rows. For the options a user left unset, on this machine's device unless one is named."""
    if device_type is None:
        device_type = _device_type()
    return {} if device_type == "cuda" else {"train_size": CPU_TRAIN_ROWS}


def _device_type() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def auto_learning_rate(effective_batch: int) -> float:
    """The recipe's 2e-4 up to a batch of 16, in proportion to the batch above it, at most 1e-3."""
    scaled = BASE_LEARNING_RATE * max(effective_batch, TARGET_EFFECTIVE_BATCH) / TARGET_EFFECTIVE_BATCH
    return min(scaled, MAX_AUTO_LEARNING_RATE)


def choose_4bit(
    config: TrainConfig, device_type: str, gpu_memory_gb: float | None, n_params: int | None
) -> tuple[bool, str | None]:
    """4-bit when asked, or (auto) on a CUDA card under 20 GB whose bf16 weights would fill 40 % of it."""
    if config.load_in_4bit is not None:
        return bool(config.load_in_4bit), None
    if device_type != "cuda" or not gpu_memory_gb or gpu_memory_gb >= 20 or not n_params:
        return False, None
    if n_params * 2 / 1e9 > 0.4 * gpu_memory_gb:
        return True, f"4-bit (QLoRA): {n_params / 1e9:.1f} B parameters on a {gpu_memory_gb:.0f} GB card"
    return False, None


def plan_training(
    config: TrainConfig,
    *,
    device_type: str,
    load_in_4bit: bool = False,
    free_memory_gb: float | None = None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    bf16_supported: bool = True,
) -> TrainPlan:
    """Batch size, accumulation, precision and optimizer for the device; explicit settings win."""
    notes: list[str] = []
    if device_type != "cuda":
        batch = config.batch_size or CPU_BATCH
        accum = config.grad_accum or 1
        plan = TrainPlan(device_type, batch, accum, False, False, False, False, "adamw_torch", notes)
        return _with_learning_rate(plan, config)

    checkpointing = load_in_4bit
    batch = config.batch_size
    if batch is None:
        batch = _fit_batch(config, free_memory_gb, hidden_size, num_layers, checkpointing)
        if batch < 4 and not checkpointing:
            checkpointing = True
            batch = _fit_batch(config, free_memory_gb, hidden_size, num_layers, checkpointing)
            notes.append("gradient checkpointing: activations would not fit otherwise")
        accum = config.grad_accum or max(1, TARGET_EFFECTIVE_BATCH // batch)
        notes.append(f"batch {batch} x accumulation {accum} fitted to {free_memory_gb or 0:.0f} GB free")
    else:
        accum = config.grad_accum or 1
    bf16 = bf16_supported
    if not bf16:
        notes.append("this GPU has no bfloat16: fp16 mixed precision")
    optim = "paged_adamw_8bit" if load_in_4bit else "adamw_torch_fused"
    plan = TrainPlan("cuda", batch, accum, load_in_4bit, bf16, not bf16, checkpointing, optim, notes)
    return _with_learning_rate(plan, config)


def plan_checkpoints(plan: TrainPlan, config: TrainConfig, total_steps: int) -> TrainPlan:
    """How often a run of `total_steps` saves a checkpoint: every `--save-steps` when given; else about every
    tenth of the run, at every evaluation under early stopping (its best evaluation must be on disk to be
    kept), and on a GPU at least once a minute as well."""
    if config.save_steps is not None:
        plan.save_steps, plan.save_every_s = config.save_steps, None
        return plan
    if config.early_stopping_patience is not None and config.eval_steps:
        plan.save_steps = config.eval_steps
        plan.notes.append(
            f"a checkpoint at every evaluation (every {_steps(plan.save_steps)}): early stopping"
        )
    else:
        plan.save_steps = max(1, math.ceil(total_steps / CHECKPOINTS_PER_RUN))
        plan.notes.append(f"a checkpoint every {_steps(plan.save_steps)}")
    if plan.device == "cuda":
        plan.save_every_s = GPU_CHECKPOINT_EVERY_S
        plan.notes[-1] += f" and at least every {GPU_CHECKPOINT_EVERY_S:g} s"
    return plan


def _steps(n: int) -> str:
    return "step" if n == 1 else f"{n} steps"


def _with_learning_rate(plan: TrainPlan, config: TrainConfig) -> TrainPlan:
    if config.learning_rate is not None:
        plan.learning_rate = config.learning_rate
    else:
        plan.learning_rate = auto_learning_rate(plan.batch_size * plan.grad_accum)
        plan.notes.append(
            f"learning rate {plan.learning_rate:.2e} for batches of {plan.batch_size * plan.grad_accum}"
        )
    return plan


def _fit_batch(
    config: TrainConfig, free_gb: float | None, hidden: int | None, layers: int | None, checkpointing: bool
) -> int:
    if not free_gb or not hidden or not layers:
        return 8
    tokens = min(config.max_length, 160)  # emotion texts plus the prompt are ~50-150 tokens
    # bf16 activations kept for the backward pass: ~120 bytes per hidden unit per layer and token (attention,
    # MLP intermediates, norms), measured loosely on Gemma 4 E4B; checkpointing keeps one layer's worth.
    per_token = hidden * (120 + 4 * layers) if checkpointing else hidden * layers * 120
    budget = free_gb * 0.85e9 - 1.5e9
    fit = int(budget // (per_token * tokens)) if budget > 0 else 1
    batch = 1
    while batch * 2 <= min(fit, MAX_GPU_BATCH):
        batch *= 2
    return batch


def estimate_parameters(model: str) -> int | None:
    """Parameters of the text decoder a model spec loads, without loading it (None when unknown)."""
    from gemma_emotion.models import resolve_spec

    try:
        spec = resolve_spec(model)
    except Exception:  # noqa: BLE001 - the load itself will report a bad spec properly
        return None
    if spec.kind == "folder":
        from safetensors import safe_open

        total = 0
        for file in Path(spec.ref).glob("*.safetensors"):
            with safe_open(str(file), "pt") as fh:
                for key in fh.keys():
                    if not any(part in key for part in ("vision", "audio")):
                        total += math.prod(fh.get_slice(key).get_shape())
        return total or None
    if spec.kind == "hub":
        try:
            from huggingface_hub import get_safetensors_metadata

            meta = get_safetensors_metadata(spec.ref, token=os.environ.get("HF_TOKEN"))
            return sum(meta.parameter_count.values())
        except Exception:  # noqa: BLE001 - offline or gated: no auto 4-bit, nothing worse
            return None
    return None  # embedded / gguf: small models, never auto 4-bit
