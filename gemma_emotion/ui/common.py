"""Helpers every tab shares: user-facing errors, download files, safe text, uploaded tables, and long
jobs that a cancelled request stops.

Labelled uploads (Train and Evaluate) go through `uploaded_path` (only files the visitor uploaded),
`labelled_preview` / `read_labelled` (the settings' limits; messages name the file, not the server's
temporary path) and `preview_view` (what the tabs show of a preview).

Errors a user can cause (bad input, a malformed file, a model that does not load) become one clear
message: `gr.Error` for API callers, a `gr.Warning` toast plus a message field in the page. Anything else
is reported by type and text rather than crashing the request handler.

How a cancelled request reaches a running function in Gradio 6: `/cancel` (the page's Stop button, a
`gradio_client` job's `cancel()`) cancels the asyncio task of the event; a synchronous function runs in a
worker thread that the cancellation never reaches (the task even waits for the thread to finish, holding
the queue), and a client that goes away only marks its event dead (`Queue.clean_events`). A generator
would be closed between two yields, but the API endpoints return one value. So long jobs run through
`in_thread`: an async function that runs the job in a thread with a `CancelToken`, sets the token when its
task is cancelled or its client is gone, and returns once the job has stopped at its next chunk.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import html
import inspect
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import pandas as pd

from gemma_emotion.batching import CancelToken
from gemma_emotion.data import EMPTY, DataError, Preview, Table, preview, read_split
from gemma_emotion.errors import UserError
from gemma_emotion.files import atomic_write_bytes, csv_text  # noqa: F401 - the tabs' downloads
from gemma_emotion.labels import LabelSet, LabelSetError
from gemma_emotion.settings import Settings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
UPLOAD_TYPES = [".csv", ".tsv", ".jsonl", ".json", ".parquet"]
# Events of the batched endpoints (one text to classify or compare) in flight at once. They wait for their
# pass without holding a thread, and the batcher answers every waiting one per pass, so this only needs to
# reach the size of a burst: 64, as the queue's max_size (space.yaml).
BATCHED = {"concurrency_limit": 64, "concurrency_id": "batched"}
CLIENT_POLL_S = 0.5  # how often a long job looks whether its client is still there


def message_of(exc: BaseException) -> str:
    """The message to show for an exception: its text for user errors, type and text otherwise."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "no space left on the device: nothing was saved; free some disk space and try again"
    if isinstance(exc, UserError):
        return str(exc) or type(exc).__name__
    return f"unexpected error ({type(exc).__name__}): {exc}"


