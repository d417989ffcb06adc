"""Gemma 3's norms in bf16 inference: exact fp32 copies against one kernel on bf16 (gemma_emotion/fused.py).

    python benchmarks/bench_norms.py --data ../shared/data/emotion --out benchmarks/results/norms-bf16.json
    python benchmarks/bench_norms.py --data DATA --device cuda --model RANDOM270M   # speed on a GPU

The embedded Gemma 3 270M with the shipped adapter, loaded once in bf16 with its norms fused (as on a GPU),
scores the test split in score mode twice: with `fused.ONE_PLUS_IN_BF16` off (each norm: a cast to fp32,
the kernel with `1 + w` in fp32, a cast back; exact) and on (the kernel on the bf16 activation with `1 + w`
rounded to bf16). Accuracy and macro-F1 (sklearn) of each, labels identical between the two, the largest
probability difference, texts/s. On a CPU the speed says nothing about a GPU's; the labels do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from sklearn.metrics import accuracy_score, f1_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemma_emotion import fused  # noqa: E402
from gemma_emotion.classify import Classifier  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.labels import LABELS  # noqa: E402
from gemma_emotion.models import LoadOptions, load_model, resolve_adapter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--adapter", default=None, help="default: the shipped adapter for embedded")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="the texts this many times over (speed on a GPU)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ds = load_split(args.data, "test", limit=args.limit)
    texts, gold = list(ds["text"]), [LABELS[i] for i in ds["label"]]
    adapter = resolve_adapter(args.model, args.adapter)
    options = LoadOptions(adapter=adapter, device=args.device, dtype="bfloat16", cpu_int8=False)
    lm = load_model(args.model, options)
    fused.fuse_rms_norms(lm.model)  # on a CUDA load this has been done already; a no-op then
    clf = Classifier(lm)
    res: dict = {"rows": len(texts), "device": args.device, "model": args.model, "adapter": lm.adapter}
    if lm.device.type == "cuda":
        res["device"] = torch.cuda.get_device_name()
    probs, labels = {}, {}
    encoded = clf.encode(texts * args.repeat)
    for name, on in (("fp32_copies", False), ("bf16", True)):
        fused.ONE_PLUS_IN_BF16 = on
        clf.score_encoded(encoded.take(slice(256)))  # every kernel met once
        if lm.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        p = clf.score_encoded(encoded)[: len(texts)]
        secs = time.perf_counter() - t0
        probs[name] = p
        labels[name] = [LABELS[int(i)] for i in p.argmax(-1)]
        res[name] = {
            "texts_per_s": round(len(encoded) / secs, 1),
            "accuracy": accuracy_score(gold, labels[name]),
            "macro_f1": f1_score(gold, labels[name], average="macro", labels=list(LABELS)),
        }
        print(name, res[name], flush=True)
    res["identical_labels"] = sum(a == b for a, b in zip(labels["fp32_copies"], labels["bf16"]))
    res["largest_probability_change"] = float((probs["fp32_copies"] - probs["bf16"]).abs().max())
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
