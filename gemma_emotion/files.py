"""Safe file writing shared by reports, runs and exports: atomic replace, spreadsheet-safe cells."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file, and a
    failure (disk full) leaves nothing under the final name."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def spreadsheet_safe(value):
    """A cell that starts like a formula is run by spreadsheet programs; a leading quote disarms it."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
