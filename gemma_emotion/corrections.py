"""The corrections store, the review queue and the exports of corrected labels.

A correction is one human-fixed label for one text. This module owns where corrections live (a SQLite
database, `corrections.db`, in the runs directory), how they are edited and undone (an append-only event
log from which the current view is derived), which examples are worth reviewing (pure functions over
evaluation predictions), and how corrections leave the app again (JSONL / CSV files, or extra training
rows for a run; as a Hub dataset through `hub.py`). No model, no UI and no command-line code here (the
commands: `cli/corrections.py`).

Each correction records the label set it was made under (`label_set`: NULL for the six emotions, which
every correction made before label sets was); its label is a label of that set, its exports write the
label's name and, for `emotion-jsonl`, its id in that set. A correction is never dropped because another
label set is in use now: it is listed and counted with its own label, and a run whose set lacks its label
leaves it out of that run's training (and says so).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gemma_emotion.errors import UserError
from gemma_emotion.files import atomic_write_bytes, csv_text
from gemma_emotion.labels import EMOTIONS, INVALID, LabelSet

DB_NAME = "corrections.db"
FORMATS: tuple[str, ...] = ("emotion-jsonl", "chat-jsonl", "csv")
DATASET_FORMAT = "hf-dataset"  # a folder (parquet + dataset card), written by gemma_emotion.hub
CSV_COLUMNS: tuple[str, ...] = (
    "text", "label", "label_id", "predicted", "gold", "source", "source_ref",
    "model", "adapter", "annotator", "created_at", "updated_at", "n_edits",
)  # fmt: skip
DEFAULT_SOURCE = "live"  # a correction typed in the app, not picked from a report
_SCHEMA_VERSION = 2  # 2: the label_set column (NULL: the six emotions, as every row of version 1)
_META_FIELDS = ("predicted", "gold", "source", "source_ref", "model", "adapter", "annotator", "probabilities")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('set', 'remove', 'undo')),
    key TEXT,
    text TEXT,
    label TEXT,
    predicted TEXT,
    gold TEXT,
    source TEXT,
    source_ref TEXT,
    model TEXT,
    adapter TEXT,
    annotator TEXT,
    probabilities TEXT,
    reverts INTEGER REFERENCES events(id),
    label_set TEXT
);
CREATE INDEX IF NOT EXISTS events_key ON events(key);
CREATE UNIQUE INDEX IF NOT EXISTS events_reverts ON events(reverts) WHERE reverts IS NOT NULL;
CREATE TABLE IF NOT EXISTS corrections (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    predicted TEXT,
    gold TEXT,
    source TEXT,
    source_ref TEXT,
    model TEXT,
    adapter TEXT,
    annotator TEXT,
    probabilities TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    n_edits INTEGER NOT NULL,
    label_set TEXT
);
CREATE INDEX IF NOT EXISTS corrections_order ON corrections(created_at, text);
"""


class CorrectionsError(UserError):
    """A corrections operation that cannot be done; the message is meant for the user."""


class NoCorrections(CorrectionsError, FileNotFoundError):  # noqa: N818 - a fact about the folder
    """There is no corrections database where one was expected to exist."""


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database of an earlier schema up to date in place; old rows keep their values (a
    label_set of NULL reads as the six emotions, which every version-1 correction was made under)."""
    for table in ("events", "corrections"):
        columns = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if "label_set" not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN label_set TEXT")


@dataclass(frozen=True)
class Correction:
    """The current label of one text. `n_edits` counts label changes after the text was first corrected."""

    text: str
    label: str
    predicted: str | None
    gold: str | None
    source: str | None
    source_ref: str | None
    model: str | None
    adapter: str | None
    annotator: str | None
    created_at: str
    updated_at: str
    n_edits: int
    probabilities: dict[str, float] | None = None
    labels: list[str] | None = None  # the label set it was made under; None: the six emotions

    @property
    def label_set(self) -> LabelSet:
        return LabelSet(tuple(self.labels)) if self.labels else EMOTIONS

    @property
    def label_id(self) -> int:
        """The label's id in the set the correction was made under."""
        return self.label_set.id_of(self.label)


