"""Loading labelled (or unlabelled) texts: the Hub dataset, a local folder of splits, or a single file.

Every source becomes a `datasets.Dataset` with a `text` column and an int `label` column (-1 when the
source has no labels): ids of a label set, the six emotions unless another set is given (which label
set a file's names make is `label_set_of`). Rows are validated on the way in, and a bad row is reported
with its file and line so a user can fix it; sub-sampling is seeded and reproducible.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from gemma_emotion.errors import UserError
from gemma_emotion.labels import EMOTIONS, LabelSet, LabelSetError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
TEXT_COLUMNS = ("text", "sentence", "content")
LABEL_COLUMNS = ("label", "labels", "emotion")
NO_LABEL = -1


class DataError(UserError, ValueError):
    """A data source that cannot be read; the message names the file and row."""


@dataclass(frozen=True)
class DataSource:
    """What the user named, resolved: a Hub dataset id, or the file a split comes from."""

    kind: str  # "hub" | "file"
    ref: str
    split: str


def resolve_source(source: str | Path, split: str = "test") -> DataSource:
    """A folder picks its `<split>.<ext>` file; a file is used as is; anything else is a Hub id."""
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


def load_split(
    source: str | Path,
    split: str = "test",
    *,
    limit: int | None = None,
    stratify: bool = False,
    seed: int = 0,
    require_labels: bool = True,
    labels: LabelSet | None = None,
) -> datasets.Dataset:
    """Load one split as a Dataset of (text, label), validated, optionally sub-sampled to `limit` rows.

    Labels (names in any case, or ids) become ids of `labels` (default: the six emotions); values that are
    not labels of the set are one DataError naming them all."""
    labels = labels or EMOTIONS
    resolved = resolve_source(source, split)
    if resolved.kind == "hub":
        ds = _load_hub(resolved)
        if labels != EMOTIONS and len(ds) and max(ds["label"]) >= len(labels):
            raise DataError(f"{resolved.ref}: its label ids go past the {len(labels)} labels of the set")
    else:
        rows, first_line = _read_rows(Path(resolved.ref))
        ds = datasets.Dataset.from_dict(
            _validate(Path(resolved.ref), rows, first_line, require_labels, labels)
        )
    return sample(ds, limit, stratify=stratify, seed=seed)


def label_set_of(source: str | Path, split: str = "train") -> LabelSet | None:
    """The label set a file's label names make, in first-seen order; None when its labels are ids (or it
    is a Hub dataset), which mean the six emotions. Names that are all emotions give the six in their
    usual order, so a file of emotion names trains exactly what the ids would."""
    resolved = resolve_source(source, split)
    if resolved.kind == "hub":
        return None
    path = Path(resolved.ref)
    rows, _ = _read_rows(path)
    columns = rows[0][1].keys() if rows and isinstance(rows[0][1], dict) else []
    label_col = next((c for c in LABEL_COLUMNS if c in columns), None)
    if label_col is None:
        return None
    values = [item.get(label_col) for _, item in rows if isinstance(item, dict)]
    named = [v for v in values if isinstance(v, str) and v.strip() and not v.strip().isdigit()]
    if not named:
        return None
    if all(v in EMOTIONS for v in named):
        return EMOTIONS
    try:
        return LabelSet.from_data(named)
    except LabelSetError as exc:
        raise DataError(f"{path}: its labels do not make a label set: {exc}") from exc


def sample(
    ds: datasets.Dataset, limit: int | None, *, stratify: bool = False, seed: int = 0
) -> datasets.Dataset:
    """A seeded subset of `limit` rows, in the original order; stratified on the label when asked."""
    if limit is None or limit >= len(ds):
        return ds
    if limit <= 0:
        raise DataError(f"--limit must be positive, got {limit}")
    labels = np.asarray(ds["label"])
    rng = np.random.default_rng(seed)
    if stratify and (labels >= 0).all():
        idx = _stratified_indices(labels, limit, rng)
    else:
        idx = rng.permutation(len(ds))[:limit]
    return ds.select(sorted(int(i) for i in idx))


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


def label_counts(ds: datasets.Dataset, labels: LabelSet = EMOTIONS) -> dict[str, int]:
    counts = np.bincount([x for x in ds["label"] if x >= 0], minlength=len(labels))
    return {name: int(n) for name, n in zip(labels.names, counts)}


def _load_hub(src: DataSource) -> datasets.Dataset:
    try:
        ds = datasets.load_dataset(src.ref, split=src.split)
    except Exception as exc:  # the Hub raises many types: offline, gated, missing split
        raise DataError(f"{src.ref}: could not load split '{src.split}' from the Hub ({exc})") from exc
    text_col = _pick(ds.column_names, TEXT_COLUMNS, src.ref, "text")
    label_col = _pick(ds.column_names, LABEL_COLUMNS, src.ref, "label")
    ds = ds.select_columns([text_col, label_col])
    if text_col != "text":
        ds = ds.rename_column(text_col, "text")
    if label_col != "label":
        ds = ds.rename_column(label_col, "label")
    return ds


def _pick(columns: list[str], wanted: tuple[str, ...], where: str, what: str) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise DataError(f"{where}: no {what} column (looked for {', '.join(wanted)}; found {', '.join(columns)})")


def _read_rows(path: Path) -> tuple[list[tuple[int, dict]], int]:
    """The file's rows (offset, item) and the line number of its first row (0: rows are not lines)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_rows(path)
        first_line = 0
    else:
        raw = path.read_bytes()
        if b"\x00" in raw[:8192]:
            raise DataError(f"{path}: this is a binary file, not {suffix.lstrip('.').upper() or 'text'}")
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DataError(f"{path}, line {line}: bytes that are not UTF-8 (byte {exc.start})") from exc
        if suffix in (".csv", ".tsv"):
            rows, first_line = _csv_rows(path, content, "\t" if suffix == ".tsv" else None), 2
        else:
            rows, first_line = _json_rows(path, content), 1
    return rows, first_line


