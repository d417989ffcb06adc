"""CPU score mode in int8 against fp32: speed, accuracy, agreement (gemma_emotion/int8.py).

    python benchmarks/bench_int8.py --data ../shared/data/emotion --out benchmarks/results/int8-cpu.json

The embedded Gemma 3 270M with the shipped adapter, loaded twice (`LoadOptions(cpu_int8=True/False)`),
scores the whole test split (2,000 rows) in score mode, batch 16 (the CPU default), one after the other in
this process: texts/s, accuracy and macro-F1 (sklearn) of each, labels identical between the two, the
largest probability difference. Then how much a text's probabilities move between being scored alone and
in a batch of 16, for each (--alone texts): the price of int8's rounding, which turns float differences of
1e-6 between batch shapes into differences a user could see.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemma_emotion.classify import Classifier  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.labels import LABELS  # noqa: E402
from gemma_emotion.models import LoadOptions, load_model, shipped_adapter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--alone", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ds = load_split(args.data, "test", limit=args.limit)
    texts, gold = list(ds["text"]), [LABELS[i] for i in ds["label"]]
    res: dict = {
        "rows": len(texts),
        "threads": torch.get_num_threads(),
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }
    preds = {}
    for name, on in (("int8", True), ("fp32", False)):
        clf = Classifier(
            load_model("embedded", LoadOptions(adapter=str(shipped_adapter()), cpu_int8=on, device="cpu"))
        )
        clf.predict(texts[:16])
        t0 = time.perf_counter()
        out = clf.predict(texts)
        secs = time.perf_counter() - t0
        labels = [p.label for p in out]
        alone = [clf.classify(t) for t in texts[: args.alone]]
        moved = [max(abs(a.probabilities[k] - b.probabilities[k]) for k in a.probabilities)
                 for a, b in zip(alone, out)]  # fmt: skip
        res[name] = {
            "texts_per_s": round(len(texts) / secs, 1), "seconds": round(secs, 1),
            "accuracy": accuracy_score(gold, labels), "macro_f1": f1_score(gold, labels, average="macro"),
            "alone_vs_batch_max": max(moved), "alone_vs_batch_median": statistics.median(moved),
            "alone_vs_batch_label_flips": sum(a.label != b.label for a, b in zip(alone, out)),
        }  # fmt: skip
        preds[name] = out
        print(name, json.dumps(res[name]), flush=True)
    pairs = list(zip(preds["int8"], preds["fp32"]))
    res["same_label"] = sum(a.label == b.label for a, b in pairs)
    res["max_prob_diff"] = max(
        abs(a.probabilities[k] - b.probabilities[k]) for a, b in pairs for k in a.probabilities
    )
    res["speedup"] = round(res["int8"]["texts_per_s"] / res["fp32"]["texts_per_s"], 2)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