@dataclass(frozen=True)
class HistoryEvent:
    """One entry of the append-only log: a label set, a removal, or an undo of an earlier entry."""

    id: int
    at: str
    action: str
    text: str | None
    label: str | None
    predicted: str | None
    gold: str | None
    source: str | None
    source_ref: str | None
    model: str | None
    adapter: str | None
    annotator: str | None
    probabilities: dict[str, float] | None
    reverts: int | None
    undone: bool
    labels: list[str] | None = None


_Record = TypeVar("_Record", Correction, HistoryEvent)


def _from_row(cls: type[_Record], row: sqlite3.Row, **given: Any) -> _Record:
    """A Correction or HistoryEvent from its table's row: each field from the column of its name, the
    probabilities parsed from their JSON, `labels` from `label_set`; `given` fills the rest."""
    columns = set(row.keys())
    values = {f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in columns}
    probs = row["probabilities"]
    values["probabilities"] = None if probs is None else json.loads(probs)
    values["labels"] = _set_names(row["label_set"])
    return cls(**values, **given)


@dataclass(frozen=True)
class Undone:
    """What undo_last reverted (`event`) and the correction now current for that text (None: none left)."""

    event: HistoryEvent
    current: Correction | None


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _key(text: str) -> str:
    # Texts may be megabytes long; index a digest rather than the text itself.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _clean_text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, not {type(text).__name__}")
    cleaned = text.strip()
    if not cleaned:
        raise ValueError("text is empty")
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"text is not valid Unicode ({e.reason} at position {e.start})") from None
    return cleaned


def _label_name(value: Any, what: str = "label", labels: LabelSet = EMOTIONS) -> str:
    try:
        return labels.name_of(value)
    except ValueError:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(labels.names)}") from None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _clean_probabilities(
    probabilities: Mapping[str, Any] | None, labels: LabelSet = EMOTIONS
) -> dict[str, float] | None:
    if probabilities is None:
        return None
    out: dict[str, float] = {}
    for name, p in probabilities.items():
        try:
            value = float(p)
        except (TypeError, ValueError):
            raise ValueError(f"the probability of {name!r} must be a number, got {p!r}") from None
        if not 0 <= value <= 1:  # NaN fails this too
            raise ValueError(f"the probability of {name!r} must be between 0 and 1, got {p!r}")
        out[_label_name(name, "probability label", labels)] = value
    return out


def _set_column(labels: LabelSet) -> str | None:
    """How a label set is stored: NULL for the six emotions (as in rows made before label sets)."""
    return None if labels == EMOTIONS else json.dumps(list(labels.names), ensure_ascii=False)


def _set_names(value: str | None) -> list[str] | None:
    return None if value is None else list(json.loads(value))


