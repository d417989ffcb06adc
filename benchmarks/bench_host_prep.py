"""Host-side cost of score mode's preparation, without the model: tokenising (`Classifier.encode`), planning
batches and building padded batches, per text, on the embedded tokenizer and the test + validation texts.

    python benchmarks/bench_host_prep.py [--texts 16384] [--batch 4096]

`predict` does the tokenising in a worker thread beside the thread that launches the model's kernels, so
what matters is the Python time that holds the GIL: `encode` less the tokenizer backend's own time (Rust,
which releases the GIL), plus planning and padding. Runs on the checkout it sits in; it also runs on the
commits before `EncodedTexts` (per-text `Encoded` lists), which is how the before figure was taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gemma_emotion.classify as C  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.models import load_model  # noqa: E402
from gemma_emotion.paths import default_data  # noqa: E402


def best_of(f, reps: int = 7) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=16384)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    texts = [t for split in ("test", "validation") for t in load_split(default_data(), split)["text"]]
    texts = (texts * (args.texts // len(texts) + 1))[: args.texts]
    clf = C.Classifier(load_model(None))
    stripped = [t.strip() for t in texts]
    backend = best_of(lambda: clf._backend(stripped, add_special_tokens=False))
    encode = best_of(lambda: clf.encode(texts))
    enc = clf.encode(texts)
    plan = clf._plan(enc, "score", args.batch)
    planning = best_of(lambda: clf._plan(enc, "score", args.batch))
    cpu, n = torch.device("cpu"), len(clf._prefix_ids)
    if hasattr(C, "EncodedTexts"):

        def pad() -> None:
            for idx in plan:
                batch = enc.take(idx)
                C._left_pad(batch.ids, batch.lengths, 0, cpu)
    else:  # per-text Encoded lists (before 2026-12-03)

        def pad() -> None:
            for idx in plan:
                C._left_pad([enc[i].ids[n:] for i in idx], 0, cpu)

    padding = best_of(pad)
    us = {k: round(v / len(texts) * 1e6, 2) for k, v in
          {"encode": encode, "backend": backend, "plan": planning, "pad": padding}.items()}  # fmt: skip
    us["python_holding_gil"] = round(us["encode"] - us["backend"] + us["plan"] + us["pad"], 2)
    print(json.dumps({"texts": len(texts), "batch": args.batch, "microseconds_per_text": us}))


if __name__ == "__main__":
    main()
