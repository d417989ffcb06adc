"""Data files for the label-set measurements: the emotion split with its labels mapped to other names.

    python benchmarks/label_set_data.py --set valence --out out/valence         # train/validation/test.jsonl
    python benchmarks/label_set_data.py --set renamed --out out/renamed --format csv --limit 400

`valence` (issue 15, set a): negative = sadness, anger, fear; positive = joy, love; surprise.
`renamed` (set b): the six emotions under other names: sad, happy, loving, angry, scared, surprised.
Rows keep their text and order; the label column holds the new name, so training reads the label set
from the data or from `--labels SET_LABELS` (printed by `--print-labels`). Reads the emotion split from a
folder of JSONL files (the shared data, or `GEMMA_EMOTION_DATA`), never the network.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

EMOTIONS = ("sadness", "joy", "love", "anger", "fear", "surprise")  # dair-ai/emotion's ids 0-5
MAPPINGS: dict[str, dict[str, str]] = {
    "valence": {
        "sadness": "negative", "joy": "positive", "love": "positive",
        "anger": "negative", "fear": "negative", "surprise": "surprise",
    },
    "renamed": {
        "sadness": "sad", "joy": "happy", "love": "loving",
        "anger": "angry", "fear": "scared", "surprise": "surprised",
    },
}  # fmt: skip
SPLITS = ("train", "validation", "test")


def set_labels(name: str) -> list[str]:
    """The set's label names in order (the order of the first emotion mapped to each)."""
    return list(dict.fromkeys(MAPPINGS[name][e] for e in EMOTIONS))


def mapped_rows(source: Path, name: str, limit: int | None = None) -> list[dict]:
    """The rows of one emotion JSONL file with their labels renamed; the first `limit` rows when given."""
    mapping = MAPPINGS[name]
    rows = []
    with open(source, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            label = row["label"]
            emotion = EMOTIONS[label] if isinstance(label, int) else str(label).strip().lower()
            rows.append({"text": row["text"], "label": mapping[emotion]})
            if limit is not None and len(rows) >= limit:
                break
    return rows


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["text", "label"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_set(
    source_dir: Path, out_dir: Path, name: str, fmt: str = "jsonl", limit: int | None = None
) -> Path:
    """Write `<split>.<fmt>` for each split of `source_dir` into `out_dir`; returns `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        src = source_dir / f"{split}.jsonl"
        if not src.is_file():
            continue
        path = out_dir / f"{split}.{fmt}"
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(render(mapped_rows(src, name, limit), fmt), encoding="utf-8")
        os.replace(tmp, path)
    return out_dir


def default_source() -> Path:
    env = os.environ.get("GEMMA_EMOTION_DATA")
    if env and Path(env).is_dir():
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--set", choices=sorted(MAPPINGS), required=True)
    p.add_argument("--source", type=Path, default=None, help="folder of train/validation/test.jsonl")
    p.add_argument("--out", type=Path, help="output folder")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--limit", type=int, default=None, help="first N rows of each split")
    p.add_argument("--print-labels", action="store_true", help="print the set's labels, comma-separated")
    args = p.parse_args(argv)
    if args.print_labels:
        print(",".join(set_labels(args.set)))
        return 0
    source = args.source or default_source()
    if not (source / "train.jsonl").is_file():
        print(f"error: no train.jsonl in {source}", file=sys.stderr)
        return 2
    if args.out is None:
        p.error("--out is required")
    out = write_set(source, args.out, args.set, args.format, args.limit)
    print(f"{args.set} ({','.join(set_labels(args.set))}) written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