class CorrectionStore:
    """Corrections in `<folder>/corrections.db` (SQLite, WAL).

    Every write is one `BEGIN IMMEDIATE` transaction that appends to `events` and rewrites the affected
    row of `corrections` (the current view, one row per text, derived from the live events). Connections
    are opened per operation, so one store object can be shared by any number of threads; processes
    coordinate through SQLite's locks and the busy timeout.

    synchronous=FULL: a commit is fsynced before add() returns, so neither a killed process nor a power
    cut loses an acknowledged correction. Corrections arrive at human speed, so the fsync costs nothing
    that matters (NORMAL would be safe against a killed process but not against a power cut).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        create: bool = True,
        busy_timeout: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        p = Path(path)
        # A path naming the .db file itself is accepted too, for callers that keep it elsewhere.
        self.path = p if p.suffix == ".db" else p / DB_NAME
        self.busy_timeout = busy_timeout
        self._clock = clock
        if not self.path.exists():
            if not create:
                raise NoCorrections(f"no corrections database at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_db()

    # -- plumbing -------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are opened explicitly, so each write is exactly one of them.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            # IMMEDIATE takes the write lock up front: two writers never deadlock upgrading a read lock.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _init_db(self) -> None:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise CorrectionsError(f"{self.path}: could not switch the database to WAL mode ({mode})")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > _SCHEMA_VERSION:
                    raise CorrectionsError(
                        f"{self.path} was written by a newer gemma-emotion (schema {version}); upgrade it"
                    )
                # executescript() would COMMIT first; run the DDL one statement at a time in this transaction.
                for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    conn.execute(statement)
                _migrate(conn)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            raise CorrectionsError(f"cannot open the corrections database {self.path}: {e}") from e
        finally:
            conn.close()

    def _now(self) -> str:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        # Fixed width, UTC: the strings sort in time order, which export ordering relies on.
        return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @staticmethod
    def _live_events(conn: sqlite3.Connection, key: str) -> list[sqlite3.Row]:
        return conn.execute(
            "SELECT * FROM events e WHERE e.key = ? AND e.action IN ('set', 'remove') "
            "AND NOT EXISTS (SELECT 1 FROM events u WHERE u.reverts = e.id) ORDER BY e.id",
            (key,),
        ).fetchall()

    def _rebuild(self, conn: sqlite3.Connection, key: str) -> None:
        """Recompute the current row of one text from its live events: the latest label wins."""
        state: dict[str, Any] | None = None
        for ev in self._live_events(conn, key):
            if ev["action"] == "remove":
                state = None
                continue
            if state is None:
                state = {"text": ev["text"], "created_at": ev["at"], "n_edits": 0}
                state.update({f: None for f in _META_FIELDS})
            elif ev["label"] != state["label"]:
                state["n_edits"] += 1
            state["label"] = ev["label"]
            state["label_set"] = ev["label_set"]  # the label's set, always the latest label's own
            state["updated_at"] = ev["at"]
            # An edit that does not repeat the metadata (say, from a list of corrections) keeps the old one.
            for f in _META_FIELDS:
                if ev[f] is not None:
                    state[f] = ev[f]
        if state is None:
            conn.execute("DELETE FROM corrections WHERE key = ?", (key,))
            return
        state["source"] = state["source"] or DEFAULT_SOURCE
        cols = ("key", "text", "label", *_META_FIELDS, "created_at", "updated_at", "n_edits", "label_set")
        values = [key, *(state[c] for c in cols[1:])]
        conn.execute(
            f"INSERT OR REPLACE INTO corrections ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            values,
        )

    @staticmethod
    def _to_correction(row: sqlite3.Row) -> Correction:
        return _from_row(Correction, row)

    @staticmethod
    def _to_event(row: sqlite3.Row, undone: bool) -> HistoryEvent:
        return _from_row(HistoryEvent, row, undone=undone)

    def _get(self, conn: sqlite3.Connection, key: str) -> Correction | None:
        row = conn.execute("SELECT * FROM corrections WHERE key = ?", (key,)).fetchone()
        return None if row is None else self._to_correction(row)

    # -- writes ---------------------------------------------------------------------------------------

    def add(
        self,
        text: str,
        label: str | int,
        *,
        predicted: str | None = None,
        gold: str | int | None = None,
        source: str | None = None,
        source_ref: str | None = None,
        model: str | None = None,
        adapter: str | None = None,
        annotator: str | None = None,
        probabilities: Mapping[str, float] | None = None,
        labels: LabelSet | None = None,
    ) -> Correction:
        """Set the label of `text` (surrounding whitespace stripped); returns the text's current correction.

        `label` (a name or an id), `gold` and the probabilities' names are of `labels`, the label set the
        correction is made under (default: the six emotions); it is recorded with the correction.
        Adding a text that is already corrected is an edit: the latest label wins and the history keeps both.
        Metadata the edit leaves out (None) is kept from earlier; `source` is "live" unless some event says
        otherwise, so editing an evaluation mistake keeps its source and source_ref together.
        """
        labels = labels or EMOTIONS
        text = _clean_text(text)
        name = _label_name(label, labels=labels)
        gold_name = None if gold is None or gold == "" else _label_name(gold, "gold label", labels)
        probs = _clean_probabilities(probabilities, labels)
        key = _key(text)
        row = (
            self._now(), "set", key, text, name, _opt_str(predicted), gold_name, _opt_str(source),
            _opt_str(source_ref), _opt_str(model), _opt_str(adapter), _opt_str(annotator),
            None if probs is None else json.dumps(probs, sort_keys=True), _set_column(labels),
        )  # fmt: skip
        with self._write() as conn:
            conn.execute(
                "INSERT INTO events (at, action, key, text, label, predicted, gold, source, source_ref, "
                "model, adapter, annotator, probabilities, label_set) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._rebuild(conn, key)
            current = self._get(conn, key)
        assert current is not None
        return current

    def remove(self, text: str, *, annotator: str | None = None) -> bool:
        """Drop the correction of `text` (history kept, undo brings it back); False if there was none."""
        text = _clean_text(text)
        key = _key(text)
        with self._write() as conn:
            if self._get(conn, key) is None:
                return False
            conn.execute(
                "INSERT INTO events (at, action, key, text, annotator) VALUES (?, 'remove', ?, ?, ?)",
                (self._now(), key, text, _opt_str(annotator)),
            )
            self._rebuild(conn, key)
        return True

    def undo_last(self, annotator: str | None = None) -> Undone | None:
        """Revert the latest live set/remove (of `annotator` if given); None when there is nothing to undo.

        The undo is itself appended to the log; the text's current row is rebuilt without the reverted
        event, so the previous label comes back, or the correction disappears if it was the first.
        """
        query = (
            "SELECT * FROM events e WHERE e.action IN ('set', 'remove') "
            "AND NOT EXISTS (SELECT 1 FROM events u WHERE u.reverts = e.id)"
        )
        params: tuple[Any, ...] = ()
        if annotator is not None:
            query += " AND e.annotator = ?"
            params = (annotator,)
        with self._write() as conn:
            target = conn.execute(query + " ORDER BY e.id DESC LIMIT 1", params).fetchone()
            if target is None:
                return None
            conn.execute(
                "INSERT INTO events (at, action, key, text, annotator, reverts) "
                "VALUES (?, 'undo', ?, ?, ?, ?)",
                (self._now(), target["key"], target["text"], _opt_str(annotator), target["id"]),
            )
            self._rebuild(conn, target["key"])
            current = self._get(conn, target["key"])
        return Undone(event=self._to_event(target, undone=True), current=current)

    # -- reads ----------------------------------------------------------------------------------------

    def current(self) -> list[Correction]:
        """Every current correction, oldest first (first creation time, then text): the export order."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM corrections ORDER BY created_at, text").fetchall()
        return [self._to_correction(r) for r in rows]

    def get(self, text: str) -> Correction | None:
        with self._read() as conn:
            return self._get(conn, _key(_clean_text(text)))

    def lookup(self, texts: Iterable[str]) -> dict[str, Correction]:
        """The current corrections of those texts that have one, keyed by the text as given."""
        wanted: dict[str, list[str]] = {}
        for t in texts:
            if isinstance(t, str) and t.strip():
                wanted.setdefault(_key(t.strip()), []).append(t)
        out: dict[str, Correction] = {}
        keys = list(wanted)
        with self._read() as conn:
            for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
                chunk = keys[i : i + 500]
                rows = conn.execute(
                    f"SELECT * FROM corrections WHERE key IN ({', '.join('?' * len(chunk))})", chunk
                ).fetchall()
                for r in rows:
                    for original in wanted[r["key"]]:
                        out[original] = self._to_correction(r)
        return out

    def history(self, text: str) -> list[HistoryEvent]:
        """Every logged event of one text, oldest first, undos included; `undone` marks reverted ones."""
        key = _key(_clean_text(text))
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM events WHERE key = ? ORDER BY id", (key,)).fetchall()
        reverted = {r["reverts"] for r in rows if r["reverts"] is not None}
        return [self._to_event(r, undone=r["id"] in reverted) for r in rows]

    def count(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT COUNT(*) FROM corrections").fetchone()[0]

    def counts_by_label(self, labels: LabelSet | None = None) -> dict[str, int]:
        """Current corrections per label: every label of `labels` (default: the six) in its order, then the
        labels of corrections made under other sets, which are counted, never hidden."""
        labels = labels or EMOTIONS
        with self._read() as conn:
            rows = conn.execute("SELECT label, COUNT(*) AS n FROM corrections GROUP BY label").fetchall()
        counts = {name: 0 for name in labels.names}
        for r in rows:
            name = labels.name_of(r["label"]) if r["label"] in labels else r["label"]
            counts[name] = counts.get(name, 0) + r["n"]
        return counts

    def label_sets(self) -> list[LabelSet]:
        """The label sets the current corrections were made under, the six emotions first."""
        with self._read() as conn:
            rows = conn.execute("SELECT DISTINCT label_set FROM corrections").fetchall()
        stored = sorted(rows, key=lambda r: (r["label_set"] is not None, r["label_set"] or ""))
        return [LabelSet(tuple(_set_names(r["label_set"]))) if r["label_set"] else EMOTIONS for r in stored]

    def labels_by_annotator(self) -> dict[str | None, dict[str, str]]:
        """{annotator: {text: label}}: each annotator's own latest live label of each text they labelled
        (None gathers the corrections saved without a name). A later label by someone else does not
        replace theirs here; their own removal or an undo of their label does."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT e.annotator, e.key, e.text, e.action, e.label FROM events e "
                "WHERE e.action IN ('set', 'remove') "
                "AND NOT EXISTS (SELECT 1 FROM events u WHERE u.reverts = e.id) ORDER BY e.id"
            ).fetchall()
        latest: dict[tuple[str | None, str], tuple[str, str | None]] = {}
        for r in rows:
            latest[(r["annotator"], r["key"])] = (r["text"], r["label"] if r["action"] == "set" else None)
        out: dict[str | None, dict[str, str]] = {}
        for (who, _), (text, label) in latest.items():
            if label is not None:
                out.setdefault(who, {})[text] = label
        return out

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file: 'ok' when it is sound."""
        with self._read() as conn:
            return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())


