"""Score mode's steady state by batch size: the median of several passes over the test split.

    python benchmarks/bench_score_batches.py --data DATA [--adapter assets/adapter] [--batches 256,512,768]

One pass over 2,000 rows takes about 0.2 s on an H200, so a single pass is at the mercy of the host's CPU
(launching kernels) and varies by +-30 %; the median of `--repeat` passes is the figure to compare. The first
pass (every batch shape new) is printed too: it is what a user's first evaluation costs. A batch size is
the most rows a batch may hold: on a GPU `plan_batches` also ends a batch where the padded width grows
(since the fourth session; the third session's table was measured with fixed 512- and 1,024-row cuts).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemma_emotion.classify import Classifier  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.models import LoadOptions, load_model  # noqa: E402


def timed_pass(clf: Classifier, texts: list[str], batch: int) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    clf.predict(texts, batch_size=batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batches", default="256,384,512,768,1024")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    texts = list(load_split(args.data, "test")["text"])
    clf = Classifier(load_model(args.model, LoadOptions(adapter=args.adapter)))
    batches = [int(b) for b in args.batches.split(",")]
    clf.predict(texts[:64], batch_size=batches[0])
    result: dict = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "adapter": args.adapter, "rows": len(texts), "first_pass_batch": batches[0],
        "first_pass_eps": round(timed_pass(clf, texts, batches[0])), "batches": {},
    }  # fmt: skip
    print(f"first pass, batch {batches[0]}: {result['first_pass_eps']} examples/s")
    print(f"{'batch':>6}{'median':>10}{'max':>10}{'min':>10}  examples/s over {args.repeat} passes")
    for b in batches:
        timed_pass(clf, texts, b)
        runs = [timed_pass(clf, texts, b) for _ in range(args.repeat)]
        row = {"median": round(statistics.median(runs)), "max": round(max(runs)), "min": round(min(runs))}
        result["batches"][b] = row
        print(f"{b:>6}{row['median']:>10}{row['max']:>10}{row['min']:>10}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
