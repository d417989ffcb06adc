"""Where the time goes on a GPU: score-mode batches and training steps of the embedded model's shape.

    python benchmarks/profile_gpu.py --shape-from KIT --data DATA --out DIR

KIT is a folder with the embedded model's config and tokenizer files (no weights): the model is built
with random weights, which run exactly as fast as the real ones, so the profile needs no GGUF upload or
conversion. Prints (and writes to DIR/profile.json and DIR/*.txt):
- score mode: examples/s at several batch sizes, the share of encoding, and a torch.profiler table;
- training: examples/s of our trainer at several batch sizes, with and without the lean loss step, and
  a torch.profiler table of a few training steps.
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


def profile_score(model_dir: Path, texts: list[str], out: Path, batches: list[int]) -> dict:
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import load_model

    lm = load_model(str(model_dir))
    clf = Classifier(lm)
    clf.predict(texts[:256], batch_size=256)
    res: dict = {}
    t0 = time.perf_counter()
    clf._encode_many(texts)
    res["encode_s"] = time.perf_counter() - t0
    for b in batches:
        clf.predict(texts[: 2 * b], batch_size=b)
        sync()
        t0 = time.perf_counter()
        clf.predict(texts, batch_size=b)
        sync()
        res[f"score_eps_b{b}"] = len(texts) / (time.perf_counter() - t0)
        print(f"score batch {b}: {res[f'score_eps_b{b}']:.0f} ex/s", flush=True)
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        clf.predict(texts, batch_size=512)
        sync()
    (out / "score_cpu.txt").write_text(table(prof, "self_cpu_time_total"))
    (out / "score_cuda.txt").write_text(table(prof, "self_cuda_time_total"))
    print(table(prof, "self_cpu_time_total", 15))
    print(table(prof, "self_cuda_time_total", 15))
    del lm, clf
    return res


def train_speed(model_dir: Path, data: str, rows: int, batch: int, lean: bool) -> dict:
    import gemma_emotion.train as train_mod
    from gemma_emotion.train import TrainConfig, train

    train_mod.LEAN_LOSS = lean
    runs = Path(tempfile.mkdtemp())
    config = TrainConfig(
        model=str(model_dir), data=data, train_size=rows, batch_size=batch, grad_accum=1, test_size=0,
        name=f"b{batch}-{'lean' if lean else 'trl'}",
    )  # fmt: skip
    torch.cuda.is_available() and torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    info = train(config, runs)
    wall = time.perf_counter() - t0
    m = info.metrics or {}
    r = {
        "batch": batch,
        "lean": lean,
        "status": info.status,
        "error": info.error,
        "examples_per_s": m.get("train_examples_per_s"),
        "runtime_s": m.get("train_runtime_s"),
        "wall_s": round(wall, 1),
        "tokens": m.get("train_tokens"),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    print(json.dumps(r), flush=True)
    train_mod.LEAN_LOSS = True
    return r


def profile_train_steps(model_dir: Path, data: str, out: Path, batch: int) -> None:
    from gemma_emotion.models import load_model
    from gemma_emotion.train import TrainConfig, build_trainer, plan_training

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape-from", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="out/profile")
    ap.add_argument("--train-rows", type=int, default=2048)
    ap.add_argument("--score-rows", type=int, default=None)
    ap.add_argument("--stages", default="score,steps,train")
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
    if "steps" in stages:
        for b in (32, 128):
            profile_train_steps(model_dir, args.data, out, b)
    if "train" in stages:
        result["train"] = [
            train_speed(model_dir, args.data, args.train_rows, b, lean)
            for b, lean in ((32, False), (32, True), (128, True), (256, True))
        ]
    (out / "profile.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
