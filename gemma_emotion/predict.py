"""Label a whole file: read it in chunks, label each chunk, write the output as it goes, resume after a crash.

Owns `label_texts` (a list of texts → label columns; the app's batch paths use it too), the readers and
writers of CSV/TSV/JSONL/Parquet files in chunks, the resume record, the split of each chunk between the
processes of `torchrun` / `accelerate launch`, and the run summary. No argparse and no printing: progress
goes to a callback and the summary comes back as a `PredictSummary`. The app labels an uploaded file with
the same `predict_file`, giving it a `labeler` that labels each chunk in pieces under its model lock.

Durability and resume. Before the first row is written a record `OUTPUT.progress.json` is written
(atomically); after each complete chunk the output is flushed to disk (fsync) and then the record is updated
with the rows done, the output's byte length and the label counts so far. A rerun with the same OUTPUT finds
the record, checks that the input and the options are the ones it was started with, cuts the output back to
the recorded length (dropping a chunk a crash left half-written) and continues with the next row, so no row
is written twice. CSV, TSV and JSONL are appended to OUTPUT itself. A Parquet file cannot be appended to
(its index is written last), so each chunk becomes a part file `OUTPUT.parts/part-NNNNNN.parquet` (written
to a temporary name, then renamed), and when every chunk is done the parts are copied into OUTPUT as its
row groups, one part at a time, and removed. `overwrite` starts over.

Memory is bounded by the chunk size: at most a chunk being read and tokenised in a worker thread, one being
labelled and one being written are held at a time, whatever the length of the file.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gemma_emotion.data import TEXT_COLUMNS
from gemma_emotion.distributed import Ranks
from gemma_emotion.errors import UserError
from gemma_emotion.files import atomic_write_json, spreadsheet_safe_table
from gemma_emotion.labels import INVALID

if TYPE_CHECKING:
    from gemma_emotion.classify import Classifier, EncodedTexts

INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
STATE_SUFFIX = ".progress.json"
PARTS_SUFFIX = ".parts"
LOCK_SUFFIX = ".lock"
STATE_VERSION = 1
PROB_PREFIX = "p_"
NO_LABEL = -1  # Labels.index of an empty text (an answer that is none of the labels: len(names))
INPUT_PREFIX = "input_"  # an input column named like an output column is kept under this prefix
HEAD_BYTES = 1 << 20  # the input's first MiB is hashed into its fingerprint
# Read and tokenise the next chunk, and write the last one, in worker threads while the model labels this
# one; benchmarks switch it off to measure what it gives.
OVERLAP = True
CUDA_CHUNK = 16384  # rows per chunk on a GPU: ~1 s of work, and long enough to batch texts by length well
CPU_CHUNK = 512  # on a CPU a chunk of this size is 10-20 s of work between two durable points
_CSV_BLOCK = 1 << 22  # bytes pyarrow's CSV reader parses at a time

Progress = Callable[[int, "int | None"], None]  # (rows done, rows in all or None when unknown)
ChunkHook = Callable[[pa.Table, "Labels"], None]  # (input rows, their labels), before they are written
# Labels a chunk's prepared texts in place of `label_texts(clf, ...)`, reporting (rows done, rows) within it.
Labeler = Callable[["Prepared", Callable[[int, int], None]], "Labels"]


class PredictError(UserError, ValueError):
    """Input, output or resume record that cannot be used; the message is the whole story for the user."""


CLI_COLUMN_HINT = "name it with --text-column"


class TextColumnError(PredictError):
    """The input has no column of a known text name (`wanted` None), or not the one asked for. The message
    ends with how to name the column; `message(hint)` gives it with the hint of another caller (the app
    names its field where the command names its flag)."""

    def __init__(self, name: str, columns: Sequence[str], wanted: str | None = None) -> None:
        self.name, self.columns, self.wanted = name, list(columns), wanted
        super().__init__(self.message(CLI_COLUMN_HINT))

    def message(self, hint: str) -> str:
        found = ", ".join(self.columns) or "none"
        if self.wanted is not None:
            return f"{self.name}: no column {self.wanted!r} (found {found})"
        return f"{self.name}: no text column (looked for {', '.join(TEXT_COLUMNS)}; found {found}); {hint}"

    def __reduce__(self):  # a custom __init__: pickled (between processes) by its arguments
        return type(self), (self.name, self.columns, self.wanted)


# -- labelling a list of texts --------------------------------------------------------------------------
def is_empty(text: Any) -> bool:
    """Rows with no text to classify (missing, not a string, or only whitespace): labelled null, counted."""
    return not isinstance(text, str) or not text.strip()


@dataclass
class Prepared:
    """Texts ready for the model: which of them are non-empty and (score mode) their token ids. Made in a
    worker thread while the model labels the previous chunk."""

    texts: list[str | None]
    keep: list[int]  # indices of the non-empty texts
    encoded: EncodedTexts | None

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, rows: slice) -> Prepared:
        """The texts of `rows` (a slice without a step), as a Prepared of their own."""
        start, stop, _ = rows.indices(len(self.texts))
        lo, hi = bisect.bisect_left(self.keep, start), bisect.bisect_left(self.keep, stop)
        encoded = None if self.encoded is None else self.encoded.take(slice(lo, hi))
        return Prepared(self.texts[start:stop], [i - start for i in self.keep[lo:hi]], encoded)


def prepare_texts(clf: Classifier, texts: Sequence[str | None], tokenize: bool = True) -> Prepared:
    texts = list(texts)
    keep = [i for i, t in enumerate(texts) if not is_empty(t)]
    encoded = clf.encode([texts[i] for i in keep]) if tokenize else None
    return Prepared(texts, keep, encoded)


@dataclass
class Labels:
    """Labels of n texts, as columns in input order. Empty texts have no label, no probabilities."""

    mode: str
    names: tuple[str, ...]  # the label set's names, in its order
    index: np.ndarray  # int8 (n,): position in names; NO_LABEL: empty text; len(names): invalid answer
    empty: np.ndarray  # bool (n,)
    truncated: np.ndarray  # bool (n,): cut to the model's text limit (MAX_TEXT_TOKENS)
    probabilities: np.ndarray | None = None  # float32 (n, 6), NaN rows for empty texts (score mode)
    raw: list[str | None] | None = None  # the model's answer (generate mode)
    lenient: list[str | None] | None = None
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.index)

    @property
    def label(self) -> list[str | None]:
        return self._names().to_pylist()

    @property
    def valid(self) -> np.ndarray:
        return (self.index >= 0) & (self.index < len(self.names))

    @property
    def confidence(self) -> np.ndarray | None:
        if self.probabilities is None:
            return None
        out = np.full(len(self), np.nan, dtype=np.float32)
        rows = ~self.empty
        if rows.any():
            out[rows] = self.probabilities[rows].max(axis=1)
        return out

    def _names(self) -> pa.Array:
        # Label names from their positions without a Python loop: a dictionary array, decoded.
        indices = pa.array(self.index, pa.int8(), mask=self.empty)
        return pa.DictionaryArray.from_arrays(indices, pa.array([*self.names, INVALID])).cast(pa.string())

    def columns(self) -> dict[str, pa.Array]:
        """The output columns: label, confidence and p_<label> (score) or label, raw, valid (generate)."""
        cols = {"label": self._names()}
        mask = self.empty if self.empty.any() else None
        if self.mode == "score":
            cols["confidence"] = pa.array(self.confidence, pa.float32(), mask=mask)
            for j, name in enumerate(self.names):
                cols[PROB_PREFIX + name] = pa.array(self.probabilities[:, j], pa.float32(), mask=mask)
        else:
            cols["raw"] = pa.array(self.raw, pa.string())
            cols["valid"] = pa.array(self.valid, pa.bool_(), mask=mask)
        return cols

    def counts(self) -> Counts:
        found = np.bincount(self.index[~self.empty].astype(np.int64), minlength=len(self.names) + 1)
        return Counts(rows=len(self), labels={n: int(k) for n, k in zip(self.names, found) if k},
                      invalid=int(found[len(self.names)]), empty=int(self.empty.sum()),
                      cut=int(self.truncated.sum()))  # fmt: skip

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per text in the shape of `Prediction.to_dict()` (the app's API answers)."""
        per_text = self.seconds * 1000 / max(1, len(self))
        out = []
        for i, (label, valid) in enumerate(zip(self.label, self.valid.tolist())):
            probs = None
            if self.probabilities is not None and not self.empty[i]:
                probs = {name: float(p) for name, p in zip(self.names, self.probabilities[i])}
            out.append({
                "label": label,
                "valid": None if self.empty[i] else valid,
                "probabilities": probs,
                "raw": self.raw[i] if self.raw is not None else label,
                "lenient": self.lenient[i] if self.lenient is not None else label,
                "mode": self.mode,
                "latency_ms": round(per_text, 2),
                "truncated": bool(self.truncated[i]),
            })  # fmt: skip
        return out

    @classmethod
    def from_dicts(
        cls, rows: Sequence[Mapping[str, Any]], names: Sequence[str], mode: str = "score"
    ) -> Labels:
        """The Labels that `to_dicts` gave `rows` (the app's answers), back as columns, so labels the app
        holds as dicts are written as predict writes its own (`output_table`, `encode_table`). A row without
        a label is an empty text; a label outside `names` an invalid answer."""
        names = tuple(names)
        n = len(rows)
        empty = np.array([row.get("label") is None for row in rows], dtype=bool)
        index = np.full(n, NO_LABEL, dtype=np.int8)
        for i, row in enumerate(rows):
            if not empty[i]:
                index[i] = names.index(row["label"]) if row["label"] in names else len(names)
        truncated = np.array([bool(row.get("truncated")) for row in rows], dtype=bool)
        if mode == "score":
            probs = np.full((n, len(names)), np.nan, dtype=np.float32)
            for i, row in enumerate(rows):
                if row.get("probabilities"):
                    probs[i] = [row["probabilities"][name] for name in names]
            return cls(mode, names, index, empty, truncated, probabilities=probs)
        return cls(mode, names, index, empty, truncated, raw=[row.get("raw") for row in rows],
                   lenient=[row.get("lenient") for row in rows])  # fmt: skip

    @classmethod
    def concat(cls, parts: Sequence[Labels]) -> Labels:
        """Parts labelled by several processes, joined in order."""
        first = parts[0]

        def joined(name: str) -> list | None:
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else [v for part in values for v in part]

        probs = None
        if first.probabilities is not None:
            probs = np.concatenate([p.probabilities for p in parts])
        return cls(
            mode=first.mode,
            names=first.names,
            index=np.concatenate([p.index for p in parts]),
            empty=np.concatenate([p.empty for p in parts]),
            truncated=np.concatenate([p.truncated for p in parts]),
            probabilities=probs,
            raw=joined("raw"),
            lenient=joined("lenient"),
            seconds=max(p.seconds for p in parts),
        )


