"""Gemma 4 E4B-shaped figures on one GPU: score-mode throughput, LoRA and QLoRA training, memory, MFU.

    python benchmarks/bench_e4b.py --tokenizer KIT --data DATA --out DIR

The model is the E4B text decoder's real config (benchmarks/bench_eval.py: E4B) with random weights,
saved once as a checkpoint folder so it goes through the project's own loading (bf16, or NF4 4-bit via
bitsandbytes), `Classifier` and trainer (`build_trainer`: TRL SFTTrainer + PEFT LoRA r=16 on every
decoder projection). KIT is a folder holding a Gemma tokenizer (262,144 tokens, like E4B's).

- matmul rate: the card's measured bf16 rate (8192^3 products), the denominator of every MFU below;
- score mode: examples/s over the test split, MFU = 2 x decoder parameters x tokens/s / rate;
- training: sequences of exactly `--seq` tokens (96 by default), LoRA in bf16 and QLoRA (NF4, paged 8-bit
  AdamW, gradient checkpointing) at several batch sizes: tokens/s, MFU = 4 x decoder parameters x tokens/s
  / rate (forward, and the backward pass through the frozen weights), and peak GPU memory. Weights frozen
  under LoRA need no weight gradients, hence 4 rather than 6. With the shared prompt prefix (on by default,
  `--shared-prefix off|both`), `mfu` still counts every row's whole tokens (the work the rows stand for, as
  before) and `mfu_tokens_run` the tokens actually run: the prefix once per batch, then the suffixes.

Decoder parameters are the weights of the matrix products a token goes through: embeddings and the
per-layer-input table are lookups and are not counted. Speed only: the random model's answers mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.utils.checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_eval import E4B  # noqa: E402

from gemma_emotion.data import load_split  # noqa: E402

TINY = dict(E4B, hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, global_head_dim=64, num_kv_shared_layers=2,
            layer_types=(["sliding_attention"] * 2 + ["full_attention"]) * 2,
            hidden_size_per_layer_input=16, vocab_size=262144, vocab_size_per_layer_input=262144)  # fmt: skip


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def reset() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def matmul_rate(n: int = 8192, reps: int = 50) -> float:
    """Measured bf16 FLOP/s of large square products on this card."""
    if not torch.cuda.is_available():
        return float("nan")
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def shaped_checkpoint(kit: Path, work: Path, tiny: bool = False) -> Path:
    """The random E4B-shaped (or tiny) checkpoint in `work`, built once and reused by the scripts after it
    (bench_e4b.py, bench_predict.py --shape e4b, diagnose_sdpa_checkpoint.py)."""
    target = work / ("e4b-tiny" if tiny else "e4b")
    if not any(target.glob("model*.safetensors*")):
        build_checkpoint(kit, target, TINY if tiny else E4B)
    return target


def build_checkpoint(kit: Path, target: Path, shape: dict) -> Path:
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Gemma4ForCausalLM(Gemma4TextConfig(**shape)).to(torch.bfloat16)
    # Random normal weights everywhere make the attention and the logits of a 42-layer stack overflow into
    # NaN; a small scale keeps the activations finite, which is all speed needs.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(0.02 / max(float(p.float().std()), 1e-6))
    model.save_pretrained(target)
    del model
    for f in kit.iterdir():
        if f.suffix == ".gz":  # .gpu/kit carries tokenizer.json gzipped: 5 MiB, not 33
            with gzip.open(f) as src, open(target / f.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        elif f.is_file() and f.name not in ("config.json", "model.safetensors", "generation_config.json"):
            shutil.copy(f, target / f.name)
    return target


def decoder_params(model: torch.nn.Module) -> int:
    total = 0
    for name, p in model.named_parameters():
        if "embed" in name or "lora_" in name or p.dim() != 2:
            continue
        # bitsandbytes packs two 4-bit weights per byte: count the logical weights
        total += p.numel() * (2 if p.dtype == torch.uint8 else 1)
    return total


def profile_table(fn, path: Path) -> None:
    """One call of `fn` under torch.profiler, its CPU and GPU time per operator written to `path`."""
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        fn()
        sync()
    avg = prof.key_averages()
    path.write_text(
        avg.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=70)
        + "\n"
        + avg.table(sort_by="self_cuda_time_total", row_limit=30, max_name_column_width=70)
    )


def score(
    ckpt: Path, texts: list[str], four_bit: bool, rate: float, batch: int | None, profile_to: Path | None
) -> dict:
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadOptions, load_model

    reset()
    lm = load_model(str(ckpt), LoadOptions(load_in_4bit=four_bit))
    clf = Classifier(lm)
    clf.predict(texts[:64], batch_size=batch)
    sync()
    t0 = time.perf_counter()
    clf.predict(texts, batch_size=batch)
    sync()
    secs = time.perf_counter() - t0
    t0 = time.perf_counter()  # a second pass: every batch shape met before
    clf.predict(texts, batch_size=batch)
    sync()
    warm_secs = time.perf_counter() - t0
    n_tokens = sum(map(len, clf._encode_many(texts).rows()))
    params = decoder_params(lm.model)
    r = {
        "mode": "score", "weights": "nf4" if four_bit else "bf16", "examples_per_s": len(texts) / secs,
        "tokens_per_example": n_tokens / len(texts), "decoder_params": params, "peak_gib": peak_gib(),
        # the system prompt is computed once (prefix cache), so count only the tokens actually run
        "mfu_tokens_run": 2 * params * (n_tokens - len(clf._prefix_ids) * len(texts)) / secs / rate,
        "examples_per_s_warm": len(texts) / warm_secs,
        "mfu_tokens_run_warm": 2 * params * (n_tokens - len(clf._prefix_ids) * len(texts)) / warm_secs / rate,
    }  # fmt: skip
    print(json.dumps(r), flush=True)
    if profile_to is not None:
        profile_table(lambda c=clf: c.predict(texts, batch_size=batch), profile_to)
    del clf, lm
    return r


def train_steps(
    lm,
    data: str,
    four_bit: bool,
    batch: int,
    seq: int,
    steps: int,
    rate: float,
    checkpointing: bool,
    profile_to: Path | None = None,
    shared_prefix: bool = True,
    compile_layers: bool = False,
) -> dict:
    """Timed LoRA steps on `lm`; the adapter is taken off afterwards, so one load serves every batch."""
    from gemma_emotion.config import TrainConfig
    from gemma_emotion.plan import plan_training
    from gemma_emotion.records import fit_text, text_budget
    from gemma_emotion.trainer import build_trainer

    gc.collect()
    torch.cuda.is_available() and torch.cuda.empty_cache()
    torch.cuda.is_available() and torch.cuda.reset_peak_memory_stats()
    after_load = torch.cuda.memory_allocated() / 2**30 if torch.cuda.is_available() else None
    config = TrainConfig(
        model="x", batch_size=batch, grad_accum=1, max_length=seq, load_in_4bit=four_bit,
        shared_prefix=shared_prefix,
    )  # fmt: skip
    plan = plan_training(config, device_type=lm.device.type, load_in_4bit=four_bit)
    plan.gradient_checkpointing = checkpointing or plan.gradient_checkpointing
    # Texts long enough to be cut: every training sequence is then exactly `seq` tokens.
    ds = load_split(data, "train", limit=batch * steps, seed=0)
    ds = ds.map(lambda r: {"text": (r["text"] + " ") * 8})
    budget = text_budget(config, lm.tokenizer)
    ds = ds.remove_columns("text").add_column("text", fit_text(list(ds["text"]), lm.tokenizer, budget))
    trainer = build_trainer(lm, ds, config, plan, Path(tempfile.mkdtemp()))
    try:
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        trainer.current_gradient_accumulation_steps = 1
        model = trainer.model
        model.train()
        if compile_layers:  # issue 20's idea: torch.compile of each decoder layer (inductor, default mode)
            for layer in model.get_base_model().model.layers:
                layer.compile()
        if plan.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        lengths = [len(r["input_ids"]) for r in rows]
        batches = [
            {k: v.to(lm.device) for k, v in trainer.data_collator(rows[j : j + batch]).items()}
            for j in range(0, len(rows) - batch + 1, batch)
        ]

        def step(b: dict) -> None:
            trainer.training_step(model, dict(b))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)

        warm = 3
        for b in batches[:warm]:
            step(b)
        sync()
        t0 = time.perf_counter()
        for b in batches[warm:]:
            step(b)
        sync()
        secs = time.perf_counter() - t0
        tokens = sum(int(b["attention_mask"].sum()) for b in batches[warm:])
        n_prefix = trainer.shared_prefix  # 0: every row run whole
        tokens_run = tokens - (batch - 1) * n_prefix * len(batches[warm:])
        params = decoder_params(model)
        r = {
            "mode": "train", "weights": "nf4" if four_bit else "bf16", "batch": batch, "seq": seq,
            "seq_min_max": [min(lengths), max(lengths)], "optimizer": plan.optim,
            "gradient_checkpointing": plan.gradient_checkpointing, "steps_timed": len(batches) - warm,
            "step_s": secs / (len(batches) - warm),
            "tokens_per_s": tokens / secs, "examples_per_s": (len(batches) - warm) * batch / secs,
            "mfu": 4 * params * tokens / secs / rate, "decoder_params": params,
            "shared_prefix_tokens": n_prefix, "mfu_tokens_run": 4 * params * tokens_run / secs / rate,
            "peak_gib": peak_gib(), "before_gib": after_load, "compiled_layers": compile_layers,
        }  # fmt: skip
        print(json.dumps(r), flush=True)
        if profile_to is not None:
            profile_table(lambda: step(batches[warm]), profile_to)
        return r
    finally:
        lm.model = trainer.model.unload() if hasattr(trainer.model, "unload") else trainer.model
        if plan.gradient_checkpointing:  # the next batch spec decides for itself
            lm.model.gradient_checkpointing_disable()
            lm.model.disable_input_require_grads()
        trainer.optimizer = trainer.lr_scheduler = None


def training(ckpt: Path, data: str, four_bit: bool, specs: list[str], args, rate: float, out: Path) -> list:
    """One load, then each batch spec ("32", or "128c" for gradient checkpointing) in turn."""
    from gemma_emotion.models import LoadOptions, load_model

    reset()
    lm = load_model(str(ckpt), LoadOptions(load_in_4bit=four_bit))
    results = []
    for spec in specs:
        batch, ckpt_on = int(spec.rstrip("c")), spec.endswith("c")
        variants = [
            (shared, compiled)
            for shared in {"on": [True], "off": [False], "both": [True, False]}[args.shared_prefix]
            # eager first: compiled layers stay compiled after the adapter is unloaded
            for compiled in {"on": [True], "off": [False], "both": [False, True]}[args.compile]
        ]
        for shared, compiled in variants:
            name = f"train_{'nf4' if four_bit else 'bf16'}_b{spec}{'' if shared else '_whole'}"
            name += "_compiled.txt" if compiled else ".txt"
            prof = out / name if args.profile else None
            try:
                results.append(
                    train_steps(
                        lm, data, four_bit, batch, args.seq, args.steps, rate, ckpt_on, prof, shared, compiled
                    )
                )
            except Exception as exc:  # noqa: BLE001 - an out-of-memory batch is a result too
                msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                print(spec, msg, flush=True)
                # the whole message and traceback (with --checkpoint-debug, the recomputed ops that differ)
                (out / name.replace(".txt", ".error.txt")).write_text(traceback.format_exc())
                weights = "nf4" if four_bit else "bf16"
                results.append({"weights": weights, "batch": spec, "shared_prefix": shared, "error": msg})
                gc.collect()
                torch.cuda.is_available() and torch.cuda.empty_cache()
    del lm
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tokenizer", required=True, help="a folder with a Gemma tokenizer (e.g. the embedded one)"
    )
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="out/e4b")
    ap.add_argument("--workdir", default=None, help="where the random checkpoint is written (~16 GB)")
    ap.add_argument("--limit", type=int, default=2000, help="test rows for score mode")
    ap.add_argument("--seq", type=int, default=96)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lora-batches", default="16,32", help='"128c": checkpointing')
    ap.add_argument("--qlora-batches", default="4,8")
    ap.add_argument("--score-batch", type=int, default=None)
    ap.add_argument("--stages", default="score,lora,qlora")
    ap.add_argument("--profile", action="store_true", help="a torch.profiler table of one step per batch")
    ap.add_argument(
        "--norms", choices=("native", "fp32"), default="native",
        help="fp32: Gemma 4's fused norms on an fp32 copy of the activation (before gemma_emotion.fused's "
        "NATIVE_DTYPE), to compare",
    )  # fmt: skip
    ap.add_argument(
        "--shared-prefix", choices=("on", "off", "both"), default="on",
        help="training with the shared prompt prefix run once per batch (on), every row whole (off), or "
        "both, one after the other on the same load",
    )  # fmt: skip
    ap.add_argument("--tiny", action="store_true", help="a scaled-down shape, to check the script on a CPU")
    ap.add_argument(
        "--compile", choices=("on", "off", "both"), default="off",
        help="training with each decoder layer torch.compiled (on), eager (off), or both, eager first",
    )  # fmt: skip
    ap.add_argument(
        "--checkpoint-debug", action="store_true",
        help="torch.utils.checkpoint's debug mode: a CheckpointError names the recomputed ops that differ",
    )  # fmt: skip
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from gemma_emotion import fused

    fused.NATIVE_DTYPE = args.norms == "native"
    if args.checkpoint_debug:
        torch.utils.checkpoint.set_checkpoint_debug_enabled(True)
    work = Path(args.workdir or tempfile.mkdtemp())
    rate = matmul_rate()
    result: dict = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "matmul_tflops": rate / 1e12, "norms": args.norms, "runs": [],
    }  # fmt: skip
    print(f"{result['device']}: bf16 matmul {rate / 1e12:.0f} TFLOP/s", flush=True)
    ckpt = shaped_checkpoint(Path(args.tokenizer), work, args.tiny)
    texts = list(load_split(args.data, "test")["text"])[: args.limit]
    stages = args.stages.split(",")

    def record(fn, *a) -> None:
        try:
            result["runs"].append(fn(*a))
        except Exception as exc:  # noqa: BLE001 - an out-of-memory batch is a result too
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            print(msg, flush=True)
            # the arguments minus the texts, which would fill the file
            result["runs"].append({"args": [str(x) for x in a[1:] if not isinstance(x, list)], "error": msg})
        (out / "bench_e4b.json").write_text(json.dumps(result, indent=2) + "\n")

    if "score" in stages:
        prof = out / "score_bf16.txt" if args.profile else None
        record(score, ckpt, texts, False, rate, args.score_batch, prof)
        if torch.cuda.is_available():
            record(score, ckpt, texts, True, rate, args.score_batch, None)
    if "lora" in stages:
        result["runs"] += training(ckpt, args.data, False, args.lora_batches.split(","), args, rate, out)
        (out / "bench_e4b.json").write_text(json.dumps(result, indent=2) + "\n")
    if "qlora" in stages and torch.cuda.is_available():
        result["runs"] += training(ckpt, args.data, True, args.qlora_batches.split(","), args, rate, out)
        (out / "bench_e4b.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(work / "e4b", ignore_errors=True)


if __name__ == "__main__":
    main()