def api_endpoint(fn: F) -> F:
    """For gr.api functions (plain or async): user errors reach the client as gr.Error with the message,
    no traceback."""

    def as_gr_error(exc: Exception) -> gr.Error:
        if not isinstance(exc, UserError):
            log.exception("%s failed", fn.__name__)
        return gr.Error(message_of(exc), print_exception=False)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise as_gr_error(exc) from exc

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise as_gr_error(exc) from exc

    return wrapper  # type: ignore[return-value]


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, cancel=token, **kwargs)` in a worker thread, for an async event handler of a long job.

    When the event is cancelled (Stop, `/cancel`) or its client is gone, the token is set; `fn` stops at
    its next chunk (RequestCancelled) and only then does this return (re-raising the cancellation), so the
    model and the queue are free when Gradio reports the event cancelled. The thread runs in a copy of
    this context, where `gr.Progress` finds its event.
    """
    token = CancelToken()
    context = contextvars.copy_context()
    job = asyncio.get_running_loop().run_in_executor(
        None, context.run, functools.partial(fn, *args, cancel=token, **kwargs)
    )
    gone = _client_watch()
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=CLIENT_POLL_S)
            if done:
                return job.result()
            if gone():
                token.cancel("given up: the client went away")
    except asyncio.CancelledError:
        token.cancel("cancelled")
        await asyncio.wait({job})  # the job stops at its next chunk
        if not job.cancelled():
            job.exception()  # its RequestCancelled is the expected end: read, so asyncio logs no error for it
        raise


def _client_watch() -> Callable[[], bool]:
    """A check of whether the client of the running event has gone away.

    Gradio 6 has no public hook for it: when a client's event stream closes, `Queue.clean_events` marks
    its running events `alive = False` and nothing else. This reads that flag through the event's id
    (`LocalContext`); if Gradio's internals change shape, the check says "still there" and only an
    explicit cancel stops the job.
    """
    try:
        from gradio.context import LocalContext

        blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
        events = blocks._queue.event_ids_to_events  # type: ignore[union-attr]
    except (AttributeError, ImportError, LookupError):
        return lambda: False

    def gone() -> bool:
        event = events.get(event_id)
        return event is not None and getattr(event, "alive", True) is False

    return gone


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


def download(name: str, content: str | bytes) -> str:
    """Write `content` (text as UTF-8, or bytes: a Parquet file) to a fresh temporary folder and return the
    path for a gr.File output.

    A copy rather than the report's own file, so the storage folder (and the corrections database in it)
    never has to be served.
    """
    folder = Path(tempfile.mkdtemp(prefix="gemma-emotion-"))
    path = folder / name
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        atomic_write_bytes(path, data)  # a full disk leaves no half file behind
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return str(path)


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def check_upload(path: str | None, settings: Settings) -> Path:
    """An uploaded texts file whose type and size are allowed; UserError otherwise."""
    if not path:
        raise UserError("upload a CSV, JSONL or Parquet file with a 'text' column first")
    file = Path(path)
    if file.suffix.lower() not in UPLOAD_TYPES:
        raise UserError(f"{file.name}: use a .csv, .tsv, .jsonl, .json or .parquet file")
    if file.stat().st_size > settings.max_upload_mb * 1024 * 1024:
        raise UserError(f"{file.name} is larger than {settings.max_upload_mb} MB")
    return file


def read_upload(
    path: str | None,
    settings: Settings,
    labels: LabelSet | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> tuple[list[str], list[int], str]:
    """Texts (and label ids of `labels`, -1 where none) of an uploaded CSV/JSONL/Parquet file, from the
    columns named (None: the usual names), and a note of the rows left out ('' when none): rows without
    text, as `predict` leaves them unlabelled, and rows past the demo's limit. UserError when the file is
    unusable, labels outside the set included."""
    file = check_upload(path, settings)
    try:
        table = read_split(file, require_labels=False, labels=labels, text_column=text_column,
                           label_column=label_column, drop={EMPTY})  # fmt: skip
    except (DataError, LabelSetError) as exc:
        raise UserError(_by_name(exc, file)) from exc
    texts, ids = list(table.ds["text"]), list(table.ds["label"])
    notes = [table.dropped_text()] if table.dropped else []
    limit = settings.clamp_eval_rows(len(texts))
    if limit is not None and limit < len(texts):
        notes.append(f"only the first {limit} of {len(texts)} texts: this app's limit")
        texts, ids = texts[:limit], ids[:limit]
    return texts, ids, "; ".join(notes)


# -- labelled uploads (Train and Evaluate) ----------------------------------------------------------------
PREVIEW_COLUMNS = ["text", "label"]


def uploaded_path(file: Any) -> Path | None:
    """The server path of a file the visitor uploaded: a gr.File value, or the file dict an API client
    sends; None when there is none. Anything outside gradio's upload folder is refused, so an API caller
    cannot make the app read a server file by naming it here."""
    from gradio.utils import get_upload_folder, is_in_or_equal

    if isinstance(file, dict):
        file = file.get("path")
    if file is None or (isinstance(file, str) and not file.strip()):
        return None
    if not isinstance(file, str | Path):
        raise UserError("upload a file (CSV, TSV, JSONL, JSON or Parquet)")
    if not is_in_or_equal(str(file), get_upload_folder()):
        raise UserError("upload the file: a path on the server is not accepted here")
    path = Path(file)
    if path.suffix.lower() not in UPLOAD_TYPES:
        raise UserError(f"{path.name}: use a .csv, .tsv, .jsonl, .json or .parquet file")
    return path


def labelled_preview(
    path: Path,
    settings: Settings,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: LabelSet | None = None,
) -> Preview:
    """`data.preview` of an upload under the settings' limits; UserError naming the file when unusable."""
    max_mb, max_rows = settings.upload_limits()
    try:
        return preview(path, text_column=text_column or None, label_column=label_column or None,
                       labels=labels, max_mb=max_mb, max_rows=max_rows)  # fmt: skip
    except (DataError, LabelSetError) as exc:
        raise UserError(_by_name(exc, path)) from exc


def read_labelled(
    path: Path,
    settings: Settings,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: LabelSet | None = None,
    drop: frozenset[str] = frozenset(),
) -> Table:
    """`data.read_split` of an upload under the settings' limits; UserError naming the file when unusable."""
    max_mb, max_rows = settings.upload_limits()
    try:
        return read_split(path, text_column=text_column or None, label_column=label_column or None,
                          labels=labels, drop=drop, max_mb=max_mb, max_rows=max_rows)  # fmt: skip
    except (DataError, LabelSetError) as exc:
        raise UserError(_by_name(exc, path)) from exc


def _by_name(exc: BaseException, path: Path) -> str:
    # The message names gradio's temporary path; the user knows the file by its name.
    return str(exc).replace(str(path), path.name)


def preview_view(p: Preview | None, warning: str = "") -> tuple[str, pd.DataFrame, Any, Any]:
    """(summary markdown, first rows, text-column dropdown, label-column dropdown) for a preview."""
    if p is None:
        empty = gr.Dropdown(choices=[], value=None)
        return "", pd.DataFrame(columns=PREVIEW_COLUMNS), empty, empty
    text = md(p.summary())
    if warning:
        text += f"\n\n⚠️ {md(warning)}"
    return (
        text,
        pd.DataFrame(p.first, columns=PREVIEW_COLUMNS),
        gr.Dropdown(choices=p.columns, value=p.text_column),
        gr.Dropdown(choices=p.columns, value=p.label_column),
    )
