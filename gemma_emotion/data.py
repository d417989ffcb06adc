"""Loading labelled (or unlabelled) texts: the Hub dataset, its bundled copy, a folder of splits, or one file.

Every source becomes a `datasets.Dataset` with a `text` column and an int `label` column (ids of a
`LabelSet`, the six emotions unless another set is given; -1 when the source has no labels). Where a
name leads (`dair-ai/emotion`: the Hub or the bundled copy) is `sources`'s; this module owns:
- which columns hold the text and the label (guessed from their names, or given);
- reading CSV, TSV, JSONL, JSON and Parquet, with one line naming the file, the row and the problem when a
  row is malformed, and the rows that can be dropped instead (empty texts, duplicates, unknown labels),
  counted by reason;
- the label set a file's names make (`label_set_of`), a `preview` of a file before anything runs, seeded
  sampling, and the fingerprints that runs and reports record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np

from gemma_emotion import paths
from gemma_emotion.errors import UserError
from gemma_emotion.files import UNCLOSED_QUOTE, unclosed_quote_line
from gemma_emotion.labels import EMOTIONS, LabelSet, LabelSetError
from gemma_emotion.sources import (
    HUB_DATASET,
    SourceChoice,
    choose_source,
    is_bundled_name,
    remember_hub_failure,
)

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
# Column names that hold the text / the label, in order of preference (compared case-insensitively).
TEXT_COLUMNS = ("text", "sentence", "tweet", "content", "review", "message", "comment", "utterance", "body",
                "document")  # fmt: skip
LABEL_COLUMNS = ("label", "labels", "emotion", "emotions", "class", "category", "sentiment", "target")
NO_LABEL = -1


# What may be dropped instead of refused, and how the counts name it.
EMPTY, DUPLICATE = "empty text", "duplicate text"
MISSING_LABEL, UNKNOWN_LABEL = "missing label", "unknown label"
DROP_ALL = frozenset({EMPTY, DUPLICATE, MISSING_LABEL, UNKNOWN_LABEL})
DROP_CLEANUP = frozenset({EMPTY, DUPLICATE, MISSING_LABEL})  # unknown labels stay an error


class DataError(UserError, ValueError):
    """A data source that cannot be read; the message names the file and row."""


@dataclass(frozen=True)
class DataSource:
    """What the user named, resolved: a Hub dataset id, or the file a split comes from."""

    kind: str  # "hub" | "file"
    ref: str
    split: str


def resolve_source(source: str | Path, split: str = "test") -> DataSource:
    """A folder picks its `<split>.<ext>` file; a file is used as is; `dair-ai/emotion` the Hub or the
    bundled copy (`choose_source`); anything else is a Hub id."""
    if is_bundled_name(source):
        choice = choose_source(source)
        if choice.origin == "hub":
            return DataSource("hub", choice.ref, split)
        source = choice.ref
    path = Path(source).expanduser()
    if path.is_dir():
        for suffix in SUFFIXES:
            candidate = path / f"{split}{suffix}"
            if candidate.is_file():
                return DataSource("file", str(candidate), split)
        raise DataError(f"{path}: no {split}.jsonl, {split}.csv or {split}.parquet in this folder")
    if path.is_file():
        return DataSource("file", str(path), split)
    text = str(source)
    looks_like_path = text.startswith((".", "/", "~")) or Path(text).suffix.lower() in SUFFIXES
    if looks_like_path or text.count("/") != 1:
        raise DataError(f"{text}: no such file or folder (and not a Hub dataset id like dair-ai/emotion)")
    return DataSource("hub", text, split)


# -- reading one split -----------------------------------------------------------------------------------
@dataclass
class Table:
    """One split as read: the rows, the label set they are ids of, which columns were used, what was
    dropped (rows by reason; unknown label values by count) and the note on where the data came from."""

    ds: datasets.Dataset
    labels: LabelSet
    source: str
    split: str
    columns: list[str]
    text_column: str
    label_column: str | None
    n_read: int
    dropped: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    note: str | None = None

    def dropped_text(self) -> str:
        """'3 rows dropped: 2 duplicate text, 1 unknown label (neutral: 1)', or '' when none were."""
        total = sum(self.dropped.values())
        if not total:
            return ""
        parts = [f"{n} {reason}" for reason, n in self.dropped.items()]
        text = f"{total} of {self.n_read} rows dropped: {', '.join(parts)}"
        if self.unknown:
            text += " (" + ", ".join(f"{value}: {n}" for value, n in self.unknown.items()) + ")"
        return text


@dataclass
class _Raw:
    """A source's rows before any checking: (offset, row) pairs and how to name a row in a message."""

    where: str
    rows: list[tuple[int, Any]]
    first_line: int  # 0: rows are counted ("row N"); else line numbers, the first data row's being this
    class_names: list[str] | None = None  # a Hub label column's ClassLabel names

    def at(self, offset: int) -> str:
        if self.first_line == 0:
            return f"{self.where}, row {offset + 1}"
        return f"{self.where}, line {offset + self.first_line}"

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for _, item in self.rows:
            if isinstance(item, dict):
                seen.update(dict.fromkeys(str(k) for k in item))
        return list(seen)


