"""Label a whole file: read it in chunks, label each chunk, write the output as it goes, resume after a crash.

Owns `label_texts` (a list of texts → label columns; the app's batch paths use it too), the output's
columns, the resume record, the split of each chunk between the processes of `torchrun` / `accelerate
launch`, and the run summary; the files are read and written through `tables`. No argparse and no
printing: progress goes to a callback and the summary comes back as a `PredictSummary`. The app labels an
uploaded file with the same `predict_file`, giving it a `labeler` that labels each chunk in pieces under
its model lock.

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

from gemma_emotion.distributed import Ranks
from gemma_emotion.files import atomic_write_json
from gemma_emotion.labels import INVALID
from gemma_emotion.tables import (
    ParquetSink,
    Source,
    TableError,
    TextSink,
    output_format,
    parts_dir,
    texts_of,
)

if TYPE_CHECKING:
    from gemma_emotion.classify import Classifier, EncodedTexts

STATE_SUFFIX = ".progress.json"
LOCK_SUFFIX = ".lock"
STATE_VERSION = 1
PROB_PREFIX = "p_"
NO_LABEL = -1  # Labels.index of an empty text (an answer that is none of the labels: len(names))
INPUT_PREFIX = "input_"  # an input column named like an output column is kept under this prefix
# Read and tokenise the next chunk, and write the last one, in worker threads while the model labels this
# one; benchmarks switch it off to measure what it gives.
OVERLAP = True
CUDA_CHUNK = 16384  # rows per chunk on a GPU: ~1 s of work, and long enough to batch texts by length well
CPU_CHUNK = 512  # on a CPU a chunk of this size is 10-20 s of work between two durable points

Progress = Callable[[int, "int | None"], None]  # (rows done, rows in all or None when unknown)
ChunkHook = Callable[[pa.Table, "Labels"], None]  # (input rows, their labels), before they are written
# Labels a chunk's prepared texts in place of `label_texts(clf, ...)`, reporting (rows done, rows) within it.
Labeler = Callable[["Prepared", Callable[[int, int], None]], "Labels"]


class PredictError(TableError):
    """Options, output or resume record that cannot be used; the message is the whole story for the user."""


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


def state_path(output: Path) -> Path:
    return output.with_name(output.name + STATE_SUFFIX)


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
        self.fmt = output_format(self.output)
        self.source = Source.open(input_path, options.text_column)
        self.settings = {**self.identity, "mode": options.mode, "text_column": self.source.text_column,
                         "output_format": self.fmt}  # fmt: skip
        self._lock_fh = None
        verdict: dict[str, Any] = {}
        if self.ranks.main:
            try:
                verdict = {"state": self._check_output()}
            except TableError as exc:
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
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
        except PredictError:
            raise
        except OSError as exc:  # a file where a folder should be, a read-only or special file system
            reason = exc.strerror or type(exc).__name__
            raise PredictError(f"{out}: cannot write the output there ({reason})") from exc
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
                texts = texts_of(chunk.slice(lo, hi - lo), self.source.text_column, self.source.path)
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

    def _sink(self, state: dict) -> TextSink | ParquetSink:
        if self.fmt == "parquet":
            return ParquetSink(self.output, state["parts"])
        return TextSink(self.output, self.fmt, state["bytes"], state["columns"])

    def _write(self, sink, state: dict, table: pa.Table, rows: int, counts: Counts) -> None:
        """Write one chunk, make it durable, then record it: a crash at any point loses at most this chunk."""
        position = sink.write(table)
        state.update(rows=rows, counts=asdict(counts))
        if isinstance(sink, ParquetSink):
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
