"""Padding on a GPU: tokens a batch plan makes the model compute, against the tokens the texts have.

    python benchmarks/padding.py --data DATA [--model embedded] [--batches 256,512,1024]

Runs anywhere (a CPU is enough: only the tokenizer and the batch plan are used, nothing is computed). For
each split and mode, the rows are encoded as `Classifier.predict` encodes them (score mode pads only what
follows the cached system prompt; generate mode pads whole prompts), then cut into batches two ways, both
padded to a multiple of 8 as on a GPU:

- fixed: sorted by length, cut every `batch` rows (the plan before the fourth session);
- planned: `plan_batches` as `predict` runs it on a GPU (also cut where the width grows, once a batch holds
  `MIN_BATCH_TOKENS` tokens).

Prints one table: batches and computed / real tokens for each plan, and the share of work saved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gemma_emotion.classify import MIN_BATCH_TOKENS, PAD_MULTIPLE, Classifier, plan_batches  # noqa: E402
from gemma_emotion.data import load_split  # noqa: E402
from gemma_emotion.models import load_model  # noqa: E402


def computed(plan: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * -(-max(lengths[i] for i in b) // PAD_MULTIPLE) * PAD_MULTIPLE for b in plan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", default="test,validation")
    ap.add_argument("--batches", default="256,512,1024")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    clf = Classifier(load_model(args.model))
    rows = []
    right = zip(("batch", "fixed", "x real", "planned", "x real", "saved"), (6, 8, 8, 9, 8, 7))
    print(f"{'split':<11}{'mode':<9}" + "".join(f"{h:>{w}}" for h, w in right))
    for split in args.splits.split(","):
        encoded = clf._encode_many(list(load_split(args.data, split)["text"]))
        for mode, shared in (("score", 0), ("generate", len(encoded.prefix))):
            lengths = (encoded.lengths + shared).tolist()
            real = sum(lengths)
            for batch in (int(b) for b in args.batches.split(",")):
                fixed = plan_batches(lengths, batch)
                planned = plan_batches(lengths, batch, multiple=PAD_MULTIPLE, min_tokens=MIN_BATCH_TOKENS)
                row = {
                    "split": split, "mode": mode, "batch": batch, "rows": len(lengths), "real_tokens": real,
                    "fixed_batches": len(fixed), "fixed_x": computed(fixed, lengths) / real,
                    "planned_batches": len(planned), "planned_x": computed(planned, lengths) / real,
                }  # fmt: skip
                row["saved"] = 1 - row["planned_x"] / row["fixed_x"]
                rows.append(row)
                print(
                    f"{split:<11}{mode:<9}{batch:>6}{row['fixed_batches']:>8}{row['fixed_x']:>8.2f}"
                    f"{row['planned_batches']:>9}{row['planned_x']:>8.2f}{row['saved']:>7.0%}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps({"min_batch_tokens": MIN_BATCH_TOKENS, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
