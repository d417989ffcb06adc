"""The label set: its names, the system prompt that lists them, chat records and the answer parser.

Everything that decides what the model is asked and how its answer is read lives here, so that
training, classification, evaluation and the UI can never disagree about it. A `LabelSet` is the one
object that carries a set of labels; `EMOTIONS` is the default (dair-ai/emotion's six, in its order), and
the module-level names (`LABELS`, `SYSTEM_PROMPT`, `parse_answer`, ...) are that default's, kept so that
code written for the six labels reads as before.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from gemma_emotion.errors import UserError

INVALID = "invalid"
LABELS_FILE = "labels.json"  # beside an adapter (and in a run folder): the label set it was trained on
MIN_LABELS, MAX_LABELS, MAX_NAME_CHARS = 2, 30, 40

# Trimmed from both ends before the strict comparison: whitespace, quotes, brackets and end punctuation.
_TRIM = " \t\r\n\"'`*_.,;:!?()[]{}<>«»“”‘’"


class LabelSetError(UserError, ValueError):
    """Label names that cannot form a label set, or a label that is not in the set; the message says which."""


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


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of label names; id i is `names[i]`. Names compare case-insensitively.

    `noun` names what the labels are in the system prompt ("emotion"), so a user set of other kinds of
    labels can say so.
    """

    names: tuple[str, ...]
    noun: str = "emotion"
    _keys: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        problems = _problems(names)
        if problems:
            raise LabelSetError(problems)
        object.__setattr__(self, "_keys", {_key(n): i for i, n in enumerate(names)})

    # -- building one ---------------------------------------------------------------------------------
    @classmethod
    def parse(cls, spec: str | Iterable[str], noun: str = "emotion") -> LabelSet:
        """From user input: a comma-separated string or a list; names trimmed, empty entries dropped."""
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        names = [str(n).strip() for n in items]
        return cls(tuple(n for n in names if n), noun=noun)

    @classmethod
    def from_data(
        cls, values: Iterable[object], order: Literal["first-seen", "sorted"] = "first-seen"
    ) -> LabelSet:
        """The label names found in a column of data (ints are refused: they carry no names)."""
        seen: dict[str, str] = {}
        for value in values:
            if value is None or (isinstance(value, float) and value != value):
                continue
            if isinstance(value, bool) or isinstance(value, int | float):
                raise LabelSetError(
                    "the labels in this data are numbers: name them (e.g. --labels negative,positive)"
                )
            name = str(value).strip()
            if name:
                seen.setdefault(_key(name), name)
        names = list(seen.values())
        if order == "sorted":
            names.sort(key=_key)
        return cls(tuple(names))

    # -- what follows from the names ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._keys

    @property
    def is_default(self) -> bool:
        return self == EMOTIONS

    @cached_property
    def system_prompt(self) -> str:
        """The instruction that lists the labels; for the default six it is the exact prompt trained on."""
        listed = ", ".join(self.names[:-1]) + " or " + self.names[-1]
        if all(" " not in n for n in self.names):
            return (
                f"Read the text and name the {self.noun} it expresses. The answer is one word: "
                f"{listed}. Write only that word."
            )
        return (
            f"Read the text and name the {self.noun} it expresses. The answer is one of: "
            f"{listed}. Write only that label."
        )

    def id_of(self, value: object) -> int:
        """Normalise an int, a digit string or a label name (any case) to a label id; LabelSetError else."""
        if isinstance(value, bool):
            raise LabelSetError(f"unknown label {value!r}")
        if isinstance(value, int):
            if 0 <= value < len(self.names):
                return value
            raise LabelSetError(
                f"label {value} is outside 0-{len(self.names) - 1} (the ids of {', '.join(self.names)})"
            )
        if isinstance(value, float) and value.is_integer():
            return self.id_of(int(value))
        if isinstance(value, str):
            s = value.strip()
            if _key(s) in self._keys:
                return self._keys[_key(s)]
            if s.isdigit():
                return self.id_of(int(s))
        raise LabelSetError(
            f"unknown label {value!r}; expected one of {', '.join(self.names)} or 0-{len(self.names) - 1}"
        )

    def name_of(self, value: object) -> str:
        """The label's name as the set spells it."""
        return self.names[self.id_of(value)]

    def unknown(self, values: Iterable[object]) -> list[str]:
        """The distinct values (as text) that are not labels of this set, in first-seen order."""
        out: dict[str, None] = {}
        for value in values:
            try:
                self.id_of(value)
            except LabelSetError:
                out.setdefault(str(value), None)
        return list(out)

    def parse_answer(self, raw: str) -> ParsedAnswer:
        """Strict: after trimming, the answer is exactly one label (any case).

        Lenient: the only label that occurs in the answer as whole words ("The emotion is joy." → joy);
        None when no label or several different labels occur. Lenient never decides validity.
        """
        core = raw.strip().strip(_TRIM).strip()
        strict = self.names[self._keys[_key(core)]] if _key(core) in self._keys else None
        found = {self.names[self._keys[_key(m)]] for m in self._finder.findall(raw)}
        lenient = strict or (found.pop() if len(found) == 1 else None)
        return ParsedAnswer(raw=raw, label=strict, lenient=lenient)

    @cached_property
    def _finder(self) -> re.Pattern[str]:
        # Longest names first, so "very happy" is read as itself and not as "happy".
        alternatives = sorted((re.escape(n) for n in self.names), key=len, reverse=True)
        return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)

    def build_messages(self, text: str, system_prompt: str | None = None) -> list[dict[str, str]]:
        """The chat prompt for one text: a system turn and a user turn holding the text itself."""
        return [
            {"role": "system", "content": system_prompt or self.system_prompt},
            {"role": "user", "content": text},
        ]

    def to_prompt_completion(self, text: str, label: int | str, system_prompt: str | None = None) -> dict:
        """A TRL prompt/completion record: only the completion (the label) is trained."""
        name = self.name_of(label)
        return {
            "prompt": self.build_messages(text, system_prompt),
            "completion": [{"role": "assistant", "content": name}],
        }

    # -- tokens ---------------------------------------------------------------------------------------
    def answer_ids(
        self, tokenizer: Any, *, system_prompt: str | None = None, enable_thinking: bool = False
    ) -> list[list[int]]:
        """Per label, the token ids the chat template writes after the generation prompt: the label, its
        end of turn and what follows it. These are the tokens training teaches, so score mode scores them.

        Rendered once with a placeholder text: what follows the prompt does not depend on the text.
        """
        messages = self.build_messages("x", system_prompt)
        prompt = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        out = []
        for name in self.names:
            full = tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": name}],
                tokenize=False,
                enable_thinking=enable_thinking,
            )
            ids = tokenizer(full, add_special_tokens=False)["input_ids"]
            if ids[: len(prompt_ids)] != prompt_ids:
                raise LabelSetError(f"the chat template renders the prompt differently once {name!r} follows")
            out.append(ids[len(prompt_ids) :])
        return out

    def scored_ids(
        self,
        tokenizer: Any,
        end_ids: Iterable[int],
        *,
        system_prompt: str | None = None,
        enable_thinking: bool = False,
    ) -> list[tuple[int, ...]]:
        """Per label, the tokens score mode scores: the answer up to and including its end of turn.

        The end of turn is part of it so that a label whose tokens begin another's ("sad" and "sad" +
        "ness") still has a probability of its own. Two labels that are the same tokens for this tokenizer
        (say, both unknown words) could never be told apart: LabelSetError names them.
        """
        ends = set(end_ids)
        out: list[tuple[int, ...]] = []
        for ids in self.answer_ids(tokenizer, system_prompt=system_prompt, enable_thinking=enable_thinking):
            end = next((i for i, t in enumerate(ids) if t in ends), None)
            out.append(tuple(ids if end is None else ids[: end + 1]))
        seen: dict[tuple[int, ...], str] = {}
        for name, ids in zip(self.names, out):
            if not ids or (ends and ids[0] in ends):
                raise LabelSetError(f"the tokenizer writes nothing for the label {name!r}")
            if ids in seen:
                raise LabelSetError(
                    f"labels {seen[ids]!r} and {name!r} are the same tokens for this model's tokenizer, "
                    "so no model could tell them apart: rename one"
                )
            seen[ids] = name
        return out

    # -- on disk ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"names": list(self.names), "noun": self.noun}

    @classmethod
    def from_dict(cls, values: dict) -> LabelSet:
        if not isinstance(values, dict) or not isinstance(values.get("names"), list):
            raise LabelSetError("a label set record needs a list of names")
        return cls(tuple(str(n) for n in values["names"]), noun=str(values.get("noun") or "emotion"))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `labels.json` into a folder (an adapter's, a run's), atomically."""
        path = Path(folder) / LABELS_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> LabelSet:
        """The label set saved in a folder; the default six when it holds none (adapters made before)."""
        path = Path(folder) / LABELS_FILE
        if not path.is_file():
            return EMOTIONS
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LabelSetError(f"{path}: not a label set ({exc})") from exc


def _key(name: str) -> str:
    return name.strip().casefold()


def _problems(names: tuple[str, ...]) -> str:
    """What is wrong with these names as a label set, or '' when nothing is."""
    if not all(isinstance(n, str) for n in names):
        return "label names must be text"
    if any(not n.strip() or n != n.strip() for n in names):
        return "label names must be non-empty and trimmed"
    if not MIN_LABELS <= len(names) <= MAX_LABELS:
        return f"a label set has {MIN_LABELS} to {MAX_LABELS} labels; got {len(names)}"
    long = [n for n in names if len(n) > MAX_NAME_CHARS]
    if long:
        return f"label names are at most {MAX_NAME_CHARS} characters: {long[0][:50]!r}…"
    if any(n.casefold() == INVALID for n in names):
        return f"{INVALID!r} is reserved for answers that are not a label"
    seen: set[str] = set()
    for n in names:
        if _key(n) in seen:
            return f"label {n!r} is given twice (names are case-insensitive)"
        seen.add(_key(n))
    return ""


# dair-ai/emotion order: the integer label i in the dataset is LABELS[i].
EMOTIONS = LabelSet(("sadness", "joy", "love", "anger", "fear", "surprise"))

# The default set's names, kept for code written for the six labels.
LABELS: tuple[str, ...] = EMOTIONS.names
LABEL_TO_ID: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
SYSTEM_PROMPT = EMOTIONS.system_prompt


def build_messages(text: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The default set's chat prompt for one text."""
    return EMOTIONS.build_messages(text, system_prompt)


def to_prompt_completion(text: str, label: int | str, system_prompt: str = SYSTEM_PROMPT) -> dict:
    """The default set's TRL prompt/completion record."""
    return EMOTIONS.to_prompt_completion(text, label, system_prompt)


def parse_answer(raw: str) -> ParsedAnswer:
    """The default set's parser (see `LabelSet.parse_answer`)."""
    return EMOTIONS.parse_answer(raw)


def label_id(value: int | str) -> int:
    """The default set's id of an int, a digit string or a label name; ValueError otherwise."""
    return EMOTIONS.id_of(value)
