"""Safe file writing shared by reports, runs and exports: atomic replace, spreadsheet-safe CSV; and the one
check both CSV readers (data's and tables') need that their parsers do not make: a quote never closed.

Every CSV the project writes goes through `csv_text`, so every one is safe the same way.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file, and a
    failure (a full disk) leaves the old file or nothing under the final name. Raises OSError."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)  # mkstemp makes it 0600; reports and exports are meant to be read
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every filesystem can fsync a folder
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def spreadsheet_safe(value: Any) -> Any:
    """A cell that starts like a formula is run by spreadsheet programs; a leading quote disarms it.

    A text that already starts with the quote gets one more, so `spreadsheet_text` reads every cell back
    exactly as it was (OWASP's CSV-injection advice: prefix the cell and quote it; `csv_text` quotes).
    """
    if isinstance(value, str) and value.startswith((*FORMULA_PREFIXES, _ESCAPE)):
        return _ESCAPE + value
    return value


def spreadsheet_safe_table(table: Any) -> Any:
    """`spreadsheet_safe` on every text column of a pyarrow Table at once (`predict` writes its CSV chunks
    with pyarrow's writer, quoting every cell). One difference: a plain number ("-5", "+1.5e3") is left as it
    is, since predict reads a CSV input's columns as text and a number is no formula; `spreadsheet_text`
    reads both back the same."""
    import pyarrow as pa
    import pyarrow.compute as pc

    risky = "^[" + "".join("\\" + c if c in "-^\\]" else c for c in (*FORMULA_PREFIXES, _ESCAPE)) + "]"
    number = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
    columns = []
    for values in table.columns:
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            armed = pc.and_not(
                pc.match_substring_regex(values, risky), pc.match_substring_regex(values, number)
            )
            values = pc.if_else(armed, pc.binary_join_element_wise(pa.scalar(_ESCAPE), values, ""), values)
        columns.append(values)
    return pa.Table.from_arrays(columns, names=table.column_names)


def spreadsheet_text(cell: str) -> str:
    """The text a `spreadsheet_safe` cell stands for (what a table in the app shows)."""
    if cell.startswith(_ESCAPE) and cell[1:].startswith((*FORMULA_PREFIXES, _ESCAPE)):
        return cell[1:]
    return cell


def csv_text(rows: Iterable[dict], columns: Sequence[str]) -> str:
    """A CSV table with a header: every cell quoted and disarmed, None as an empty cell.

    Quoting every cell keeps a spreadsheet that splits on ";" or tabs (many locales) from finding a cell
    that starts with "=" inside a field. Rows end in "\n"; written with "\r\n" first, since the csv module
    quotes only for the characters of its own line terminator and a bare "\r" in a cell must be quoted too.
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    lines = []
    for cells in ([*columns], *([row.get(c) for c in columns] for row in rows)):
        buf.seek(0)
        buf.truncate()
        writer.writerow(["" if v is None else spreadsheet_safe(v) for v in cells])
        lines.append(buf.getvalue()[:-2] + "\n")
    return "".join(lines)


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV written by `csv_text`, every cell as the text it stands for."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [{k: spreadsheet_text(v or "") for k, v in row.items()} for row in csv.DictReader(fh)]


UNCLOSED_QUOTE = (
    'a quoted text is never closed, so every row after it would be read as part of it; close the quote (") '
    "or remove it"
)


def unclosed_quote_line(lines: Iterable[str], delimiter: str) -> int | None:
    """The line of a CSV text where a quoted field opens and is never closed, else None. pyarrow's reader and
    Python's lenient one both read such a field to the end of the file without a word; Python's strict one
    stops there. A stray quote inside an unquoted field (`5'11" tall`) is no error. Callers run it only on a
    text with an odd number of quote characters, since quoting adds them in pairs."""
    last = 0
    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)  # the open field runs to the end of the file: read it, to see it ends
    try:
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        for _ in reader:
            last = reader.line_num
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return last + 1
    finally:
        csv.field_size_limit(limit)
    return None
