"""Tabular files read and written in chunks: what `predict` reads its input with and writes its output with.

Owns the input formats (CSV, TSV, JSONL, a JSON array, Parquet) and `Source`, which checks a file, reads its
columns, picks its text column and yields its rows as Arrow tables of a fixed size whatever the reader's own
pieces; and the output formats: `encode_table` (CSV/TSV with every cell quoted and formulas disarmed, JSON
Lines with Arrow's types, Parquet), `TextSink` (CSV/TSV/JSONL appended to the output, fsynced after each
chunk, cut back to a given length on resume) and `ParquetSink` (a part file per chunk, joined into the
output at the end, since Parquet cannot be appended to). Knows nothing of models or labels; a file that
cannot be used raises `TableError`, whose message is the whole story for the user.

Training and evaluation data is read by `data` instead: a whole file into memory, each row checked with its
line number in the message. Here a file of any size streams through pyarrow's readers, so memory stays
bounded by the chunk (2.5 GiB peak RSS for 1,000,000 rows on a GPU host, benchmarks/README.md).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gemma_emotion.data import TEXT_COLUMNS
from gemma_emotion.errors import UserError
from gemma_emotion.files import UNCLOSED_QUOTE, spreadsheet_safe_table, unclosed_quote_line

INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
OUTPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
PARTS_SUFFIX = ".parts"
HEAD_BYTES = 1 << 20  # the input's first MiB is hashed into its fingerprint
_CSV_BLOCK = 1 << 22  # bytes pyarrow's CSV reader parses at a time
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, as editors on Windows start files with
CLI_COLUMN_HINT = "name it with --text-column"


class TableError(UserError, ValueError):
    """An input or output file that cannot be used; the message is the whole story for the user."""


class TextColumnError(TableError):
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


# -- reading ----------------------------------------------------------------------------------------------
def _arrow_error(path: Path, exc: Exception) -> TableError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return TableError(f"{path.name}: cannot read it ({text})")


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
            raise TableError(f"{source.path.name}: no rows")
        return source

    @classmethod
    def probe(cls, path: str | os.PathLike) -> Source:
        """The file checked and its columns read from its start, no text column chosen yet (`text_column`
        is ""): what the app offers in its text-column field after an upload."""
        path = Path(path)
        if not path.exists():
            raise TableError(f"{path}: no such file")
        if path.is_dir():
            raise TableError(f"{path}: this is a folder; give a .csv, .tsv, .jsonl or .parquet file")
        suffix = path.suffix.lower()
        if suffix not in INPUT_SUFFIXES:
            raise TableError(f"{path.name}: use a .csv, .tsv, .jsonl, .json or .parquet file")
        fmt = suffix.lstrip(".")
        if fmt != "parquet":
            with open(path, "rb") as fh:
                head = fh.read(8192)
            if b"\x00" in head:
                raise TableError(f"{path.name}: this is a binary file, not {fmt.upper()}")
            if not head.strip():
                raise TableError(f"{path.name}: the file is empty")
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
                raise TableError(f"{self.path.name}: not a readable Parquet file ({exc})") from exc
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
        """The first object of a JSON Lines file, or of a JSON array (the format becomes "json-array")."""
        with open(self.path, "rb") as fh:
            head = fh.readline().removeprefix(BOM)
        if head.lstrip().startswith(b"["):
            self.fmt = "json-array"
            first = next(iter(_json_array(self.path)), None)
        else:
            with contextlib.closing(self._json_objects()) as objects:
                first = next(objects, None)
        if first is None:
            raise TableError(f"{self.path.name}: no rows")
        return first

    def _json_objects(self) -> Iterator[dict]:
        """The objects of a JSON Lines file in order; TableError naming the first line that is not one."""
        with open(self.path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                if number == 1:
                    line = line.removeprefix(BOM)
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise TableError(f"{self.path.name}, line {number}: not valid JSON ({exc})") from exc
                if not isinstance(item, dict):
                    raise TableError(f"{self.path.name}, line {number}: expected an object with a text field")
                yield item

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
        lines, quotes, last = 0, 0, b"\n"
        with open(self.path, "rb") as fh:
            while block := fh.read(1 << 24):
                lines += block.count(b"\n")
                quotes += block.count(b'"')
                last = block[-1:]
        lines += last != b"\n"
        # Quoting adds quote characters in pairs; an odd count is a quote left open, or a stray one.
        if self.fmt in ("csv", "tsv") and quotes % 2 and (error := self._unclosed_quote()):
            raise error
        return max(0, lines - (1 if self.fmt in ("csv", "tsv") else 0))

    def _unclosed_quote(self) -> TableError | None:
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as fh:
            line = unclosed_quote_line(fh, self.delimiter)
        return None if line is None else TableError(f"{self.path.name}, line {line}: {UNCLOSED_QUOTE}")

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
        except TableError:
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
            frames = iter(reader)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    return
                except ValueError as exc:  # pandas names no line: find it (only on this error path)
                    for _ in self._json_objects():  # raises at the first line that is not an object
                        pass
                    raise _arrow_error(self.path, exc) from exc
                try:
                    yield pa.Table.from_pandas(frame, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise TableError(
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
        raise TableError(f"{path.name}: not valid JSON ({exc})") from exc
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise TableError(f"{path.name}: expected JSON Lines or an array of objects with a text field")
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


def texts_of(table: pa.Table, column: str, path: Path) -> list[str | None]:
    if column not in table.column_names:  # JSON rows without the key
        return [None] * table.num_rows
    values = table.column(column)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        try:
            values = pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise TableError(f"{path.name}: column {column!r} does not hold text ({values.type})") from exc
    return values.to_pylist()


# -- writing ------------------------------------------------------------------------------------------------
def output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise TableError(f"{path.name}: the output must end in .csv, .tsv, .jsonl or .parquet")
    return suffix.lstrip(".")


class TextSink:
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
            raise TableError(
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
        raise TableError(f"cannot write {fmt!r}: use csv, tsv, jsonl or parquet")
    return buffer.getvalue().to_pybytes()


def _flat(table: pa.Table) -> pa.Table:
    """Lists, records and maps (from JSON or Parquet input) as JSON text: a CSV cell holds one value."""
    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            text = [None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                    for v in table.column(i).to_pylist()]  # fmt: skip
            table = table.set_column(i, f.name, pa.array(text, pa.string()))
    return table


class ParquetSink:
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


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + PARTS_SUFFIX)
