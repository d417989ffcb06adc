"""Training throughput: our path (gemma_emotion.train, TRL SFTTrainer + LoRA) against a plain PyTorch loop.

Both train the same model on the same N rows, on the same device, in this one process, one after the
other. The reference is the simplest loop that does the job: fp32 weights (TF32 matmuls allowed on
CUDA), eager attention, right-padded batches of 32, LoRA (same targets, r, alpha) via PEFT, AdamW at a
constant rate, and the model's own loss over full-vocabulary logits at every position.

    python benchmarks/bench_train.py --model embedded --train-size 4000          # a GPU host
    python benchmarks/bench_train.py --train-size 64                             # CPU smoke run

Prints one table (examples/s, tokens/s, peak GPU memory, final loss) and the ratio ours / reference.
Timings cover the training loop only (not loading or evaluation). Needs no gradio.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
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


def run_ours(args: argparse.Namespace, runs_dir: Path) -> Result:
    from gemma_emotion.config import TrainConfig
    from gemma_emotion.runfolder import read_record
    from gemma_emotion.train import train

    config = TrainConfig(
        model=args.model, data=args.data, train_size=args.train_size, epochs=args.epochs,
        max_length=args.max_length, seed=args.seed, test_size=0, batch_size=args.batch_size,
        grad_accum=args.grad_accum, name="bench",
    )  # fmt: skip
    _reset_peak()
    info = train(config, runs_dir, progress_bar=args.progress)
    if info.status != "completed":
        raise SystemExit(f"our run ended {info.status}: {info.error}")
    m = info.metrics or {}
    plan = read_record(info.path)["plan"]
    return Result(
        name="ours (TRL SFTTrainer)",
        examples=int(round(info.n_train * args.epochs)),
        tokens=int(m.get("train_tokens") or 0),
        seconds=float(m["train_runtime_s"]),
        peak_gib=_peak_gib(),
        final_loss=m.get("final_loss"),
        batch=f"{plan['batch_size']}x{plan['grad_accum']}"
        + (" 4-bit" if plan["load_in_4bit"] else "")
        + (" bf16" if plan["bf16"] else " fp32"),
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
    if len(results) == 2 and results[1].examples_per_s:
        ours, ref = results
        lines.append(
            f"ratio ours / reference: {ours.examples_per_s / ref.examples_per_s:.2f}x examples/s, "
            f"{ours.tokens_per_s / ref.tokens_per_s:.2f}x tokens/s"
        )
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
    p.add_argument("--progress", action="store_true", help="show our path's progress bar")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    device = (
        torch.cuda.get_device_name(0)
        if torch.cuda.is_available()
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"model {args.model}  data {args.data}  rows {args.train_size}  epochs {args.epochs:g}  on {device}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        results = [run_ours(args, Path(tmp))]
    print(format_table(results), file=sys.stderr, flush=True)  # kept should the reference run out of memory
    if not args.skip_reference:
        results.append(run_reference(args))
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
