"""The app's classify while a training run shares the device: latency, answers checked, device memory.

    python benchmarks/bench_serve_train.py --model DIR --adapter DIR --data DATA --out OUT.json

Drives the app's own state (`ui.state.AppState`: its model lock, its micro-batcher, its training runner)
without the HTTP layer, so it runs where gradio is not installed (the GPU host). First classify requests
on an idle device (one at a time, then --burst at once), then a training run started through the same
runner as the Train tab (`--train-size` rows, one epoch) and, once it logs its first step, the same requests
again, until the run completes. Every answer is checked against the answer of the same text on the idle
device (label and probabilities). Device memory: this process's peak and the card's used memory (nvidia-smi)
sampled every 0.5 s while both run; the run's status at the end says whether training survived.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemma_emotion.config import TrainConfig  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.settings import load_settings  # noqa: E402
from gemma_emotion.ui.state import AppState  # noqa: E402

TOLERANCE = 2e-3  # bf16 batches of other shapes round differently


def gpu_used_mib() -> int:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return int(out.stdout.split()[0])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return -1


def requests(state: AppState, texts: list[str], burst: int) -> dict:
    """One at a time, then `burst` at once: latencies (s) and the answers."""
    single, answers = [], {}
    for text in texts[:10]:
        t0 = time.perf_counter()
        pred = state.submit_classify(text).result()
        single.append(time.perf_counter() - t0)
        answers[text] = pred
    t0 = time.perf_counter()
    futures = [(text, state.submit_classify(text), time.perf_counter()) for text in texts[:burst]]
    together = []
    for text, fut, sent in futures:
        answers[text] = fut.result()
        together.append(time.perf_counter() - sent)
    wall = time.perf_counter() - t0
    return {
        "single_p50_s": round(statistics.median(single), 4), "single_max_s": round(max(single), 4),
        "burst": burst, "burst_p50_s": round(statistics.median(together), 4),
        "burst_max_s": round(max(together), 4), "burst_requests_per_s": round(burst / wall, 1),
    }, answers  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--train-size", type=int, default=8192)
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5, help="request rounds during training (at most)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    storage = Path(tempfile.mkdtemp(prefix="serve-train-"))
    settings = load_settings(None, env={}, overrides={"storage": str(storage), "demo_mode": False,
                                                      "model": args.model})  # fmt: skip
    state = AppState(settings)
    state.load(args.model, args.adapter)
    state.wait_for_load()
    texts = list(load_split(args.data, "test")["text"])[: max(args.burst, 10)]
    res: dict = {"model": args.model, "adapter": args.adapter, "device": str(state.model.device)}
    idle, reference = requests(state, texts, args.burst)
    requests(state, texts, args.burst)  # every shape met once
    res["idle"], _ = requests(state, texts, args.burst)
    print("idle", json.dumps(res["idle"]), flush=True)

    peak = {"used_mib": gpu_used_mib()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak["used_mib"] = max(peak["used_mib"], gpu_used_mib())
            stop.wait(0.5)

    config = TrainConfig(model=args.model, data=args.data, train_size=args.train_size, test_size=0,
                         name="serve-train")  # fmt: skip
    info = state.runner.start(config)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    while not state.run_log(info.name)[0] and time.time() - t0 < 300:
        if state.find_run(info.name).status != "running":
            break
        time.sleep(0.5)
    res["training_rounds"], wrong = [], 0
    for _ in range(args.rounds):
        if state.find_run(info.name).status != "running":
            break
        measured, answers = requests(state, texts, args.burst)
        for text, pred in answers.items():
            ref = reference[text]
            diff = max(abs(pred.probabilities[k] - ref.probabilities[k]) for k in ref.probabilities)
            wrong += pred.label != ref.label or diff > TOLERANCE
        res["training_rounds"].append(measured)
        print("during training", json.dumps(measured), flush=True)
    while state.find_run(info.name).status == "running" and time.time() - t0 < 600:
        time.sleep(1)
    stop.set()
    sampler.join()
    run = state.find_run(info.name)
    res["wrong_answers"] = wrong
    res["run_status"], res["run_error"] = run.status, run.error
    metrics = dataclasses.asdict(run.metrics) if dataclasses.is_dataclass(run.metrics) else {}
    res["run_metrics"] = {k: v for k, v in metrics.items() if "per_s" in k or "runtime" in k}
    res["card_used_mib_peak"] = peak["used_mib"]
    try:
        import torch

        res["app_process_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    except Exception:  # noqa: BLE001 - no CUDA: nothing to report
        pass
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
