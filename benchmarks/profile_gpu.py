"""Where the time goes on a GPU: score-mode batches and training steps of the embedded model's shape.

    python benchmarks/profile_gpu.py --shape-from KIT --data DATA --out DIR

KIT is a folder with the embedded model's config and tokenizer files (no weights): the model is built
with random weights, which run exactly as fast as the real ones, so the profile needs no GGUF upload or
conversion. Prints (and writes to DIR/profile.json and DIR/*.txt):
- score mode: examples/s at several batch sizes, the share of encoding, and a torch.profiler table;
- training: examples/s of our trainer at several batch sizes, with and without the lean loss step, with
  and without the shared prompt prefix (`--train-variants 128:lean,128:lean:whole`), and a
  torch.profiler table of a few training steps.
Speed only: the random model's accuracy means nothing. Needs no gradio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemma_emotion.data import load_split  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def random_model(kit: Path, target: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(kit)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    for f in kit.iterdir():
        if f.name != "config.json" and f.is_file():
            shutil.copy(f, target / f.name)
    return target


def table(prof: torch.profiler.profile, key: str, rows: int = 25) -> str:
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


def random_adapter(model_dir: Path, target: Path) -> Path:
    """A LoRA adapter of the training defaults (r=16 on every decoder projection) with random weights."""
    from peft import LoraConfig, get_peft_model

    from gemma_emotion.models import load_model, lora_target_modules

    lm = load_model(str(model_dir))
    targets = lora_target_modules(lm.model)
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False)
    model = get_peft_model(lm.model, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    model.save_pretrained(target)
    del lm, model
    return target


def cudnn_first_backends() -> list:
    """PyTorch's own attention order on Hopper (cuDNN first), to compare with the project's."""
    from torch.nn.attention import SDPBackend

    from gemma_emotion.models import preferred_sdpa_backends

    cudnn = SDPBackend.CUDNN_ATTENTION
    return [cudnn, *(b for b in preferred_sdpa_backends() if b != cudnn)]


def classify_median_ms(clf, texts: list[str]) -> float:
    """Median single-text classify time, the first ten calls left out (new shapes)."""
    import statistics

    lat = []
    for text in texts:
        sync()
        t0 = time.perf_counter()
        clf.classify(text)
        sync()
        lat.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(lat[10:]), 2)


def profile_score(model_dir: Path, texts: list[str], out: Path, batches: list[int]) -> dict:
    """Score mode over the test split: the first (cold) pass and a second one, without and with an adapter
    (merged, as the app runs it, and unmerged), cuDNN's attention first against the default kernels, then a
    batch sweep, single-text latency and a profiler table. cuDNN last: its plans live per process."""
    from unittest.mock import patch

    import gemma_emotion.models as models_mod
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadOptions, load_model

    res: dict = {}

    def passes(clf: Classifier, name: str, **kw) -> None:
        clf.predict(texts[:64], **kw)  # what bench_eval warms up with
        for label in ("cold", "warm"):
            sync()
            t0 = time.perf_counter()
            clf.predict(texts, **kw)
            sync()
            res[f"{name}_{label}_eps"] = round(len(texts) / (time.perf_counter() - t0), 1)
            print(f"score {name} {label}: {res[f'{name}_{label}_eps']:.0f} ex/s", flush=True)

    lm = load_model(str(model_dir))
    clf = Classifier(lm)
    t0 = time.perf_counter()
    clf._encode_many(texts)
    res["encode_s"] = round(time.perf_counter() - t0, 4)
    passes(clf, "no_adapter")
    del clf, lm

    adapter = random_adapter(model_dir, Path(tempfile.mkdtemp()) / "adapter")
    lm = load_model(str(model_dir), LoadOptions(adapter=str(adapter)))
    clf = Classifier(lm)
    passes(clf, "adapter_merged")
    with patch("gemma_emotion.models._merge_budget", return_value=0):
        lm._merged = None
        clf.invalidate_cache()
        passes(clf, "adapter_unmerged")
    models_mod.FUSE_NORMS = False
    plain_lm = load_model(str(model_dir), LoadOptions(adapter=str(adapter)))
    passes(Classifier(plain_lm), "adapter_merged_unfused_norms")
    models_mod.FUSE_NORMS = True
    del plain_lm
    res["classify_median_ms"] = classify_median_ms(clf, texts[:40])
    print(f"classify median {res['classify_median_ms']} ms", flush=True)
    for b in batches:
        sync()
        t0 = time.perf_counter()
        clf.predict(texts, batch_size=b)
        sync()
        res[f"adapter_merged_b{b}_eps"] = round(len(texts) / (time.perf_counter() - t0), 1)
        print(f"score batch {b}: {res[f'adapter_merged_b{b}_eps']:.0f} ex/s", flush=True)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        clf.predict(texts)
        sync()
    (out / "score_cpu.txt").write_text(table(prof, "self_cpu_time_total"))
    (out / "score_cuda.txt").write_text(table(prof, "self_cuda_time_total"))
    print(table(prof, "self_cuda_time_total", 15))

    models_mod.SDPA_BACKENDS = cudnn_first_backends()
    clf.invalidate_cache()
    passes(clf, "adapter_merged_cudnn_first")
    res["classify_median_ms_cudnn_first"] = classify_median_ms(clf, texts[40:80])
    models_mod.SDPA_BACKENDS = None
    del lm, clf
    return res


def train_speed(
    model_dir: Path,
    data: str,
    rows: int,
    batch: int,
    lean: bool,
    cudnn_first: bool = False,
    shared_prefix: bool = True,
    compile_layers: bool = False,
) -> dict:
    import gemma_emotion.models as models_mod
    import gemma_emotion.train as train_mod
    import gemma_emotion.trainer as trainer_mod
    from gemma_emotion.config import TrainConfig
    from gemma_emotion.train import train

    trainer_mod.LEAN_LOSS = lean
    if cudnn_first:
        models_mod.SDPA_BACKENDS = cudnn_first_backends()
    runs = Path(tempfile.mkdtemp())
    build = train_mod.build_trainer
    if compile_layers:  # issue 20's idea: torch.compile of each decoder layer (inductor, default mode)

        def build_compiled(*a, **k):
            trainer = build(*a, **k)
            for layer in trainer.model.get_base_model().model.layers:
                layer.compile()
            return trainer

        train_mod.build_trainer = build_compiled
    config = TrainConfig(
        model=str(model_dir), data=data, train_size=rows, batch_size=batch, grad_accum=1, test_size=0,
        name=f"b{batch}-{'lean' if lean else 'trl'}{'-cudnn' if cudnn_first else ''}"
        f"{'' if shared_prefix else '-whole'}{'-compiled' if compile_layers else ''}",
        shared_prefix=shared_prefix,
    )  # fmt: skip
    torch.cuda.is_available() and torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        info = train(config, runs)
    finally:
        train_mod.build_trainer = build
    wall = time.perf_counter() - t0
    m = info.metrics or {}
    r = {
        "batch": batch,
        "lean": lean,
        "cudnn_first": cudnn_first,
        # The lean step alone runs the prefix once per batch; TRL's own loss step runs whole rows.
        "shared_prefix": shared_prefix and lean,
        "compiled_layers": compile_layers,
        "status": info.status,
        "error": info.error,
        "examples_per_s": m.get("train_examples_per_s"),
        "runtime_s": m.get("train_runtime_s"),
        "wall_s": round(wall, 1),
        "tokens": m.get("train_tokens"),
        "final_loss": m.get("final_loss"),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    print(json.dumps(r), flush=True)
    trainer_mod.LEAN_LOSS = True
    models_mod.SDPA_BACKENDS = None
    return r


def profile_train_steps(model_dir: Path, data: str, out: Path, batch: int) -> None:
    from gemma_emotion.config import TrainConfig
    from gemma_emotion.models import load_model
    from gemma_emotion.plan import plan_training
    from gemma_emotion.trainer import build_trainer

    lm = load_model(str(model_dir))
    ds = load_split(data, "train", limit=batch * 8, seed=0)
    config = TrainConfig(model="x", batch_size=batch, grad_accum=1)
    plan = plan_training(config, device_type=lm.device.type)
    trainer = build_trainer(lm, ds, config, plan, Path(tempfile.mkdtemp()))
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop, which this bypasses
    batches = [
        {
            k: v.to(lm.device)
            for k, v in trainer.data_collator([trainer.train_dataset[i] for i in range(j, j + batch)]).items()
        }
        for j in range(0, batch * 8, batch)
    ]

    def step(b):
        loss = trainer.training_step(model, b)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        return loss

    for b in batches[:3]:
        step(b)
    sync()
    t0 = time.perf_counter()
    for b in batches[3:]:
        step(b)
    sync()
    per = (time.perf_counter() - t0) / 5
    print(f"train step batch {batch}: {per * 1000:.1f} ms ({batch / per:.0f} ex/s)", flush=True)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        for b in batches[3:6]:
            step(b)
        sync()
    (out / f"train_cpu_b{batch}.txt").write_text(table(prof, "self_cpu_time_total", 40))
    (out / f"train_cuda_b{batch}.txt").write_text(table(prof, "self_cuda_time_total", 40))
    print(table(prof, "self_cpu_time_total", 20))
    print(table(prof, "self_cuda_time_total", 20))


def _train_variants(spec: str) -> list[tuple[int, bool, bool, bool, bool]]:
    """ "128:lean,128:lean:cudnn,128:lean:whole,32:trl" -> (batch, lean loss, cuDNN attention first,
    shared prompt prefix, compiled layers) tuples; "whole" runs every row's whole prompt
    (`--no-shared-prefix`), "compile" torch.compiles each decoder layer."""
    out = []
    for item in spec.split(","):
        batch, *flags = item.split(":")
        out.append(
            (int(batch), "trl" not in flags, "cudnn" in flags, "whole" not in flags, "compile" in flags)
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape-from", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="out/profile")
    ap.add_argument("--train-rows", type=int, default=2048)
    ap.add_argument("--score-rows", type=int, default=None)
    ap.add_argument("--stages", default="score,steps,train")
    ap.add_argument("--train-variants", default="128:lean,128:lean:cudnn,32:lean,32:trl")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = random_model(Path(args.shape_from), Path(tempfile.mkdtemp()) / "model")
    texts = list(load_split(args.data, "test")["text"])
    result: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    result["torch"] = torch.__version__
    stages = args.stages.split(",")
    if "score" in stages:
        result["score"] = profile_score(model_dir, texts[: args.score_rows], out, [256, 512, 1024, 2048])
        (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")
    if "steps" in stages:
        for b in (32, 128):
            profile_train_steps(model_dir, args.data, out, b)
    if "train" in stages:
        result["train"] = [
            train_speed(model_dir, args.data, args.train_rows, b, lean, cudnn, shared, compiled)
            for b, lean, cudnn, shared, compiled in _train_variants(args.train_variants)
        ]
    (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