def label_texts(
    clf: Classifier,
    texts: Sequence[str | None] | Prepared,
    mode: str = "score",
    *,
    adapter: bool = True,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Labels:
    """Label texts with the classifier, in input order. Empty texts (None, "", whitespace) are not sent to
    the model: they get no label and are counted. Texts over the model's limit are cut, as
    `Classifier.predict` cuts them, and flagged in `truncated`."""
    from gemma_emotion.classify import MODES

    if mode not in MODES:
        raise PredictError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    start = time.perf_counter()
    prep = texts if isinstance(texts, Prepared) else prepare_texts(clf, texts)
    names = tuple(clf.labels.names)
    n, keep = len(prep.texts), np.asarray(prep.keep, dtype=np.int64)
    encoded = prep.encoded if prep.encoded is not None else clf.encode([prep.texts[i] for i in prep.keep])
    empty = np.ones(n, dtype=bool)
    empty[keep] = False
    truncated = np.zeros(n, dtype=bool)
    truncated[keep] = encoded.truncated
    index = np.full(n, NO_LABEL, dtype=np.int8)
    if mode == "score":
        probs = np.full((n, len(names)), np.nan, dtype=np.float32)
        if len(keep):
            scored = clf.score_encoded(encoded, adapter=adapter, batch_size=batch_size, progress=progress)
            probs[keep] = scored.numpy()
            index[keep] = probs[keep].argmax(axis=1)  # the first of equal values, as Classifier.predict
        return Labels(mode, names, index, empty, truncated, probabilities=probs,
                      seconds=time.perf_counter() - start)  # fmt: skip
    raw: list[str | None] = [None] * n
    lenient: list[str | None] = [None] * n
    if len(keep):
        preds = clf.predict([prep.texts[i] for i in prep.keep], "generate", adapter=adapter,
                            batch_size=batch_size, progress=progress, encoded=encoded)  # fmt: skip
        for i, pred in zip(prep.keep, preds):
            index[i] = names.index(pred.label) if pred.valid else len(names)
            raw[i], lenient[i] = pred.raw, pred.lenient
    return Labels(mode, names, index, empty, truncated, raw=raw, lenient=lenient,
                  seconds=time.perf_counter() - start)  # fmt: skip


def output_names(mode: str, names: Sequence[str]) -> list[str]:
    """The columns predict adds after the input's own, for a label set's `names`."""
    if mode == "score":
        return ["label", "confidence", *[PROB_PREFIX + name for name in names]]
    return ["label", "raw", "valid"]


def default_chunk_size(clf: Classifier) -> int:
    return CUDA_CHUNK if clf.lm.device.type == "cuda" else CPU_CHUNK


# -- the summary ----------------------------------------------------------------------------------------
@dataclass
class Counts:
    """What the output holds so far: rows, label counts, invalid answers, empty and cut texts."""

    rows: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    empty: int = 0
    cut: int = 0

    def add(self, other: Counts) -> None:
        self.rows += other.rows
        self.invalid += other.invalid
        self.empty += other.empty
        self.cut += other.cut
        for name, n in other.labels.items():
            self.labels[name] = self.labels.get(name, 0) + n

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        return cls(**{k: data[k] for k in ("rows", "labels", "invalid", "empty", "cut")})


@dataclass
class PredictSummary:
    """The end of a predict run. Counts cover the whole output (rows labelled before a resume included);
    `labelled` and the rates cover this run only."""

    output: str
    rows: int  # rows in the output
    labelled: int  # rows labelled by this run
    skipped: int  # rows found done by an earlier run and not labelled again
    label_counts: dict[str, int]
    invalid: int  # generate mode: answers that are not one of the labels
    empty: int  # rows without text: null label
    cut: int  # texts over the model's limit, labelled from their start
    seconds: float  # from the first row read to the output complete
    setup_seconds: float  # before the first row read (checks, the resume record, the writer)
    texts_per_s: float  # labelled / seconds
    processes: int = 1
    limited: bool = False  # stopped at `max_rows` with rows left in the input
    mode: str = "score"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- reading ----------------------------------------------------------------------------------------------
def _arrow_error(path: Path, exc: Exception) -> PredictError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return PredictError(f"{path.name}: cannot read it ({text})")


@dataclass
class Source:
    """An input file: its format, columns, the text column, and a reader of its rows in pieces."""

    path: Path
    fmt: str  # csv | tsv | jsonl | json | parquet
    columns: list[str]
    text_column: str
    delimiter: str = ","
    rows_hint: int | None = None  # rows in the file: exact for Parquet, a line count otherwise

    @classmethod
    def open(cls, path: str | os.PathLike, text_column: str | None = None) -> Source:
        """The file checked, its columns read and its text column chosen: `text_column`, else the first of
        TEXT_COLUMNS present (TextColumnError when there is none, or no column of that name)."""
        source = cls.probe(path)
        source.text_column = _pick_text_column(source.path, source.columns, text_column)
        source.rows_hint = source._count_rows()
        if source.rows_hint == 0:
            raise PredictError(f"{source.path.name}: no rows")
        return source

    @classmethod
    def probe(cls, path: str | os.PathLike) -> Source:
        """The file checked and its columns read from its start, no text column chosen yet (`text_column`
        is ""): what the app offers in its text-column field after an upload."""
        path = Path(path)
        if not path.exists():
            raise PredictError(f"{path}: no such file")
        if path.is_dir():
            raise PredictError(f"{path}: this is a folder; give a .csv, .tsv, .jsonl or .parquet file")
        suffix = path.suffix.lower()
        if suffix not in INPUT_SUFFIXES:
            raise PredictError(f"{path.name}: use a .csv, .tsv, .jsonl, .json or .parquet file")
        fmt = suffix.lstrip(".")
        if fmt != "parquet":
            with open(path, "rb") as fh:
                head = fh.read(8192)
            if b"\x00" in head:
                raise PredictError(f"{path.name}: this is a binary file, not {fmt.upper()}")
            if not head.strip():
                raise PredictError(f"{path.name}: the file is empty")
        source = cls(path, fmt, [], "")
        if fmt in ("csv", "tsv"):
            source.delimiter = "\t" if fmt == "tsv" else _sniff_delimiter(head)
        source.columns = source._probe_columns()
        return source

    def _probe_columns(self) -> list[str]:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                return list(pq.read_schema(self.path).names)
            except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
                raise PredictError(f"{self.path.name}: not a readable Parquet file ({exc})") from exc
        if self.fmt in ("csv", "tsv"):
            import pyarrow.csv as pa_csv

            try:
                with pa_csv.open_csv(self.path, *self._csv_options()[:2]) as reader:
                    return list(reader.schema.names)
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                raise _arrow_error(self.path, exc) from exc
        first = self._first_json_record()
        return list(first)

    def _first_json_record(self) -> dict:
        with open(self.path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                if number == 1:
                    line = line.removeprefix(b"\xef\xbb\xbf")
                    if line.lstrip().startswith(b"["):
                        self.fmt = "json-array"
                        items = _json_array(self.path)
                        if not items:
                            raise PredictError(f"{self.path.name}: no rows")
                        return items[0]
                try:
                    item = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise PredictError(f"{self.path.name}, line {number}: not valid JSON ({exc})") from exc
                if not isinstance(item, dict):
                    raise PredictError(
                        f"{self.path.name}, line {number}: expected an object with a text field"
                    )
                return item
        raise PredictError(f"{self.path.name}: no rows")

    def _csv_options(self, names: Sequence[str] = ()) -> tuple:
        import pyarrow.csv as pa_csv

        read = pa_csv.ReadOptions(block_size=_CSV_BLOCK)
        # Texts may hold line breaks inside quotes; every column is read as text, so a value far down the
        # file can never contradict a type guessed from the first block, and the output keeps it verbatim.
        parse = pa_csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)
        convert = pa_csv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        return read, parse, convert

    def _count_rows(self) -> int | None:
        """Rows for the progress bar's ETA: Parquet's own count, else the lines (a quoted line break
        counts twice, so for CSV it is an estimate)."""
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        if self.fmt == "json-array":
            return len(_json_array(self.path))
        lines, last = 0, b"\n"
        with open(self.path, "rb") as fh:
            while block := fh.read(1 << 24):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"
        return max(0, lines - (1 if self.fmt in ("csv", "tsv") else 0))

    def fingerprint(self) -> dict[str, Any]:
        """Size, modification time and a hash of the first MiB: a changed input is not resumed into."""
        stat = self.path.stat()
        with open(self.path, "rb") as fh:
            head = hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()[:16]
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "head_sha256": head}

    def tables(self) -> Iterator[pa.Table]:
        """The rows in pieces of whatever size the reader yields, in file order."""
        try:
            if self.fmt == "parquet":
                yield from self._parquet_tables()
            elif self.fmt in ("csv", "tsv"):
                yield from self._csv_tables()
            elif self.fmt == "json-array":
                yield pa.Table.from_pylist(_json_array(self.path))
            else:
                yield from self._jsonl_tables()
        except PredictError:
            raise
        except (pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
            raise _arrow_error(self.path, exc) from exc

    def _parquet_tables(self) -> Iterator[pa.Table]:
        import pyarrow.parquet as pq

        with pq.ParquetFile(self.path) as file:
            for batch in file.iter_batches(batch_size=65536):
                yield pa.Table.from_batches([batch])

    def _csv_tables(self) -> Iterator[pa.Table]:
        import pyarrow.csv as pa_csv

        with pa_csv.open_csv(self.path, *self._csv_options(self.columns)) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch])

    def _jsonl_tables(self) -> Iterator[pa.Table]:
        import pandas as pd

        # dtype=False keeps every value as JSON gave it (no guessing of dates or numbers from strings).
        with pd.read_json(self.path, lines=True, chunksize=8192, dtype=False, convert_dates=False,
                          encoding="utf-8-sig") as reader:  # fmt: skip
            for frame in reader:
                try:
                    yield pa.Table.from_pandas(frame, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise PredictError(
                        f"{self.path.name}: a column mixes kinds of values (numbers and text, say) ({exc})"
                    ) from exc

    def rows_over(self, limit: int) -> int | None:
        """The rows when there are more than `limit`, else None. The file is read only when the quick count
        is over the limit: that count is Parquet's own, or the lines of a text file, which are never fewer
        than its rows (a quoted line break or a blank line is a line and no row)."""
        if self.rows_hint is not None and self.rows_hint <= limit:
            return None
        rows = sum(table.num_rows for table in self.tables())
        return rows if rows > limit else None

    def chunks(self, size: int, skip: int = 0, limit: int | None = None) -> Iterator[pa.Table]:
        """Tables of exactly `size` rows (the last one shorter), after the first `skip` rows, at most
        `limit` rows in all. Readers yield pieces of their own sizes; chunks of a fixed size make the
        resume points the same whatever the reader did."""
        pending: list[pa.Table] = []
        held, to_skip, budget = 0, skip, limit  # budget: rows still to take (None: all)
        for table in self.tables():
            if to_skip:
                dropped = min(to_skip, table.num_rows)
                table, to_skip = table.slice(dropped), to_skip - dropped
            if budget is not None:
                table = table.slice(0, budget)
                budget -= table.num_rows
            if table.num_rows:
                pending.append(table)
                held += table.num_rows
            while held >= size:
                whole = _concat(pending)
                yield whole.slice(0, size)
                pending, held = [whole.slice(size)], held - size
            if budget == 0:
                break
        if held:
            yield _concat(pending)


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows] or tables[:1]
    if len(tables) == 1:
        return tables[0]
    # JSON pieces may disagree on a column's type (all-null in one piece) or on which keys they hold.
    return pa.concat_tables(tables, promote_options="permissive")