def _json_rows(path: Path, content: str) -> list[tuple[int, dict]]:
    stripped = content.lstrip()
    if stripped.startswith("["):  # a JSON array is accepted as well as JSON Lines
        try:
            items = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from exc
        return [(i, item) for i, item in enumerate(items)]
    rows = []
    for n, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {n}: not valid JSON ({exc.msg})") from exc
        rows.append((n - 1, item))
    return rows


def _csv_rows(path: Path, content: str, delimiter: str | None) -> list[tuple[int, dict]]:
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(content[:4096], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    rows = []
    for item in reader:
        if None in item:
            raise DataError(f"{path}, line {reader.line_num}: more fields than the header has")
        rows.append((reader.line_num - 2, item))
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


def _validate(
    path: Path, rows: list[tuple[int, dict]], first_line: int, require_labels: bool, labels: LabelSet
) -> dict:
    if not rows:
        raise DataError(f"{path}: no rows")
    texts, ids = [], []
    unknown: dict[str, None] = {}  # every name that is not a label, so one message lists them all
    first_unknown = ""
    columns = rows[0][1].keys() if isinstance(rows[0][1], dict) else []
    text_col = _pick(list(columns), TEXT_COLUMNS, str(path), "text")
    label_col = next((c for c in LABEL_COLUMNS if c in columns), None)
    if label_col is None and require_labels:
        raise DataError(f"{path}: no label column (looked for {', '.join(LABEL_COLUMNS)})")
    for offset, item in rows:
        where = f"{path}, {'row' if first_line == 0 else 'line'} {offset + max(first_line, 1)}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object with a text field")
        text = item.get(text_col)
        if not isinstance(text, str):
            raise DataError(f"{where}: '{text_col}' is missing or not a string")
        if not text.strip():
            raise DataError(f"{where}: empty text")
        texts.append(text)
        value = item.get(label_col) if label_col else None
        if value is None or value == "":
            if require_labels:
                raise DataError(f"{where}: missing label")
            ids.append(NO_LABEL)
            continue
        try:
            ids.append(labels.id_of(value))
        except LabelSetError as exc:
            if isinstance(value, str) and not value.strip().isdigit():
                first_unknown = first_unknown or f"{where}: {exc}"
                unknown.setdefault(value.strip(), None)
                ids.append(NO_LABEL)
                continue
            raise DataError(f"{where}: {exc}") from exc
    if unknown:
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise DataError(f"{first_unknown} (labels not in the set: {', '.join(list(unknown)[:20])}{more})")
    return {"text": texts, "label": ids}
