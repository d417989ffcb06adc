"""Helpers every tab shares: user-facing errors, download files, safe text, uploaded tables.

Errors a user can cause (bad input, a malformed file, a model that does not load) become one clear
message: `gr.Error` for API callers, a `gr.Warning` toast plus a message field in the page. Anything else
is reported by type and text rather than crashing the request handler.
"""

from __future__ import annotations

import errno
import functools
import html
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from gemma_emotion.data import DataError, load_split
from gemma_emotion.errors import UserError
from gemma_emotion.files import atomic_write_text, csv_text  # noqa: F401 - the tabs' downloads
from gemma_emotion.labels import LabelSet
from gemma_emotion.settings import Settings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
UPLOAD_TYPES = [".csv", ".tsv", ".jsonl", ".json", ".parquet"]


def message_of(exc: BaseException) -> str:
    """The message to show for an exception: its text for user errors, type and text otherwise."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "no space left on the device: nothing was saved; free some disk space and try again"
    if isinstance(exc, UserError):
        return str(exc) or type(exc).__name__
    return f"unexpected error ({type(exc).__name__}): {exc}"


def api_endpoint(fn: F) -> F:
    """For gr.api functions: user errors reach the client as gr.Error with the message, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            if not isinstance(exc, UserError):
                log.exception("%s failed", fn.__name__)
            raise gr.Error(message_of(exc), print_exception=False) from exc

    return wrapper  # type: ignore[return-value]


def warn(exc: BaseException) -> str:
    """Show a toast for the exception and return the text for the page's message field."""
    text = message_of(exc)
    if not isinstance(exc, UserError):
        log.exception("request failed", exc_info=exc)
    gr.Warning(md(text))  # a toast renders HTML; the message may quote a file name or a dataset row
    return f"⚠️ {text}"


def md(text: Any) -> str:
    """User or dataset text made safe to put inside Markdown/HTML."""
    return html.escape(str(text), quote=True)


def download(name: str, content: str) -> str:
    """Write `content` to a fresh temporary folder and return the path for a gr.File output.

    A copy rather than the report's own file, so the storage folder (and the corrections database in it)
    never has to be served.
    """
    folder = Path(tempfile.mkdtemp(prefix="gemma-emotion-"))
    path = folder / name
    try:
        atomic_write_text(path, content)  # a full disk leaves no half file behind
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return str(path)


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def check_upload(path: str | None, settings: Settings) -> Path:
    """The uploaded texts file, if its type and size are allowed; UserError otherwise."""
    if not path:
        raise UserError("upload a CSV, JSONL or Parquet file with a 'text' column first")
    file = Path(path)
    if file.suffix.lower() not in UPLOAD_TYPES:
        raise UserError(f"{file.name}: use a .csv, .tsv, .jsonl, .json or .parquet file")
    if file.stat().st_size > settings.max_upload_mb * 1024 * 1024:
        raise UserError(f"{file.name} is larger than {settings.max_upload_mb} MB")
    return file


def read_upload(
    path: str | None, settings: Settings, labels: LabelSet | None = None
) -> tuple[list[str], list[int]]:
    """Texts (and label ids of `labels`, -1 where none) of an uploaded CSV/JSONL/Parquet file; UserError
    when unusable, labels outside the set included."""
    file = check_upload(path, settings)
    try:
        ds = load_split(file, require_labels=False, labels=labels)
    except DataError as exc:
        # The message names gradio's temporary path; the user knows the file by its name.
        raise UserError(str(exc).replace(str(file), file.name)) from exc
    texts, labels = list(ds["text"]), list(ds["label"])
    limit = settings.clamp_eval_rows(len(texts))
    note_rows = limit if limit is not None else len(texts)
    return texts[:note_rows], labels[:note_rows]