def read_split(
    source: str | Path,
    split: str = "test",
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: LabelSet | None = None,
    require_labels: bool = True,
    drop: Collection[str] = (),
    max_mb: float | None = None,
    max_rows: int | None = None,
) -> Table:
    """Read and check one split; `drop` names the kinds of bad rows to leave out (and count) instead of
    refusing the source (EMPTY, DUPLICATE, MISSING_LABEL, UNKNOWN_LABEL)."""
    choice, raw = _choose_and_read(source, split, max_mb=max_mb, max_rows=max_rows)
    return _table(raw, choice, split, text_column, label_column, labels, require_labels, frozenset(drop))


def load_split(
    source: str | Path,
    split: str = "test",
    *,
    limit: int | None = None,
    stratify: bool = False,
    seed: int = 0,
    require_labels: bool = True,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: LabelSet | None = None,
    drop: Collection[str] = (),
) -> datasets.Dataset:
    """Load one split as a Dataset of (text, label), validated, optionally sub-sampled to `limit` rows.

    Labels are names (any case) or ints of `labels` (the six emotions when None)."""
    table = read_split(
        source, split, text_column=text_column, label_column=label_column, labels=labels,
        require_labels=require_labels, drop=drop,
    )  # fmt: skip
    return sample(table.ds, limit, stratify=stratify, seed=seed)


def label_set_of(
    source: str | Path,
    split: str = "train",
    *,
    label_column: str | None = None,
    order: Literal["first-seen", "sorted"] = "first-seen",
    max_mb: float | None = None,
    max_rows: int | None = None,
) -> LabelSet | None:
    """The label set a source's label names make, in first-seen (or sorted) order; the six emotions in
    their usual order when every name is one of them, so a file of emotion names trains exactly what the
    ids would. None when the labels are ids (they name nothing: the six, or a set given elsewhere), when
    there is no label column, and for a Hub dataset (its ids are the six's; nothing is downloaded)."""
    choice = choose_source(source)
    if resolve_source(choice.ref, split).kind == "hub":
        return None
    _, raw = _choose_and_read(source, split, max_mb=max_mb, max_rows=max_rows)
    column = _label_column(raw, label_column, required=False)
    return _found_labels(raw, column, order) if column else None


def _found_labels(
    raw: _Raw, column: str, order: Literal["first-seen", "sorted"] = "first-seen"
) -> LabelSet | None:
    values = [item.get(column) for _, item in raw.rows if isinstance(item, dict)]
    named = [v for v in values if isinstance(v, str) and v.strip() and not v.strip().isdigit()]
    if not named:
        return None
    if all(v in EMOTIONS for v in named):
        return EMOTIONS
    try:
        return LabelSet.from_data(named, order=order)
    except LabelSetError as exc:
        # With ids in the column too, the names that make no set are stray values of a column of ids: the
        # row check then names each by its line ("line 2: unknown label 'happy'"), which says more.
        if any(_is_id(v) for v in values):
            return None
        raise DataError(f"{raw.where}: its labels do not make a label set: {exc}") from exc


def _is_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.strip().isdigit()
    )


def _choose_and_read(
    source: str | Path, split: str, *, max_mb: float | None, max_rows: int | None
) -> tuple[SourceChoice, _Raw]:
    """Where the name leads and its rows; asked again after reading, since a failed Hub download falls
    back to the bundled copy and the note must say so."""
    choice = choose_source(source)
    raw = _raw_split(choice, split, max_mb=max_mb, max_rows=max_rows)
    if choice.origin == "hub" and is_bundled_name(source):
        choice = choose_source(source)
    return choice, raw


