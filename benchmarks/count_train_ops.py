"""How many operations one training step launches: the embedded model (or --model) with the product's
trainer, one step profiled on the CPU after a warm one.

    python benchmarks/count_train_ops.py [--model M] [--batch 8] [--lora-dropout 0.05]

A small model's step on a GPU is bound by the host launching its operations one by one, not by the GPU's
arithmetic; the count of top-level operations (forward ops plus backward autograd nodes, each one or more
kernel launches on a GPU) is the same whatever the batch, so it can be read here and set against a GPU's
step time (on a GPU the norms are fused, `gemma_emotion.fused`, and autocast adds casts: some hundreds
either way).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gemma_emotion.config import TrainConfig  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.models import load_model  # noqa: E402
from gemma_emotion.paths import default_data  # noqa: E402
from gemma_emotion.plan import plan_training  # noqa: E402
from gemma_emotion.trainer import build_trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lora-dropout", type=float, default=0.05)
    args = ap.parse_args()
    lm = load_model(args.model)
    rows = load_split(default_data(), "train", limit=args.batch, seed=0)
    config = TrainConfig(
        model="x", batch_size=args.batch, grad_accum=1, shared_prefix=False, lora_dropout=args.lora_dropout
    )
    trainer = build_trainer(
        lm, rows, config, plan_training(config, device_type="cpu"), Path(tempfile.mkdtemp())
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(args.batch)])

    def step() -> None:
        trainer.training_step(model, dict(batch))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    events = prof.events()
    top = [e for e in events if e.cpu_parent is None]
    backward = sum(1 for e in top if e.name.startswith("autograd::engine::evaluate_function"))
    lora = sum(
        1 for n, m in model.named_modules() if n.endswith("lora_A") and isinstance(m, torch.nn.ModuleDict)
    )
    print(json.dumps({
        "batch": args.batch, "lora_dropout": args.lora_dropout, "lora_layers": lora,
        "top_level_ops": len(top), "backward_nodes": backward,
        "forward_and_optimizer_ops": len(top) - backward,
        "aten_calls": sum(1 for e in events if e.name.startswith("aten::")),
        "most_common": collections.Counter(e.name for e in top).most_common(12),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