# -- review queue ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewItem:
    """One example offered for review. `confidence` is the highest label probability (None: unknown)."""

    text: str
    gold: str | None
    predicted: str
    probabilities: dict[str, float] = field(default_factory=dict)
    confidence: float | None = None
    source: str = "evaluation"
    source_ref: str | None = None
    raw: str | None = None
    valid: bool = True
    corrected: str | None = None  # the label a correction already gives this text
    labels: list[str] | None = None  # the label set of the prediction; None: the six emotions

    @property
    def is_mistake(self) -> bool:
        return not self.valid or (self.gold is not None and self.predicted != self.gold)


def _parse_bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    s = str(value).strip().lower()
    if s in ("true", "1", "yes", "y", "t"):
        return True
    if s in ("false", "0", "no", "n", "f"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    x = float(value)
    return None if math.isnan(x) else x


def _row_probabilities(row: Mapping[str, Any], labels: LabelSet) -> dict[str, float]:
    probs: dict[str, float] = {}
    nested = row.get("probabilities")
    if isinstance(nested, Mapping):
        for name, p in nested.items():
            x = _parse_float(p)
            if x is not None:
                probs[_label_name(name, "probability label", labels)] = x
    for name in labels.names:
        x = _parse_float(row.get(f"prob_{name}"))
        if x is not None:
            probs[name] = x
    return probs


def _item_from_row(
    row: Mapping[str, Any], index: int, source: str, source_ref: str | None, labels: LabelSet
) -> ReviewItem:
    try:
        text = row["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty text")
        gold_raw = row.get("gold")
        gold = None if gold_raw is None or gold_raw == "" else _label_name(gold_raw, "gold label", labels)
        probs = _row_probabilities(row, labels)
        raw = _opt_str(row.get("raw"))
        predicted = row.get("predicted")
        if predicted is None or predicted == "":
            if raw is not None:
                predicted = labels.parse_answer(raw).predicted
            elif probs:
                predicted = max(probs, key=probs.__getitem__)
            else:
                predicted = INVALID
        predicted = str(predicted).strip()
        predicted = labels.name_of(predicted) if predicted in labels else predicted.lower()
        valid = _parse_bool(row.get("valid"))
        if valid is None:
            valid = predicted in labels
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"prediction row {index}: {e}") from None
    ref = _opt_str(row.get("source_ref"))
    if ref is None:
        ref = f"{source_ref}#{index}" if source_ref else str(index)
    return ReviewItem(
        text=text,
        gold=gold,
        predicted=predicted,
        probabilities=probs,
        confidence=max(probs.values()) if probs else None,
        source=source,
        source_ref=ref,
        raw=raw,
        valid=valid,
        labels=None if labels == EMOTIONS else list(labels.names),
    )


