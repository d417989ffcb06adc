"""Training throughput: our path (gemma_emotion.train, TRL SFTTrainer + LoRA) against a plain PyTorch loop.

Both train the same model on the same N rows, on the same device, in this one process, one after the
other. The reference is the simplest loop that does the job: fp32 weights (TF32 matmuls allowed on
CUDA), eager attention, right-padded batches of 32, LoRA (same targets, r, alpha) via PEFT, AdamW at a
constant rate, and the model's own loss over full-vocabulary logits at every position.

    python benchmarks/bench_train.py --model embedded --train-size 4000          # a GPU host
    python benchmarks/bench_train.py --train-size 64                             # CPU smoke run
    python benchmarks/bench_train.py --device cpu --train-size 256 --batch-size 8 --shared-prefix both \
        --skip-reference                           # the shared prompt prefix on and off, in one process
    python benchmarks/bench_train.py --device cpu --ab-steps 20  # the same, steps alternated (busy machine)

Prints one table (examples/s, tokens/s, peak GPU memory, final loss) and the ratio ours / reference.
With `--shared-prefix both` our path runs twice on the same rows, the prompt prefix every row shares run
once per batch and then every row whole (`--no-shared-prefix`), and the ratio of the two is printed too
(the loss curves should agree: the computation is the same). Timings cover the training loop only (not
loading or evaluation). Needs no gradio.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gemma_emotion import paths  # noqa: E402


@dataclass
class Result:
    name: str
    examples: int
    tokens: int
    seconds: float
    peak_gib: float | None
    final_loss: float | None
    batch: str
    losses: list[float] = field(default_factory=list)  # our path's logged training losses

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")


def _reset_peak() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


@contextlib.contextmanager
def _cpu_bf16(mode: str):
    """A CPU run in bf16 mixed precision, which the product does not plan: "autocast" sets the plan's bf16
    (the trainer's autocast over the fp32 model), "weights" also loads the frozen model in bf16, as on a
    GPU. "off": the product's own plan."""
    if mode == "off":
        yield
        return
    from gemma_emotion import models
    from gemma_emotion import train as train_mod

    plan_training, load_model = train_mod.plan_training, models.load_model

    def planned(*a, **kw):
        plan = plan_training(*a, **kw)
        plan.bf16 = True
        return plan

    def loaded(spec, options=None):
        options = options or models.LoadOptions()
        return load_model(spec, dataclasses.replace(options, dtype="bfloat16"))

    train_mod.plan_training = planned
    if mode == "weights":
        models.load_model = loaded  # train() imports it from models when it runs
    try:
        yield
    finally:
        train_mod.plan_training, models.load_model = plan_training, load_model


def run_ours(
    args: argparse.Namespace, runs_dir: Path, shared_prefix: bool = True, int8: bool = False
) -> Result:
    from gemma_emotion.config import TrainConfig
    from gemma_emotion.runfolder import LOG_FILE, read_log, read_record
    from gemma_emotion.train import train

    config = TrainConfig(
        model=args.model, data=args.data, train_size=args.train_size, epochs=args.epochs,
        max_length=args.max_length, seed=args.seed, test_size=0, batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        name=f"bench-{'shared' if shared_prefix else 'whole'}-{'int8' if int8 else 'float'}",
        shared_prefix=shared_prefix, int8=int8,
    )  # fmt: skip
    _reset_peak()
    with _cpu_bf16(args.cpu_bf16):
        info = train(config, runs_dir, progress_bar=args.progress)
    if info.status != "completed":
        raise SystemExit(f"our run ended {info.status}: {info.error}")
    m = info.metrics or {}
    record = read_record(info.path)
    log, _ = read_log(info.path / LOG_FILE)
    plan = record["plan"]
    shared = any(note.startswith("shared prefix:") for note in record.get("notes", []))
    in_int8 = any(note.startswith("frozen base layers in int8") for note in record.get("notes", []))
    return Result(
        name=("ours, shared prefix" if shared else "ours, whole rows") + (", int8 base" if in_int8 else ""),
        examples=int(round(info.n_train * args.epochs)),
        tokens=int(m.get("train_tokens") or 0),
        seconds=float(m["train_runtime_s"]),
        peak_gib=_peak_gib(),
        final_loss=m.get("final_loss"),
        batch=f"{plan['batch_size']}x{plan['grad_accum']}"
        + (" 4-bit" if plan["load_in_4bit"] else "")
        + (" bf16" if plan["bf16"] else " fp32"),
        losses=[r["loss"] for r in log if r.get("kind") == "train"],
    )


def run_reference(args: argparse.Namespace) -> Result:
    from peft import LoraConfig, get_peft_model

    from gemma_emotion.data import load_split, sample
    from gemma_emotion.labels import to_prompt_completion
    from gemma_emotion.models import LoadOptions, load_model, lora_target_modules

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(args.seed)
    ds = sample(load_split(args.data, "train"), args.train_size, stratify=True, seed=args.seed)
    lm = load_model(args.model, LoadOptions(dtype="float32", attn_implementation="eager"))
    tok = lm.tokenizer
    model = get_peft_model(
        lm.model,
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=lora_target_modules(lm.model),
                   task_type="CAUSAL_LM"),
    )  # fmt: skip
    model.config.use_cache = False

    examples = []
    for text, label in zip(ds["text"], ds["label"]):
        record = to_prompt_completion(text.strip(), label)
        prompt = tok.apply_chat_template(record["prompt"], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(record["prompt"] + record["completion"], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"][: args.max_length]
        examples.append((ids, [-100] * len(p_ids) + ids[len(p_ids) :]))

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    model.train()
    gen = torch.Generator().manual_seed(args.seed)
    steps = max(1, math.ceil(len(examples) * args.epochs / args.ref_batch_size))
    order: list[int] = []
    while len(order) < steps * args.ref_batch_size:
        order += torch.randperm(len(examples), generator=gen).tolist()
    losses, tokens = [], 0
    _reset_peak()
    _sync()
    start = time.perf_counter()
    micro = args.ref_micro_batch or (args.ref_batch_size if torch.cuda.is_available() else 8)
    for step in range(steps):
        batch = [examples[i] for i in order[step * args.ref_batch_size : (step + 1) * args.ref_batch_size]]
        width = max(len(ids) for ids, _ in batch)  # padded to the longest of the whole batch
        n_target = sum(sum(t != -100 for t in lab[1:]) for _, lab in batch)
        step_loss = 0.0
        # Parts only bound memory (full logits of 32 rows take ~10 GB on a CPU); the update is the whole
        # batch's: each part's mean loss is weighted by its share of the batch's target tokens.
        for first in range(0, len(batch), micro):
            part = batch[first : first + micro]
            input_ids = torch.full((len(part), width), tok.pad_token_id, dtype=torch.long)
            labels = torch.full((len(part), width), -100, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for row, (ids, lab) in enumerate(part):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                labels[row, : len(lab)] = torch.tensor(lab)
                mask[row, : len(ids)] = 1
            tokens += int(mask.sum())
            share = sum(sum(t != -100 for t in lab[1:]) for _, lab in part) / n_target
            out = model(
                input_ids=input_ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                labels=labels.to(lm.device),
            )
            (out.loss * share).backward()
            step_loss += out.loss.item() * share
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
    _sync()
    seconds = time.perf_counter() - start
    window = losses[-max(1, len(losses) // 20) :]
    result = Result(
        name="reference (plain loop)",
        examples=steps * args.ref_batch_size,
        tokens=tokens,
        seconds=seconds,
        peak_gib=_peak_gib(),
        final_loss=sum(window) / len(window),
        batch=f"{args.ref_batch_size}{f' ({micro}-row parts)' if micro < args.ref_batch_size else ''} fp32",
    )
    del model, optimizer, lm
    return result


def step_ab(args: argparse.Namespace) -> dict:
    """Training steps of our trainer with the shared prefix and with whole rows, alternated on the same
    batches and the same weights: on a machine whose load drifts, the two see the same load.

    Each batch is stepped (forward, backward, optimizer) once each way, in turn; the figure is the ratio
    of the median step times. The optimizer's updates move the weights between steps, as in training."""
    import statistics

    from gemma_emotion.config import TrainConfig
    from gemma_emotion.data import load_split, sample
    from gemma_emotion.models import load_model
    from gemma_emotion.plan import plan_training
    from gemma_emotion.records import fit_text, text_budget
    from gemma_emotion.trainer import answer_positions_only, build_trainer

    config = TrainConfig(
        model=args.model, batch_size=args.batch_size, grad_accum=1, max_length=args.max_length
    )
    lm = load_model(args.model)
    plan = plan_training(config, device_type=lm.device.type, bf16_supported=lm.device.type == "cuda")
    batch = plan.batch_size
    ds = sample(load_split(args.data, "train"), batch * (args.ab_steps + 2), stratify=True, seed=args.seed)
    texts = fit_text(list(ds["text"]), lm.tokenizer, text_budget(config, lm.tokenizer))
    ds = ds.remove_columns("text").add_column("text", texts)
    trainer = build_trainer(lm, ds, config, plan, Path(tempfile.mkdtemp()))
    n_prefix = trainer.shared_prefix
    if not n_prefix:
        raise SystemExit(f"the shared prefix is off for this model: {trainer.shared_prefix_note}")
    trainer.create_optimizer_and_scheduler(num_training_steps=2 * args.ab_steps + 4)
    trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop, which this bypasses
    model = trainer.model
    model.train()
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    # Rows of similar length together, as the trainer's length-grouped sampler batches them.
    rows.sort(key=lambda r: len(r["input_ids"]))
    batches = [
        {k: v.to(lm.device) for k, v in trainer.data_collator(rows[j : j + batch]).items()}
        for j in range(0, len(rows) - batch + 1, batch)
    ]
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(args.seed)).tolist()
    batches = [batches[i] for i in order]

    def step(b: dict, shared: int) -> float:
        trainer.shared_prefix = shared
        _sync()
        t0 = time.perf_counter()
        trainer.training_step(model, dict(b))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        _sync()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"shared": [], "whole": []}
    with answer_positions_only():
        for i, b in enumerate(batches):
            first, second = (("shared", n_prefix), ("whole", 0))[:: 1 if i % 2 == 0 else -1]
            for name, shared in (first, second):
                seconds = step(b, shared)
                if i >= 2:  # the first two batches warm up allocators and kernels
                    times[name].append(seconds)
    medians = {k: statistics.median(v) for k, v in times.items()}
    tokens = statistics.mean(int(b["attention_mask"].sum()) for b in batches) / batch
    result = {
        "batch": batch, "steps_each": len(times["shared"]), "prefix_tokens": n_prefix,
        "tokens_per_row": round(tokens, 1), "median_step_s": medians,
        "examples_per_s": {k: batch / v for k, v in medians.items()},
        "ratio_shared_over_whole": medians["whole"] / medians["shared"],
    }  # fmt: skip
    print(
        f"alternated steps, batch {batch}, {result['steps_each']} each, {n_prefix} of ~{tokens:.0f} tokens a "
        f"row shared: median step {medians['shared']:.3f} s shared prefix, {medians['whole']:.3f} s whole "
        f"rows -> ratio {result['ratio_shared_over_whole']:.2f}x"
    )
    return result


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def format_table(results: list[Result]) -> str:
    head = (
        f"{'path':<24}{'batch':>22}{'examples/s':>12}{'tokens/s':>11}{'peak GiB':>10}{'final loss':>12}"
        f"{'seconds':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        peak = f"{r.peak_gib:.2f}" if r.peak_gib is not None else "-"
        loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "-"
        lines.append(
            f"{r.name:<24}{r.batch:>22}{r.examples_per_s:>12.2f}{r.tokens_per_s:>11.0f}{peak:>10}{loss:>12}"
            f"{r.seconds:>9.1f}"
        )
    by_name = {r.name: r for r in results}
    ref = by_name.get("reference (plain loop)")
    for ours in results:
        if ref is not None and ours is not ref and ref.examples_per_s:
            lines.append(
                f"ratio {ours.name} / reference: {ours.examples_per_s / ref.examples_per_s:.2f}x examples/s, "
                f"{ours.tokens_per_s / ref.tokens_per_s:.2f}x tokens/s"
            )
    quick, plain = by_name.get("ours, shared prefix, int8 base"), by_name.get("ours, shared prefix")
    if quick and plain and plain.examples_per_s and quick.losses and len(quick.losses) == len(plain.losses):
        gap = max(abs(a - b) for a, b in zip(quick.losses, plain.losses))
        lines.append(
            f"ratio int8 base / fp32 (shared prefix): {quick.examples_per_s / plain.examples_per_s:.2f}x "
            f"examples/s; loss curves ({len(quick.losses)} points): largest difference {gap:.2e}"
        )
    shared, whole = by_name.get("ours, shared prefix"), by_name.get("ours, whole rows")
    if shared and whole and whole.examples_per_s:
        # Both count every row's whole tokens, so the two ratios agree; the examples/s one is the figure.
        ratio = shared.examples_per_s / whole.examples_per_s
        lines.append(f"ratio shared prefix / whole rows: {ratio:.2f}x examples/s")
        if shared.losses and len(shared.losses) == len(whole.losses):
            # Not zero with LoRA dropout on: the prefix's dropout mask is drawn once per batch, not per row.
            gap = max(abs(a - b) for a, b in zip(shared.losses, whole.losses))
            lines.append(f"loss curves ({len(shared.losses)} points): largest difference {gap:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=paths.default_model())
    p.add_argument("--data", default=paths.default_data())
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="our path's batch (default: fit the device)")
    p.add_argument("--grad-accum", type=int, default=None, help="our path's accumulation (default: fit)")
    p.add_argument("--ref-batch-size", type=int, default=32)
    p.add_argument(
        "--ref-micro-batch", type=int, default=None,
        help="rows per forward pass within a reference batch (default: all of them on CUDA, 8 on a CPU)",
    )  # fmt: skip
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument(
        "--cpu-bf16", choices=("off", "autocast", "weights"), default="off",
        help="a CPU run in bf16 mixed precision (not the product's plan): autocast over the fp32 model, or "
        "the model loaded in bf16 too",
    )  # fmt: skip
    p.add_argument(
        "--int8", choices=("on", "off", "both"), default="off",
        help="frozen base layers in int8 on a CPU (TrainConfig.int8, off by default): on, off, or both",
    )  # fmt: skip
    p.add_argument(
        "--shared-prefix", choices=("on", "off", "both"), default="on",
        help="our path with the shared prompt prefix run once per batch (on, the default), every row whole "
        "(off), or both, one after the other in this process, with their ratio",
    )  # fmt: skip
    p.add_argument(
        "--device", choices=("auto", "cpu"), default="auto",
        help="cpu: hide any GPU, to measure the CPU path on a GPU host",
    )  # fmt: skip
    p.add_argument(
        "--ab-steps", type=int, default=0,
        help="instead of whole runs: N training steps with the shared prefix and N with whole rows, "
        "alternated on the same batches (robust to a machine whose load changes); prints their ratio",
    )  # fmt: skip
    p.add_argument("--progress", action="store_true", help="show our path's progress bar")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.device == "cpu":
        # Read when CUDA first initialises, which importing torch does not do.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""

    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"model {args.model}  data {args.data}  rows {args.train_size}  epochs {args.epochs:g}  on {device}"
    )
    if args.ab_steps:
        result = step_ab(args)
        if args.json:
            Path(args.json).write_text(
                json.dumps({"device": device, "model": args.model, **result}, indent=2)
            )
        return 0
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.shared_prefix]
    int8s = {"on": [True], "off": [False], "both": [True, False]}[args.int8]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        results = [run_ours(args, Path(tmp), shared, int8) for shared in modes for int8 in int8s]
    print(format_table(results), file=sys.stderr, flush=True)  # kept should the reference run out of memory
    if not args.skip_reference:
        results.append(run_reference(args))
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