def _json_array(path: Path) -> list:
    """A .json file holding one array: read whole (not streamed), as the app's uploads may be."""
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PredictError(f"{path.name}: not valid JSON ({exc})") from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PredictError(f"{path.name}: expected JSON Lines or an array of objects with a text field")
    return items


def _sniff_delimiter(head: bytes) -> str:
    """The .csv file's delimiter, as data.py reads CSV files (comma, semicolon, tab or bar)."""
    try:
        return csv.Sniffer().sniff(head.decode("utf-8", "ignore"), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def guess_text_column(columns: Sequence[str]) -> str | None:
    """The column predict labels when none is named: the first of TEXT_COLUMNS present, exactly so named."""
    return next((name for name in TEXT_COLUMNS if name in columns), None)


def _pick_text_column(path: Path, columns: list[str], wanted: str | None) -> str:
    if wanted:
        if wanted not in columns:
            raise TextColumnError(path.name, columns, wanted)
        return wanted
    found = guess_text_column(columns)
    if found is None:
        raise TextColumnError(path.name, columns)
    return found


def _texts_of(table: pa.Table, column: str, path: Path) -> list[str | None]:
    if column not in table.column_names:  # JSON rows without the key
        return [None] * table.num_rows
    values = table.column(column)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        try:
            values = pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise PredictError(f"{path.name}: column {column!r} does not hold text ({values.type})") from exc
    return values.to_pylist()


# -- writing ------------------------------------------------------------------------------------------------
def _output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise PredictError(f"{path.name}: the output must end in .csv, .tsv, .jsonl or .parquet")
    return suffix.lstrip(".")


def output_table(inputs: pa.Table, labels: Labels) -> pa.Table:
    """Every input column (renamed `input_<name>` when the name is an output column's), then the labels."""
    added = labels.columns()
    names = []
    for name in inputs.column_names:
        while name in added:
            name = INPUT_PREFIX + name
        names.append(name)
    table = inputs.rename_columns(names)
    for name, values in added.items():
        table = table.append_column(name, values)
    return table


class _TextSink:
    """CSV, TSV or JSONL appended to the output file; `write` returns the durable length after a chunk."""

    def __init__(self, path: Path, fmt: str, offset: int, columns: list[str] | None) -> None:
        self.path, self.fmt, self.columns = path, fmt, columns
        self.fh = open(path, "r+b" if path.exists() else "w+b")  # noqa: SIM115 - closed in close()
        self.fh.truncate(offset)  # drop whatever a crash left after the last complete chunk
        self.fh.seek(offset)
        self.offset = offset

    def write(self, table: pa.Table) -> int:
        if self.fmt != "jsonl":
            table = self._conform(table)
        self.fh.write(encode_table(table, self.fmt, header=self.offset == 0))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.offset = self.fh.tell()
        return self.offset

    def _conform(self, table: pa.Table) -> pa.Table:
        """CSV has one header: later chunks get its columns (missing ones empty); a new one is an error."""
        if self.columns is None:
            self.columns = table.column_names
            return table
        extra = [c for c in table.column_names if c not in self.columns]
        if extra:
            raise PredictError(
                f"rows after the first chunk have columns the CSV header lacks ({', '.join(extra)}); "
                "write .jsonl or .parquet instead"
            )
        missing = {
            c: pa.nulls(table.num_rows, pa.string()) for c in self.columns if c not in table.column_names
        }
        return pa.Table.from_pydict(
            {c: table.column(c) if c not in missing else missing[c] for c in self.columns}
        )

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


def encode_table(table: pa.Table, fmt: str, *, header: bool = True) -> bytes:
    """`table` in `fmt` (csv, tsv, jsonl or parquet) as predict writes its output: CSV and TSV with every
    cell quoted and a formula disarmed (`spreadsheet_safe_table`), nested values as JSON text; JSON Lines
    with Arrow's types; `header` off for a CSV chunk appended after the first. The app's downloads of
    labelled rows are made by it too, so they read as predict's output does."""
    if fmt == "jsonl":
        import pandas as pd

        # Arrow types kept in pandas: an integer column with a null stays integer (not 1.0).
        frame = table.to_pandas(types_mapper=pd.ArrowDtype)
        data = frame.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
        return data.encode("utf-8")
    buffer = pa.BufferOutputStream()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, buffer)
    elif fmt in ("csv", "tsv"):
        import pyarrow.csv as pa_csv

        options = pa_csv.WriteOptions(
            include_header=header, delimiter="\t" if fmt == "tsv" else ",", quoting_style="all_valid"
        )
        pa_csv.write_csv(spreadsheet_safe_table(_flat(table)), buffer, options)
    else:
        raise PredictError(f"cannot write {fmt!r}: use csv, tsv, jsonl or parquet")
    return buffer.getvalue().to_pybytes()