def _raw_split(choice: SourceChoice, split: str, *, max_mb: float | None, max_rows: int | None) -> _Raw:
    try:
        resolved = resolve_source(choice.ref, split)
    except DataError:
        if choice.origin != "bundled":
            raise
        raise DataError(f"the bundled copy of {HUB_DATASET} has no {split!r} split") from None
    if resolved.kind == "hub":
        raw = _hub_rows(resolved)
    else:
        raw = _file_rows(Path(resolved.ref), max_mb)
    if max_rows is not None and len(raw.rows) > max_rows:
        raise DataError(f"{raw.where} has {len(raw.rows):,} rows; the limit here is {max_rows:,}")
    if not raw.rows:
        raise DataError(f"{raw.where}: no rows")
    return raw


def _hub_rows(src: DataSource) -> _Raw:
    try:
        ds = datasets.load_dataset(src.ref, split=src.split)
    except Exception as exc:  # the Hub raises many types: offline, gated, missing split
        if src.ref.lower() == HUB_DATASET:
            # The probe said yes but the download failed: the bundled copy, for the rest of the process.
            remember_hub_failure(HUB_DATASET, f"the Hub failed: {type(exc).__name__}")
            return _file_rows(Path(resolve_source(paths.BUNDLED_DATA, src.split).ref), None)
        raise DataError(f"{src.ref}: could not load split '{src.split}' from the Hub ({exc})") from exc
    class_names = None
    for name, feature in ds.features.items():
        if name.lower() in LABEL_COLUMNS and isinstance(feature, datasets.ClassLabel):
            class_names = list(feature.names)
            break
    return _Raw(f"{src.ref} ({src.split})", list(enumerate(ds.to_list())), 0, class_names)


def _file_rows(path: Path, max_mb: float | None) -> _Raw:
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if max_mb is not None and size > max_mb * 1024 * 1024:
        raise DataError(f"{path} is {size / 1024 / 1024:.1f} MB; the limit here is {max_mb:g} MB")
    if suffix == ".parquet":
        return _Raw(str(path), _parquet_rows(path), 0)
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise DataError(f"{path}: this is a binary file, not {suffix.lstrip('.').upper() or 'text'}")
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: bytes that are not UTF-8 (byte {exc.start})") from exc
    if suffix in (".csv", ".tsv"):
        return _Raw(str(path), _csv_rows(path, content, "\t" if suffix == ".tsv" else None), 2)
    rows, array = _json_rows(path, content)
    return _Raw(str(path), rows, 0 if array else 1)


def _json_rows(path: Path, content: str) -> tuple[list[tuple[int, Any]], bool]:
    """The rows, and whether they came from one JSON array (counted as rows) rather than JSON Lines."""
    stripped = content.lstrip()
    if stripped.startswith("["):  # a JSON array is accepted as well as JSON Lines
        try:
            items = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from exc
        return [(i, item) for i, item in enumerate(items)], True
    rows = []
    for n, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {n}: not valid JSON ({exc.msg})") from exc
        rows.append((n - 1, item))
    return rows, False


