"""Which attention kernel each pass of a checkpointed training step may use: the CheckpointError's question.

    python benchmarks/diagnose_sdpa_checkpoint.py --tokenizer KIT --data DATA --workdir /root/e4b-work
    python benchmarks/diagnose_sdpa_checkpoint.py --tokenizer KIT --data DATA --tiny   # the plumbing, CPU

On an H200 the first checkpointed batch of a QLoRA process failed in the backward pass: the saved attention
tensors of the forward were cuDNN attention's, those of the recompute the memory-efficient kernel's
(benchmarks/README.md, "GPU, ninth session"). This runs one such step (the E4B shape in NF4, whole rows,
non-reentrant checkpointing, the project's own trainer) with every call of
`torch.nn.functional.scaled_dot_product_attention` logged: forward or backward
(the recompute runs inside the backward's graph task), the thread, the SDPA priority order in force, whether
flash, memory-efficient and cuDNN attention accept the call (`torch.backends.cuda.can_use_*`, whose debug
warnings say why not), and the inputs' shapes, dtypes, strides and devices. Then a second step, which passed
on the H200, for comparison. Writes the log as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e4b import shaped_checkpoint  # noqa: E402

from gemma_emotion.data import load_split  # noqa: E402


def describe(t: torch.Tensor | None) -> dict | None:
    if t is None:
        return None
    return {"shape": list(t.shape), "dtype": str(t.dtype), "stride": list(t.stride()),
            "device": str(t.device), "requires_grad": t.requires_grad}  # fmt: skip


def logging_sdpa(log: list, limit: int):
    """`scaled_dot_product_attention`, logging the first `limit` calls of each step (see the docstring)."""
    original = torch.nn.functional.scaled_dot_product_attention
    from torch.backends import cuda

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if len(log) < limit:
            entry = {
                "backward": torch._C._current_graph_task_id() != -1,
                "thread": threading.current_thread().name,
                "grad_enabled": torch.is_grad_enabled(),
                "autocast": torch.is_autocast_enabled(query.device.type),
                "priority": [str(b) for b in torch._C._get_sdp_priority_order()],
                "query": describe(query), "key": describe(key), "value": describe(value),
                "mask": describe(attn_mask), "dropout_p": dropout_p, "is_causal": is_causal,
                "enable_gqa": enable_gqa,
            }  # fmt: skip
            params = cuda.SDPAParams(query, key, value, attn_mask, dropout_p, is_causal, enable_gqa)
            for name in ("flash", "efficient", "cudnn"):
                check = getattr(cuda, f"can_use_{name}_attention", None)
                if check is None:
                    continue
                with warnings.catch_warnings(record=True) as why:
                    warnings.simplefilter("always")
                    entry[f"can_use_{name}"] = bool(check(params, True))
                entry[f"why_not_{name}"] = [str(w.message)[:300] for w in why]
            log.append(entry)
        return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, enable_gqa=enable_gqa)  # fmt: skip

    return sdpa


def step_kernels(variant: str, cuda: bool):
    """The attention kernels allowed for a whole training step (forward and the backward's recompute)."""
    import contextlib

    if not cuda or variant not in ("no-cudnn-step", "efficient-step"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    allowed = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    if variant == "no-cudnn-step":
        allowed.insert(0, SDPBackend.FLASH_ATTENTION)
    return sdpa_kernel(allowed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--workdir", default=None, help="bench_e4b.py's work folder (its checkpoint is reused)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--calls", type=int, default=1000, help="SDPA calls logged per step")
    ap.add_argument("--out", default="sdpa-checkpoint.json")
    variants = ["as-is", "no-cudnn-step", "efficient-step", "reentrant"]
    ap.add_argument("--variant", default="as-is", choices=variants,
                    help="as-is: the trainer unchanged; no-cudnn-step: the whole step (forward and backward) "
                         "with cuDNN attention off; efficient-step: the whole step with only the "
                         "memory-efficient and math kernels; reentrant: reentrant checkpointing")  # fmt: skip
    args = ap.parse_args()

    from gemma_emotion.config import TrainConfig
    from gemma_emotion.models import LoadOptions, load_model
    from gemma_emotion.plan import plan_training
    from gemma_emotion.records import fit_text, text_budget
    from gemma_emotion.trainer import build_trainer

    cuda = torch.cuda.is_available()
    work = Path(args.workdir or tempfile.mkdtemp())
    ckpt = shaped_checkpoint(Path(args.tokenizer), work, args.tiny)
    lm = load_model(str(ckpt), LoadOptions(load_in_4bit=cuda))
    config = TrainConfig(model="x", batch_size=args.batch, grad_accum=1, max_length=args.seq,
                         load_in_4bit=cuda, shared_prefix=False)  # fmt: skip
    plan = plan_training(config, device_type=lm.device.type, load_in_4bit=cuda)
    plan.gradient_checkpointing = True
    ds = load_split(args.data, "train", limit=args.batch * 2, seed=0)
    ds = ds.map(lambda r: {"text": (r["text"] + " ") * 8})
    budget = text_budget(config, lm.tokenizer)
    ds = ds.remove_columns("text").add_column("text", fit_text(list(ds["text"]), lm.tokenizer, budget))
    trainer = build_trainer(lm, ds, config, plan, Path(tempfile.mkdtemp()))
    trainer.create_optimizer_and_scheduler(num_training_steps=2)
    trainer.current_gradient_accumulation_steps = 1
    model = trainer.model
    model.train()
    reentrant = args.variant == "reentrant"
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    model.enable_input_require_grads()
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    result: dict = {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                    "batch": args.batch, "variant": args.variant, "steps": []}  # fmt: skip
    for step in range(2):
        batch = trainer.data_collator(rows[step * args.batch : (step + 1) * args.batch])
        batch = {k: v.to(lm.device) for k, v in batch.items()}
        log: list = []
        torch.nn.functional.scaled_dot_product_attention, original = (
            logging_sdpa(log, args.calls),
            torch.nn.functional.scaled_dot_product_attention,
        )
        try:
            with step_kernels(args.variant, cuda):
                loss = trainer.training_step(model, batch)
            outcome = {"loss": float(loss)}
        except Exception as exc:  # noqa: BLE001 - the error is the finding
            outcome = {"error": f"{type(exc).__name__}: {exc}"[:2000],
                       "traceback": traceback.format_exc()[-3000:]}  # fmt: skip
        finally:
            torch.nn.functional.scaled_dot_product_attention = original
            trainer.optimizer.zero_grad(set_to_none=True)
        result["steps"].append({"step": step, **outcome, "calls": log})
        print(json.dumps({"step": step, **{k: v for k, v in outcome.items() if k != "traceback"}})[:600],
              flush=True)  # fmt: skip
        kinds = Counter(
            (e["backward"], e["thread"], e.get("can_use_flash"), e.get("can_use_efficient"),
             e.get("can_use_cudnn"), tuple(e["priority"]))
            for e in log
        )  # fmt: skip
        for (backward, thread, flash, efficient, cudnn, priority), n in kinds.items():
            print(f"  {n} calls, {'backward' if backward else 'forward'} on {thread}: flash {flash}, "
                  f"efficient {efficient}, cudnn {cudnn}, priority {priority}", flush=True)  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