def _flat(table: pa.Table) -> pa.Table:
    """Lists, records and maps (from JSON or Parquet input) as JSON text: a CSV cell holds one value."""
    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            text = [None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                    for v in table.column(i).to_pylist()]  # fmt: skip
            table = table.set_column(i, f.name, pa.array(text, pa.string()))
    return table


class _ParquetSink:
    """Each chunk a part file in OUTPUT.parts/; `finish` copies them into OUTPUT as its row groups."""

    def __init__(self, path: Path, parts_done: int) -> None:
        self.path, self.parts = path, parts_dir(path)
        self.parts.mkdir(parents=True, exist_ok=True)
        self.count = parts_done
        for stale in self.parts.iterdir():  # a part the crash wrote after the last record update
            if not stale.name.startswith("part-") or _part_index(stale) >= parts_done:
                stale.unlink()

    def write(self, table: pa.Table) -> int:
        import pyarrow.parquet as pq

        final = self.parts / f"part-{self.count:06d}.parquet"
        tmp = final.with_name("." + final.name + ".tmp")
        pq.write_table(table, tmp)
        _fsync_path(tmp)
        os.replace(tmp, final)
        self.count += 1
        return self.count

    def finish(self) -> None:
        import pyarrow.parquet as pq

        files = sorted(self.parts.glob("part-*.parquet"), key=_part_index)[: self.count]
        schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
        tmp = self.path.with_name("." + self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, schema) as writer:
            for f in files:  # one part in memory at a time
                writer.write_table(_to_schema(pq.read_table(f), schema))
        _fsync_path(tmp)
        os.replace(tmp, self.path)

    def close(self) -> None:
        pass