def queue_from_predictions(
    rows: Iterable[Mapping[str, Any]],
    only_mistakes: bool = True,
    *,
    source: str = "evaluation",
    source_ref: str | None = None,
    labels: LabelSet | None = None,
) -> list[ReviewItem]:
    """Review items from an evaluation's per-example predictions, in their order.

    Rows are dicts as an evaluation writes them (text, gold, predicted, raw, valid, prob_<label>) with the
    labels of `labels` (the report's set; default the six); values may be strings, as csv.DictReader
    returns them. With only_mistakes, keeps wrong and invalid answers. Each item's source_ref is
    `<source_ref>#<row index>` (or the row's own source_ref).
    """
    labels = labels or EMOTIONS
    items = [_item_from_row(r, i, source, source_ref, labels) for i, r in enumerate(rows)]
    return [it for it in items if it.is_mistake] if only_mistakes else items


def queue_from_unlabeled(
    rows: Iterable[Mapping[str, Any]],
    *,
    source: str = "unlabeled",
    source_ref: str | None = None,
    labels: LabelSet | None = None,
) -> list[ReviewItem]:
    """Review items for texts without a gold label, least confident first (unknown confidence first)."""
    labels = labels or EMOTIONS
    items = [_item_from_row(r, i, source, source_ref, labels) for i, r in enumerate(rows)]
    return sorted(items, key=lambda it: -1.0 if it.confidence is None else it.confidence)


