"""Seconds per row of the app's GPU work, for the ZeroGPU durations in gemma_emotion/ui/state.py.

    python benchmarks/bench_gpu_seconds.py --data ../shared/data/emotion            # embedded model
    python benchmarks/bench_gpu_seconds.py --shape e4b --data ../shared/data/emotion --rows 500 --gen-rows 200

For score and generate mode: the seconds of the first call on a freshly loaded model (what a new ZeroGPU
worker pays, less moving the weights onto the card) and of a second call, per row, beside the figures the
app asks ZeroGPU for (SECONDS_PER_ROW) and the duration it would request for each call. Run it on the card
in question; a ZeroGPU slice is a 3g MIG of an H200, so a whole H200 gives a lower bound.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gemma_emotion.classify import Classifier  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.models import LoadOptions, load_model  # noqa: E402

# The constants the app uses (importing the ui package pulls in gradio, which is installed with the app).
from gemma_emotion.ui.state import GPU_FLOOR_S, SECONDS_PER_ROW  # noqa: E402


def timed_predict(clf: Classifier, texts: list[str], mode: str) -> float:
    if clf.lm.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    clf.predict(texts, mode)
    if clf.lm.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--shape", choices=["real", "e4b"], default="real", help="e4b: random E4B-shaped (GPU)")
    ap.add_argument("--data", default="dair-ai/emotion")
    ap.add_argument("--rows", type=int, default=500, help="score-mode rows (demo mode's evaluation cap)")
    ap.add_argument("--gen-rows", type=int, default=100, help="generate-mode rows")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    lm = load_model(args.model, LoadOptions())
    if args.shape == "e4b":
        from bench_eval import e4b_model

        lm = e4b_model(lm, lm.device)
    texts = list(load_split(args.data, "test", limit=max(args.rows, args.gen_rows), seed=0)["text"])
    results = {"model": args.model if args.shape == "real" else "gemma4-e4b-shaped (random)",
               "device": str(lm.device), "modes": {}}  # fmt: skip
    for mode, rows in (("score", args.rows), ("generate", args.gen_rows)):
        clf = Classifier(lm)  # fresh caches: the first call pays what a new worker pays
        first = timed_predict(clf, texts[:rows], mode)
        second = timed_predict(clf, texts[:rows], mode)
        asked = GPU_FLOOR_S + rows * SECONDS_PER_ROW[mode]
        results["modes"][mode] = {
            "rows": rows,
            "first_s": round(first, 3),
            "second_s": round(second, 3),
            "first_s_per_row": round(first / rows, 5),
            "second_s_per_row": round(second / rows, 5),
            "app_s_per_row": SECONDS_PER_ROW[mode],
            "app_asks_s": round(asked, 1),
        }
    print(f"{results['model']} on {results['device']} (floor {GPU_FLOOR_S} s)")
    head = ("mode", "rows", "first s/row", "second s/row", "app s/row", "app asks s")
    print(f"{head[0]:<9} {head[1]:>5} {head[2]:>12} {head[3]:>13} {head[4]:>10} {head[5]:>11}")
    for mode, r in results["modes"].items():
        print(f"{mode:<9} {r['rows']:>5} {r['first_s_per_row']:>12.5f} {r['second_s_per_row']:>13.5f} "
              f"{r['app_s_per_row']:>10.4f} {r['app_asks_s']:>11.1f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