def _to_schema(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _part_index(path: Path) -> int:
    try:
        return int(path.stem.split("-")[1])
    except (IndexError, ValueError):
        return -1


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def state_path(output: Path) -> Path:
    return output.with_name(output.name + STATE_SUFFIX)


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + PARTS_SUFFIX)


# -- the job ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PredictOptions:
    mode: str = "score"
    text_column: str | None = None  # None: text, sentence or content, the first present
    batch_size: int | None = None  # None: the classifier's default for the device
    chunk_size: int | None = None  # None: default_chunk_size()
    adapter: bool = True  # False: the base model's labels even when an adapter is loaded
    overwrite: bool = False
    max_rows: int | None = None  # label at most this many rows (the app's limit)


def identity(
    model: str,
    adapter: str | None,
    labels: Sequence[str],
    *,
    calibrate: bool = False,
    thinking: bool = False,
    int8: bool = True,
) -> dict:
    """What the labels depend on besides the mode and text column; a resume must match it (`int8`: score
    mode on a CPU through int8 copies, `LoadOptions.cpu_int8`, whose probabilities differ slightly)."""

    def where(ref: str | None) -> str | None:
        return os.path.abspath(ref) if ref and os.path.exists(ref) else ref

    return {"model": where(model), "adapter": where(adapter), "labels": list(labels),
            "calibrate": bool(calibrate), "thinking": bool(thinking), "int8": bool(int8)}  # fmt: skip


