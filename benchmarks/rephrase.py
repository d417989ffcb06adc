"""A copy of the emotion training split where some texts lose their "i feel": the shipped adapter's data.

Why: 99.2 % of dair-ai/emotion's texts say "feel", and of the 206 training rows that do not, 39 % are anger
(13.5 % of all rows). The adapter trained on it learned "no 'feel' means anger": on the 24 sentences of
`benchmarks/data/` it got 24/24 phrased as the dataset is and 6/24 phrased otherwise, 22 of them anger.
Rewriting a fraction of the rows' "i feel X" / "im feeling X" as "i am X", "im X", "i was X" keeps each
text's emotion words and label and breaks that cue.

    python benchmarks/rephrase.py ../shared/data/emotion/train.jsonl runs/rephrased/train.jsonl --fraction 0.3

Rows keep their order and count (training time does not change); the rewrite is seeded.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

# Only where a description follows ("i feel lonely"): "i feel like/that/in ..." read as "i am like/that/in"
# change the meaning or stop being English.
NOT_AFTER = (
    r"(?!(?:like|that|this|it|in|as|the|a|an|all|about|for|with|when|if|to|what|how|my|me|you|we|they|he|she"
    r"|i|its|im|and|but|so|more|less|at|on|because|pretty|really)\b)"
)
PATTERN = re.compile(r"\b(?:i (?:am |m |was |have been |ve been )?|im )feel(?:ing)? " + NOT_AFTER)
PLAIN = ("i am ", "im ", "i was ", "i m ", "i am so ")


def rephrase(text: str, rng: random.Random) -> str | None:
    """The text with its first "i feel" phrase replaced by a plain one, or None when it has none."""
    match = PATTERN.search(text)
    if match is None:
        return None
    return text[: match.start()] + rng.choice(PLAIN) + text[match.end() :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a JSON Lines split with text and label")
    parser.add_argument("out", type=Path, help="where to write the rephrased copy (JSON Lines)")
    parser.add_argument("--fraction", type=float, default=0.3, help="share of the matching rows rewritten")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = [json.loads(line) for line in args.source.read_text(encoding="utf-8").splitlines() if line.strip()]
    changed = 0
    for row in rows:
        if rng.random() < args.fraction:
            new = rephrase(row["text"], rng)
            if new is not None:
                row["text"] = new
                changed += 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    without = sum("feel" not in r["text"] for r in rows)
    print(f"{changed} of {len(rows)} rows rephrased; {without} now without 'feel'; wrote {args.out}")


if __name__ == "__main__":
    main()
