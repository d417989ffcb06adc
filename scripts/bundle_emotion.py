"""Build the bundled copy of dair-ai/emotion (gemma_emotion/assets/emotion/) from a folder of JSONL splits.

    python scripts/bundle_emotion.py ../shared/data/emotion

Reads `train.jsonl`, `validation.jsonl` and `test.jsonl` ({"text": str, "label": int} a line), checks every
row, and writes one Parquet file a split (zstd, level 19: the 2.4 MB of JSONL become about 1 MB) with the
same rows in the same order, plus `fingerprints.json` (rows and a hash of the (text, label) rows per split,
what the test suite compares). The output does not depend on when or where it is built: running it twice
gives the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing the package

from gemma_emotion.bundle import BUNDLED_SPLITS, bundle_emotion  # noqa: E402
from gemma_emotion.paths import BUNDLED_DATA  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help=f"a folder holding {', '.join(s + '.jsonl' for s in BUNDLED_SPLITS)}")
    parser.add_argument("--out", default=str(BUNDLED_DATA), help=f"default: {BUNDLED_DATA}")
    args = parser.parse_args(argv)
    written = bundle_emotion(args.source, args.out)
    for split, info in written.items():
        print(f"{split:<10} {info['rows']:>6} rows  {info['bytes']:>9,} bytes  {info['fingerprint']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
