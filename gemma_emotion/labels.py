"""The six labels, the system prompt, chat records and the answer parser.

Everything that decides what the model is asked and how its answer is read lives here, so that
training, classification, evaluation and the UI can never disagree about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# dair-ai/emotion order: the integer label i in the dataset is LABELS[i].
LABELS: tuple[str, ...] = ("sadness", "joy", "love", "anger", "fear", "surprise")
LABEL_TO_ID: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
INVALID = "invalid"

SYSTEM_PROMPT = (
    "Read the text and name the emotion it expresses. The answer is one word: "
    "sadness, joy, love, anger, fear or surprise. Write only that word."
)

# Trimmed from both ends before the strict comparison: whitespace, quotes, brackets and end punctuation.
_TRIM = " \t\r\n\"'`*_.,;:!?()[]{}<>«»“”‘’"
_WORD = re.compile(r"[a-z]+")


def build_messages(text: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat prompt for one text: a system turn and a user turn holding the text itself."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": text},
    ]


def to_prompt_completion(text: str, label: int | str, system_prompt: str = SYSTEM_PROMPT) -> dict:
    """A TRL prompt/completion record: only the completion (the label) is trained."""
    name = label if isinstance(label, str) else LABELS[label]
    if name not in LABEL_TO_ID:
        raise ValueError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")
    return {
        "prompt": build_messages(text, system_prompt),
        "completion": [{"role": "assistant", "content": name}],
    }


@dataclass(frozen=True)
class ParsedAnswer:
    """How a raw model answer reads: `label` is set only when the answer is strictly valid."""

    raw: str
    label: str | None
    lenient: str | None

    @property
    def valid(self) -> bool:
        return self.label is not None

    @property
    def predicted(self) -> str:
        return self.label if self.label is not None else INVALID


def parse_answer(raw: str) -> ParsedAnswer:
    """Strict: after trimming, the answer is exactly one label (any case).

    Lenient: the only label word that occurs in the answer ("The emotion is joy." → joy); None when no
    label or several different labels occur. Lenient never decides validity; it is reported alongside.
    """
    core = raw.strip().strip(_TRIM).strip().lower()
    strict = core if core in LABEL_TO_ID else None
    found = {w for w in _WORD.findall(raw.lower()) if w in LABEL_TO_ID}
    lenient = strict or (found.pop() if len(found) == 1 else None)
    return ParsedAnswer(raw=raw, label=strict, lenient=lenient)


def label_id(value: int | str) -> int:
    """Normalise an int, a digit string or a label name to a label id; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"unknown label {value!r}")
    if isinstance(value, int):
        if 0 <= value < len(LABELS):
            return value
        raise ValueError(f"label {value} is outside 0-{len(LABELS) - 1}")
    if isinstance(value, float) and value.is_integer():
        return label_id(int(value))
    if isinstance(value, str):
        s = value.strip().lower()
        if s in LABEL_TO_ID:
            return LABEL_TO_ID[s]
        if s.isdigit():
            return label_id(int(s))
    raise ValueError(f"unknown label {value!r}; expected one of {', '.join(LABELS)} or 0-5")