def _csv_rows(path: Path, content: str, delimiter: str | None) -> list[tuple[int, dict]]:
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(content[:4096], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    if content.count('"') % 2 and (line := unclosed_quote_line(io.StringIO(content, newline=""), delimiter)):
        raise DataError(f"{path}, line {line}: {UNCLOSED_QUOTE}")
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    rows = []
    try:
        for item in reader:
            if None in item:
                raise DataError(f"{path}, line {reader.line_num}: more fields than the header has")
            rows.append((reader.line_num - 2, item))
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: {exc}") from exc
    if reader.fieldnames is None:
        raise DataError(f"{path}: the file is empty")
    return rows


def _parquet_rows(path: Path) -> list[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    return list(enumerate(table.to_pylist()))


def pick_column(columns: list[str], wanted: tuple[str, ...]) -> str | None:
    """The first name of `wanted` among `columns`, in any case (the first of equal names wins)."""
    by_key = {c.strip().lower(): c for c in reversed(columns)}  # the first of equal names wins
    return next((by_key[name] for name in wanted if name in by_key), None)


def _given_column(raw: _Raw, name: str, what: str) -> str:
    columns = raw.columns
    if name in columns:
        return name
    matches = [c for c in columns if c.strip().lower() == name.strip().lower()]
    if len(matches) == 1:
        return matches[0]
    raise DataError(f"{raw.where}: no {what} column named {name!r} (columns: {', '.join(columns) or 'none'})")


def _text_column(raw: _Raw, given: str | None) -> str:
    if given:
        return _given_column(raw, given, "text")
    found = pick_column(raw.columns, TEXT_COLUMNS)
    if found is None:
        raise DataError(
            f"{raw.where}: no text column (looked for {', '.join(TEXT_COLUMNS[:4])}, ...; found "
            f"{', '.join(raw.columns) or 'no columns'}): name it with --text-column"
        )
    return found


def _label_column(raw: _Raw, given: str | None, required: bool) -> str | None:
    if given:
        return _given_column(raw, given, "label")
    found = pick_column(raw.columns, LABEL_COLUMNS)
    if found is None and required:
        raise DataError(
            f"{raw.where}: no label column (looked for {', '.join(LABEL_COLUMNS[:4])}, ...; found "
            f"{', '.join(raw.columns) or 'no columns'}): name it with --label-column"
        )
    return found


def _table(
    raw: _Raw,
    choice: SourceChoice,
    split: str,
    text_column: str | None,
    label_column: str | None,
    labels: LabelSet | None,
    require_labels: bool,
    drop: frozenset[str],
    allow_empty: bool = False,
) -> Table:
    text_col = _text_column(raw, text_column)
    label_col = _label_column(raw, label_column, required=require_labels)
    labels = labels or EMOTIONS
    texts: list[str] = []
    ids: list[int] = []
    dropped: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    seen: set[str] = set()
    for offset, item in raw.rows:
        if not isinstance(item, dict):
            raise DataError(f"{raw.at(offset)}: expected an object with a text field")
        text = item.get(text_col)
        if text is not None and not isinstance(text, str):
            raise DataError(f"{raw.at(offset)}: '{text_col}' is missing or not a string")
        if text is None or not text.strip():
            if EMPTY in drop:
                dropped[EMPTY] += 1
                continue
            problem = "empty text" if text is not None else f"'{text_col}' is missing or not a string"
            raise DataError(f"{raw.at(offset)}: {problem}")
        value = item.get(label_col) if label_col else None
        if value is None or (isinstance(value, str) and not value.strip()):
            if require_labels:
                if MISSING_LABEL in drop:
                    dropped[MISSING_LABEL] += 1
                    continue
                raise DataError(f"{raw.at(offset)}: missing label")
            label = NO_LABEL
        else:
            if raw.class_names and isinstance(value, int) and 0 <= value < len(raw.class_names):
                value = raw.class_names[value]  # the Hub's ids are of its own names, not of `labels`
            try:
                label = labels.id_of(value)
            except LabelSetError as exc:
                if UNKNOWN_LABEL in drop:
                    dropped[UNKNOWN_LABEL] += 1
                    unknown[str(value)] += 1
                    continue
                raise DataError(f"{raw.at(offset)}: {exc}{_unknown_of(raw, label_col, labels)}") from exc
        if DUPLICATE in drop:
            key = text.strip()
            if key in seen:
                dropped[DUPLICATE] += 1
                continue
            seen.add(key)
        texts.append(text)
        ids.append(label)
    if not texts and not allow_empty:
        raise DataError(f"{raw.where}: no usable rows ({', '.join(f'{n} {r}' for r, n in dropped.items())})")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    return Table(
        ds=datasets.Dataset.from_dict({"text": texts, "label": ids}, features=features),
        labels=labels,
        source=choice.name,
        split=split,
        columns=raw.columns,
        text_column=text_col,
        label_column=label_col,
        n_read=len(raw.rows),
        dropped=dict(dropped),
        unknown=dict(unknown.most_common()),
        note=choice.note if choice.origin != "local" else None,
    )


def _unknown_of(raw: _Raw, column: str | None, labels: LabelSet) -> str:
    """' (labels not in the set: happy, meh)': every value of the column that is not a label, in one go."""
    values = [item.get(column) for _, item in raw.rows if isinstance(item, dict) and column]
    found = labels.unknown(v for v in values if v is not None and not (isinstance(v, str) and not v.strip()))
    more = f" and {len(found) - 20} more" if len(found) > 20 else ""
    return f" (labels not in the set: {', '.join(found[:20])}{more})"


# -- a look before anything runs -------------------------------------------------------------------------
@dataclass
class Preview:
    """What a file holds, as the Train and Evaluate tabs show it before they start."""

    source: str
    columns: list[str]
    text_column: str
    label_column: str | None
    labels: LabelSet | None  # the set the labels were mapped through (found in the data unless given)
    n_read: int
    n_rows: int  # rows kept
    first: list[dict[str, str]]  # the first kept rows: text, label (its name)
    label_counts: dict[str, int]
    dropped: dict[str, int]
    unknown: dict[str, int]
    note: str | None = None

    def summary(self) -> str:
        """One paragraph: rows, columns, labels and counts, what was dropped."""
        parts = [f"{self.n_rows:,} rows usable of {self.n_read:,}"]
        parts.append(f"text column '{self.text_column}'")
        if self.label_column:
            parts.append(f"label column '{self.label_column}'")
        else:
            parts.append("no label column")
        if self.labels is not None and self.label_column:
            counts = ", ".join(f"{name} {n:,}" for name, n in self.label_counts.items())
            parts.append(f"{len(self.labels)} labels ({counts})")
        text = "; ".join(parts) + "."
        if self.dropped:
            text += " Dropped: " + ", ".join(f"{n:,} {reason}" for reason, n in self.dropped.items())
            if self.unknown:
                text += " (" + ", ".join(f"{value!r}: {n:,}" for value, n in list(self.unknown.items())[:10])
                text += ")"
            text += "."
        if self.note:
            text += f" {self.note}."
        return text

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "columns": self.columns,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "labels": list(self.labels.names) if self.labels is not None else None,
            "rows": self.n_rows,
            "rows_read": self.n_read,
            "first": self.first,
            "label_counts": self.label_counts,
            "dropped": self.dropped,
            "unknown_labels": self.unknown,
            "note": self.note,
            "summary": self.summary(),
        }


def preview(
    source: str | Path,
    split: str = "train",
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: LabelSet | None = None,
    first: int = 10,
    max_mb: float | None = None,
    max_rows: int | None = None,
) -> Preview:
    """Read a source as training or evaluation would (every bad row dropped and counted, never refused);
    the label set is the one given, else the one the data's names make (`label_set_of`)."""
    choice, raw = _choose_and_read(source, split, max_mb=max_mb, max_rows=max_rows)
    label_col = _label_column(raw, label_column, required=False)
    if labels is None and label_col is not None:
        labels = _found_labels(raw, label_col) or EMOTIONS  # ids: the six's
    table = _table(
        raw, choice, split, text_column, label_col, labels, label_col is not None, DROP_ALL, allow_empty=True
    )
    shown = [
        {"text": t, "label": table.labels.names[y] if y >= 0 else ""}
        for t, y in zip(table.ds["text"][:first], table.ds["label"][:first])
    ]
    return Preview(
        source=choice.name,
        columns=table.columns,
        text_column=table.text_column,
        label_column=table.label_column,
        labels=table.labels if label_col else None,
        n_read=table.n_read,
        n_rows=len(table.ds),
        first=shown,
        label_counts=label_counts(table.ds, table.labels) if label_col else {},
        dropped=table.dropped,
        unknown=table.unknown,
        note=table.note,
    )


# -- sampling, fingerprints, counts ----------------------------------------------------------------------
def sample(
    ds: datasets.Dataset, limit: int | None, *, stratify: bool = False, seed: int = 0
) -> datasets.Dataset:
    """A seeded subset of `limit` rows, in the original order; stratified on the label when asked."""
    if limit is None or limit >= len(ds):
        return ds
    if limit <= 0:
        raise DataError(f"--limit must be positive, got {limit}")
    return ds.select(sorted(int(i) for i in sample_indices(ds["label"], limit, stratify=stratify, seed=seed)))


def sample_indices(labels: Iterable[int], limit: int, *, stratify: bool, seed: int) -> np.ndarray:
    """The row indices `sample` keeps (unsorted)."""
    labels = np.asarray(list(labels))
    rng = np.random.default_rng(seed)
    if stratify and (labels >= 0).all():
        return _stratified_indices(labels, limit, rng)
    return rng.permutation(len(labels))[:limit]


def _stratified_indices(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    # Largest-remainder allocation keeps every class's share within one row of its proportion.
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts / counts.sum() * limit
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take))[: limit - take.sum()]:
        take[i] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.concatenate(picked)


def fingerprint(ds: datasets.Dataset) -> str:
    """A short content hash of the rows, recorded in runs and reports."""
    h = hashlib.sha256()
    for text, label in zip(ds["text"], ds["label"]):
        h.update(f"{label}\t{text}\n".encode())
    return h.hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (what a run records about a file it was given)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def label_counts(ds: datasets.Dataset, labels: LabelSet = EMOTIONS) -> dict[str, int]:
    counts = np.bincount([x for x in ds["label"] if x >= 0], minlength=len(labels))
    return {name: int(n) for name, n in zip(labels.names, counts)}