def identity_of(clf: Classifier, options: PredictOptions) -> dict:
    lm = clf.lm
    return identity(lm.spec.name, lm.adapter if options.adapter else None, clf.labels.names,
                    calibrate=clf.calibrate, thinking=clf.enable_thinking, int8=lm.cpu_int8)  # fmt: skip


class PredictJob:
    """One predict run: `prepare` checks everything it can before a model is loaded (input, output, the
    resume record); `run` labels and writes. Use as a context manager: it holds OUTPUT's lock."""

    def __init__(
        self,
        input_path: str | os.PathLike,
        output_path: str | os.PathLike,
        options: PredictOptions,
        identity: Mapping[str, Any],
    ) -> None:
        from gemma_emotion.classify import MODES

        if options.mode not in MODES:
            raise PredictError(f"mode must be one of {', '.join(MODES)}, got {options.mode!r}")
        if options.chunk_size is not None and options.chunk_size < 1:
            raise PredictError(f"the chunk size must be at least 1, got {options.chunk_size}")
        self.options = options
        self.identity = dict(identity)
        self.ranks = Ranks()
        self.output = Path(output_path)
        self.fmt = _output_format(self.output)
        self.source = Source.open(input_path, options.text_column)
        self.settings = {**self.identity, "mode": options.mode, "text_column": self.source.text_column,
                         "output_format": self.fmt}  # fmt: skip
        self._lock_fh = None
        verdict: dict[str, Any] = {}
        if self.ranks.main:
            try:
                verdict = {"state": self._check_output()}
            except PredictError as exc:
                verdict = {"error": str(exc)}
        verdict = self.ranks.broadcast(verdict)
        if "error" in verdict:
            self.close()
            raise PredictError(verdict["error"])
        self.resume: dict | None = verdict["state"]

    # -- checks ---------------------------------------------------------------------------------------
    def _check_output(self) -> dict | None:
        """The resume record to continue from (None: start fresh); PredictError when neither is allowed."""
        out, source = self.output, self.source
        if out.is_dir():
            raise PredictError(f"{out}: this is a folder; --out names a file")
        if out.exists() and out.resolve() == source.path.resolve():
            raise PredictError(f"{out}: the output would overwrite the input")
        out.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        record = state_path(out)
        if self.options.overwrite:
            return None
        if not record.exists():
            if out.exists() or parts_dir(out).exists():
                raise PredictError(
                    f"{out} already exists and holds no unfinished run to resume; "
                    "pass --overwrite to replace it"
                )
            return None
        try:
            state = json.loads(record.read_text(encoding="utf-8"))
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"version {state.get('version')}")
            Counts.from_dict(state["counts"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PredictError(
                f"{record}: unreadable resume record ({exc}); pass --overwrite to start over"
            ) from exc
        if state["input"] != source.fingerprint():
            raise PredictError(
                f"{source.path.name} changed since {out.name} was started (size, time or first bytes "
                "differ); pass --overwrite to start over"
            )
        changed = [f"{k}: {state['settings'].get(k)!r} → {v!r}" for k, v in self.settings.items()
                   if state["settings"].get(k) != v]  # fmt: skip
        if changed:
            raise PredictError(
                f"{out.name} was started with other settings ({'; '.join(changed)}); rerun with the same "
                "ones to continue, or pass --overwrite to start over"
            )
        if self.fmt != "parquet" and (not out.exists() or out.stat().st_size < state["bytes"]):
            raise PredictError(
                f"{out.name} is shorter than its resume record says; pass --overwrite to start over"
            )
        return state

    def _lock(self) -> None:
        import fcntl

        lock = self.output.with_name(self.output.name + LOCK_SUFFIX)
        fh = open(lock, "a+b")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            raise PredictError(f"another predict is writing {self.output} now") from exc
        self._lock_fh = fh

    def close(self) -> None:
        """Let go of OUTPUT's lock (the lock file goes with it; a killed run leaves it, unlocked)."""
        if self._lock_fh is not None:
            self.output.with_name(self.output.name + LOCK_SUFFIX).unlink(missing_ok=True)
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> PredictJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the run --------------------------------------------------------------------------------------
    def run(
        self,
        clf: Classifier,
        progress: Progress | None = None,
        on_chunk: ChunkHook | None = None,
        labeler: Labeler | None = None,
    ) -> PredictSummary:
        """Label the input with `clf` and write the output; returns the summary (on every process).
        `labeler` labels each chunk in place of `label_texts(clf, ...)` (the app's takes its model lock per
        piece of a chunk and stops a cancelled job); the texts are still tokenised ahead with `clf`."""
        if identity_of(clf, self.options) != self.identity:
            raise ValueError("the classifier is not the one this job was prepared for")
        t0 = time.perf_counter()
        opts = self.options
        size = opts.chunk_size or default_chunk_size(clf)
        state = self._start() if self.ranks.main else None
        skipped = int(self.ranks.broadcast(state["rows"] if state else 0))
        counts = Counts.from_dict(state["counts"]) if state else Counts()
        total = self.source.rows_hint
        if opts.max_rows is not None:
            total = opts.max_rows if total is None else min(total, opts.max_rows)
        left = None if opts.max_rows is None else max(0, opts.max_rows - skipped)
        if progress and self.ranks.main:
            progress(skipped, total)
        sink = self._sink(state) if self.ranks.main else None
        # In generate mode tokenising is a sliver of the time; it stays next to the model.
        tokenize_ahead = opts.mode == "score" and OVERLAP

        def prepared() -> Iterator[tuple[pa.Table, Prepared]]:
            for chunk in self.source.chunks(size, skip=skipped, limit=left):
                lo, hi = self.ranks.share(chunk.num_rows)
                texts = _texts_of(chunk.slice(lo, hi - lo), self.source.text_column, self.source.path)
                yield chunk, prepare_texts(clf, texts, tokenize=tokenize_ahead)

        done = skipped
        read_start = time.perf_counter()
        with (
            ThreadPoolExecutor(1, "predict-read") if OVERLAP else _Inline() as reader,
            ThreadPoolExecutor(1, "predict-write") if OVERLAP else _Inline() as writer,
        ):
            written: Future | None = None
            items = prepared()
            upcoming = reader.submit(next, items, None)
            try:
                while (item := upcoming.result()) is not None:
                    chunk, prep = item
                    upcoming = reader.submit(next, items, None)  # read and tokenise the next chunk meanwhile

                    def within(k: int, _n: int, base: int = done, rows: int = chunk.num_rows) -> None:
                        if progress and self.ranks.main:
                            progress(base + min(rows, k * self.ranks.world), total)

                    if labeler is not None:
                        mine = labeler(prep, within)
                    else:
                        mine = label_texts(clf, prep, opts.mode, adapter=opts.adapter,
                                           batch_size=opts.batch_size, progress=within)  # fmt: skip
                    shares = self.ranks.gather(mine)
                    done += chunk.num_rows
                    if not self.ranks.main:
                        continue
                    labels = Labels.concat(shares)
                    if on_chunk:
                        on_chunk(chunk, labels)
                    counts.add(labels.counts())
                    if written is not None:
                        written.result()  # one chunk being written at a time, in order
                    written = writer.submit(self._write, sink, state, output_table(chunk, labels),
                                            done, Counts.from_dict(asdict(counts)))  # fmt: skip
                    if progress:
                        progress(done, total)
                if written is not None:
                    written.result()
            finally:
                # On an error or Ctrl-C: let the reader leave the generator and the writer finish the chunk
                # it holds (then recorded, so a rerun does not redo it) before the file is closed.
                for pending in (upcoming, written):
                    with contextlib.suppress(BaseException):
                        pending is not None and pending.result()
                items.close()
                if sink is not None:
                    sink.close()
        limited = left is not None and done - skipped >= left and self._more_rows(done)
        if progress and self.ranks.main:
            progress(done, done)  # the input is read: the count is exact now (the line count was a guess)
        if self.ranks.main:
            sink.finish()
            self._cleanup()
        setup = read_start - t0
        seconds = time.perf_counter() - read_start
        labelled = done - skipped
        counts = Counts.from_dict(self.ranks.broadcast(asdict(counts)))
        return PredictSummary(
            output=str(self.output), rows=done, labelled=labelled, skipped=skipped,
            label_counts={name: counts.labels.get(name, 0) for name in clf.labels.names},
            invalid=counts.invalid,
            empty=counts.empty, cut=counts.cut, seconds=seconds, setup_seconds=setup,
            texts_per_s=labelled / seconds if seconds > 0 else 0.0, processes=self.ranks.world,
            limited=limited, mode=opts.mode,
        )  # fmt: skip

    def _more_rows(self, done: int) -> bool:
        hint = self.source.rows_hint
        if self.source.fmt in ("parquet", "json-array") and hint is not None:
            return hint > done
        return any(t.num_rows for t in self.source.chunks(1, skip=done, limit=1))

    def _start(self) -> dict:
        """The record this run continues from: the resume record, or a fresh one written before any row."""
        if self.resume is not None:
            return self.resume
        for path in (self.output, state_path(self.output)):
            path.unlink(missing_ok=True)
        shutil.rmtree(parts_dir(self.output), ignore_errors=True)
        state = {"version": STATE_VERSION, "input": self.source.fingerprint(), "settings": self.settings,
                 "rows": 0, "bytes": 0, "parts": 0, "columns": None, "counts": asdict(Counts())}  # fmt: skip
        atomic_write_json(state_path(self.output), state)
        return state

    def _sink(self, state: dict) -> _TextSink | _ParquetSink:
        if self.fmt == "parquet":
            return _ParquetSink(self.output, state["parts"])
        return _TextSink(self.output, self.fmt, state["bytes"], state["columns"])

    def _write(self, sink, state: dict, table: pa.Table, rows: int, counts: Counts) -> None:
        """Write one chunk, make it durable, then record it: a crash at any point loses at most this chunk."""
        position = sink.write(table)
        state.update(rows=rows, counts=asdict(counts))
        if isinstance(sink, _ParquetSink):
            state["parts"] = position
        else:
            state["bytes"], state["columns"] = position, sink.columns
        atomic_write_json(state_path(self.output), state)

    def _cleanup(self) -> None:
        """The output is complete: the record, the parts and the lock go (in that order)."""
        state_path(self.output).unlink(missing_ok=True)
        shutil.rmtree(parts_dir(self.output), ignore_errors=True)
        self.close()


class _Inline:
    """An executor that runs each task at once in the calling thread (OVERLAP off)."""

    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, as a thread would
            future.set_exception(exc)
        return future

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def predict_file(
    clf: Classifier,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: PredictOptions = PredictOptions(),
    *,
    progress: Progress | None = None,
    on_chunk: ChunkHook | None = None,
    labeler: Labeler | None = None,
) -> PredictSummary:
    """Label every row of `input_path` with `clf` into `output_path` (see the module docstring)."""
    with PredictJob(input_path, output_path, options, identity_of(clf, options)) as job:
        return job.run(clf, progress, on_chunk, labeler)