def _as_set(value: str | Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def filter_queue(
    items: Iterable[ReviewItem],
    gold: str | Iterable[str] | None = None,
    predicted: str | Iterable[str] | None = None,
    max_confidence: float | None = None,
    source: str | Iterable[str] | None = None,
    *,
    uncorrected_only: bool = False,
) -> list[ReviewItem]:
    """The items that pass every given filter (each a value or a collection of accepted values).

    max_confidence keeps items at or below it; items of unknown confidence are kept, since nothing says
    the model was sure of them.
    """
    golds, preds, sources = _as_set(gold), _as_set(predicted), _as_set(source)
    out = []
    for it in items:
        if golds is not None and it.gold not in golds:
            continue
        if preds is not None and it.predicted not in preds:
            continue
        if sources is not None and it.source not in sources:
            continue
        if max_confidence is not None and it.confidence is not None and it.confidence > max_confidence:
            continue
        if uncorrected_only and it.corrected is not None:
            continue
        out.append(it)
    return out


def mark_corrected(items: Sequence[ReviewItem], store: CorrectionStore) -> list[ReviewItem]:
    """Copies of the items with `corrected` set to the label the store already gives their text."""
    found = store.lookup(it.text for it in items)
    return [
        dataclasses.replace(it, corrected=found[it.text].label if it.text in found else None) for it in items
    ]


# -- exports --------------------------------------------------------------------------------------------


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def render(
    corrections: CorrectionStore | Sequence[Correction], fmt: str, labels: LabelSet | None = None
) -> str:
    """The export text of the current corrections in one of FORMATS, in the store's deterministic order.

    Each correction is written in the terms of the label set it was made under: its label's name, its id
    in that set (`emotion-jsonl`), that set's prompt (`chat-jsonl`). With `labels`, only the corrections
    made under that set are written. Ids of different sets mean different labels, so an `emotion-jsonl`
    export of corrections made under several sets is refused with a message that says what to do.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    rows = corrections.current() if isinstance(corrections, CorrectionStore) else list(corrections)
    if labels is not None:
        rows = [c for c in rows if c.label_set == labels]
    sets = list(dict.fromkeys(c.label_set for c in rows))
    if fmt == "emotion-jsonl":
        if len(sets) > 1:
            named = "; ".join(", ".join(s.names) for s in sets)
            raise CorrectionsError(
                f"the corrections were made under {len(sets)} label sets ({named}), whose label ids mean "
                "different labels: export csv or chat-jsonl (they write names), or one label set's"
            )
        return _jsonl({"text": c.text, "label": c.label_id} for c in rows)
    if fmt == "chat-jsonl":
        return _jsonl(c.label_set.to_prompt_completion(c.text, c.label) for c in rows)
    # The label_set column only when a correction was made under another set than the six, so exports of
    # the six emotions stay as they were.
    columns = CSV_COLUMNS + (("label_set",) if any(s != EMOTIONS for s in sets) else ())
    return csv_text(
        (
            {**dataclasses.asdict(c), "label_id": c.label_id, "label_set": ",".join(c.label_set.names)}
            for c in rows
        ),
        columns,
    )


def _describe_os_error(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on the device"
    return e.strerror or str(e)


def atomic_write(out_path: str | os.PathLike, data: bytes) -> Path:
    """`files.atomic_write_bytes`, with a CorrectionsError that says why (a full disk included)."""
    try:
        return atomic_write_bytes(out_path, data)
    except OSError as e:
        raise CorrectionsError(f"cannot write {out_path}: {_describe_os_error(e)}") from e


def export(
    store: CorrectionStore, fmt: str, out_path: str | os.PathLike, labels: LabelSet | None = None
) -> Path:
    """Write the current corrections (those made under `labels`, if given) to `out_path` in `fmt`
    (UTF-8, `\\n` newlines), atomically."""
    return atomic_write(out_path, render(store, fmt, labels).encode("utf-8"))


# -- training hook --------------------------------------------------------------------------------------


def training_examples(store: CorrectionStore, labels: LabelSet | None = None) -> list[dict[str, Any]]:
    """The current corrections whose label is a label of `labels` (default: the six), as rows of ids of
    that set ({"text", "label": int}) for a run's extra data. A correction's label is matched by name,
    whatever set it was made under; the others stay in the store, out of this run."""
    labels = labels or EMOTIONS
    return [{"text": c.text, "label": labels.id_of(c.label)} for c in store.current() if c.label in labels]


def oversample(rows: Sequence[dict[str, Any]], factor: int) -> list[dict[str, Any]]:
    """`factor` copies of the rows (new dicts, so callers may mutate them); the trainer shuffles."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"oversample factor must be a whole number >= 1, not {factor!r}")
    return [dict(r) for _ in range(factor) for r in rows]
