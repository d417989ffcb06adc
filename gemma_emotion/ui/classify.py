"""The Classify tab and the `classify` / `classify_batch` API endpoints.

One text: label, a probability per label of the loaded model's label set (score mode; the bars follow
the set), the raw answer, valid or not, latency; answered by the app state's micro-batcher, so the
requests that wait together share one batched pass (the handlers are async: a request waiting for its
pass holds no thread). Many texts (`classify_batch`, and the Label tab's scoring) and a file of texts
("Classify a file", `classify_file`) go through the `predict` command's path (`predict.label_texts`,
`predict.predict_file`): in chunks, with progress, stopped by the Stop button or a cancelled request
(`common.in_thread`), at most the settings' batch limit of texts or rows. The file's download is
`predict`'s output: every column of the upload, then the labels. The file's column of texts is predict's
guess (text, sentence, …) unless chosen in the tab's "Text column" field, which an upload fills with its
columns (`text_column` of the `classify_file` endpoint). The API functions return plain dicts;
the tab adds the plot and the table on top of the same calls.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import pyarrow as pa

from gemma_emotion.batching import CancelToken
from gemma_emotion.classify import MODES, Prediction
from gemma_emotion.data import LABEL_COLUMNS, pick_column
from gemma_emotion.labels import LabelSet, LabelSetError
from gemma_emotion.paths import ASSETS
from gemma_emotion.predict import Labels, PredictOptions, PredictSummary, output_names
from gemma_emotion.tables import OUTPUT_SUFFIXES, Source, TextColumnError, guess_text_column
from gemma_emotion.ui import plots
from gemma_emotion.ui.common import BATCHED, api_endpoint, check_upload, in_thread, md, warn
from gemma_emotion.ui.state import AppState, TextInput, UserError

EXAMPLES_FILE = ASSETS / "examples.json"
TEXT_FIELD = "Text column"  # the label of "Classify a file"'s column field, which its messages name
TEXT_COLUMN_HINT = f"choose the column that holds the texts in the '{TEXT_FIELD}' field"
SHOWN_ROWS = 200  # a classified file's first rows in the page's table; the download holds them all
MODE_INFO = (
    "score: the probability of each label of the model's label set (never invalid). "
    "generate: the model writes its answer, read strictly (can be invalid)."
)


def empty_predictions() -> pd.DataFrame:
    """The predictions table before (or instead of) a result: its first columns, no rows."""
    return pd.DataFrame(columns=["text", "label", "confidence"])


def example_texts() -> list[str]:
    try:
        return [item["text"] for item in json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def classify_text(
    state: AppState, text: str, mode: str = "score", thinking: bool = False, finetuned: bool = True
) -> dict[str, Any]:
    """One text → the prediction as a dict, with the model it came from and any note about the input."""
    check_mode(mode)
    cleaned, start = state.clean_text(text), time.perf_counter()
    pred = state.submit_classify(cleaned.text, mode, adapter=finetuned, thinking=thinking).result()
    return single_result(state, pred, cleaned, start, thinking, finetuned)


async def classify_text_async(
    state: AppState, text: str, mode: str = "score", thinking: bool = False, finetuned: bool = True
) -> dict[str, Any]:
    """`classify_text` for async handlers: waits for its pass without holding a thread; a cancelled
    request leaves the pass if that has not started yet."""
    check_mode(mode)
    cleaned, start = state.clean_text(text), time.perf_counter()
    future = state.submit_classify(cleaned.text, mode, adapter=finetuned, thinking=thinking)
    pred = await asyncio.wrap_future(future)
    return single_result(state, pred, cleaned, start, thinking, finetuned)


def single_result(
    state: AppState, pred: Prediction, cleaned: TextInput, start: float, thinking: bool, finetuned: bool
) -> dict[str, Any]:
    result = prediction_dict(pred, state)
    result["total_ms"] = round((time.perf_counter() - start) * 1000, 2)
    result["thinking"] = bool(thinking) and state.supports_thinking(state.model)
    result["note"] = cleaned.note
    result["finetuned"] = bool(finetuned) and result["adapter"] is not None
    return result


def prediction_dict(pred: Prediction, state: AppState) -> dict[str, Any]:
    lm = state.model
    data = pred.to_dict()
    data["text"] = pred.text
    data["model"] = lm.spec.name if lm else None
    data["adapter"] = lm.adapter if lm else None
    return data


def check_batch_size(state: AppState, n: int) -> None:
    """UserError past the settings' limit on texts in one request, pointing to the command for more."""
    limit = state.settings.batch_text_limit()
    if n <= limit:
        return
    if state.settings.demo_mode:
        raise UserError(f"at most {limit:,} texts at once in this demo, got {n:,}")
    raise UserError(
        f"at most {limit:,} texts in one request here (max_batch_texts), got {n:,}: label a larger set with "
        "the command line, `gemma-emotion predict FILE`, which works through a file in chunks and resumes"
    )


def classify_texts(
    state: AppState,
    texts: list[str],
    mode: str = "score",
    finetuned: bool = True,
    progress=None,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Many texts → one dict each, in input order, through `predict.label_texts`; texts over the size
    limit are cut (and say so). In chunks: `progress(done, total)` after each, and a set `cancel` stops
    the job (RequestCancelled)."""
    check_mode(mode)
    if not texts:
        raise UserError("no texts to classify")
    check_batch_size(state, len(texts))
    cleaned = state.clean_texts(texts)
    results = state.label_many(
        [c.text for c in cleaned], mode, adapter=finetuned, progress=progress, cancel=cancel
    )
    lm = state.model
    for c, row in zip(cleaned, results):
        row.update(text=c.text, model=lm.spec.name if lm else None, adapter=lm.adapter if lm else None,
                   note=c.note)  # fmt: skip
    return results


# -- a file of texts ------------------------------------------------------------------------------------
def file_columns(state: AppState, path: str | None) -> tuple[list[str], str | None]:
    """An uploaded texts file's columns and the one `predict` would label when none is chosen (None when
    no column has a text name): what the text-column field offers after an upload."""
    source = Source.probe(check_upload(path, state.settings))
    return source.columns, guess_text_column(source.columns)


def column_field(state: AppState, path: str | None) -> tuple[dict, str]:
    """What a text-column field shows after an upload: the file's columns with predict's guess chosen,
    and a note when there is no guess (empty for a file that cannot be read: that is said when it is
    used). Shared by the Classify and Label tabs' uploads."""
    if not path:
        return gr.update(choices=[], value=None), ""
    try:
        columns, guess = file_columns(state, path)
    except Exception:  # noqa: BLE001 - reported by the action that reads the file
        return gr.update(choices=[], value=None), ""
    note = "" if guess else f"⚠️ {Path(path).name}: no column has a text name; {TEXT_COLUMN_HINT}"
    return gr.update(choices=columns, value=guess), note


def text_column_field(elem_id: str) -> gr.Dropdown:
    """An upload's Text column field (Classify and Label tabs), filled by `column_field` on upload. Empty
    means predict's guess; a custom value is allowed so that an API caller, whose session never saw the
    upload fill the choices, can name one."""
    return gr.Dropdown(
        label=TEXT_FIELD,
        choices=[],
        value=None,
        allow_custom_value=True,
        info="the column of texts; empty: text, sentence, tweet, content, … (the first present)",
        elem_id=elem_id,
    )


def chosen_columns(state: AppState, path: str | None, text_column: str | None) -> tuple[str, str | None]:
    """The upload's column of texts (the one chosen, else predict's guess; the app's message when neither
    is there) and its column of labels to compare with: a label column other than the texts'."""
    source = open_upload(check_upload(path, state.settings), (text_column or "").strip() or None)
    return source.text_column, gold_column(source)


def gold_column(source: Source) -> str | None:
    """The file's labels to compare with: a label column other than the one chosen as the texts."""
    return pick_column([c for c in source.columns if c != source.text_column], LABEL_COLUMNS)


def open_upload(file: Path, text_column: str | None) -> Source:
    """`Source.open` with the text column the user chose (None: predict's guess); a file without the
    column gets the app's message, which names the field to choose it in (predict's names its flag)."""
    try:
        return Source.open(file, text_column)
    except TextColumnError as exc:
        text = exc.message(TEXT_COLUMN_HINT)
        if exc.wanted is not None:  # a name the file lacks (an API caller's): the same way out
            text += f"; {TEXT_COLUMN_HINT}"
        raise UserError(text) from exc


def classify_file(
    state: AppState,
    path: str | None,
    mode: str = "score",
    finetuned: bool = True,
    text_column: str | None = None,
    progress=None,
    cancel: CancelToken | None = None,
) -> tuple[PredictSummary, FileView, str]:
    """An uploaded file labelled by `predict.predict_file` into a fresh temporary folder: the summary, what
    the page shows, and the path of the output (the upload's format, a JSON array giving JSON Lines; every
    column of the upload, then the labels). `text_column` is the column to label (None or blank: predict's
    guess, the first of text, sentence, …). A file of more rows than the settings' batch limit is refused
    before any is labelled, pointing to the `predict` command."""
    check_mode(mode)
    file = check_upload(path, state.settings)
    source = open_upload(file, (text_column or "").strip() or None)
    limit = state.settings.batch_text_limit()
    rows = source.rows_over(limit)
    if rows is not None:
        raise UserError(file_limit_message(state, file.name, rows, limit))
    folder = Path(tempfile.mkdtemp(prefix="gemma-emotion-"))
    out = folder / labelled_name(file)
    options = PredictOptions(
        mode=mode, text_column=source.text_column, adapter=bool(finetuned), max_rows=limit
    )
    view = FileView(state.labels, mode, source.text_column, gold_column(source))
    try:
        summary = state.label_file(file, out, options, progress=progress, on_chunk=view, cancel=cancel)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a stopped or failed job leaves no half file behind
        raise
    return summary, view, str(out)


def labelled_name(file: Path) -> str:
    """The download's name: the upload's, marked, in its format (JSON Lines for a JSON array)."""
    suffix = file.suffix.lower()
    return f"{file.stem}-labelled{suffix if suffix in OUTPUT_SUFFIXES else '.jsonl'}"


def file_limit_message(state: AppState, name: str, rows: int, limit: int) -> str:
    if state.settings.demo_mode:
        return f"{name} has {rows:,} rows; this demo labels at most {limit:,} at once"
    return (
        f"{name} has {rows:,} rows, more than the {limit:,} one file may have here (max_batch_texts): label "
        f"it with the command line, `gemma-emotion predict {name} --out labelled.csv`, which works through a "
        "file of any size in chunks and resumes after a crash"
    )


class FileView:
    """What the page shows of a file as its chunks are labelled: the first rows (the text, the labels and,
    when the file has a label column, its label and whether the two agree) and the agreement over all
    rows. The file's label column is compared only while every value in it is a label of the set: the
    first one that is not turns the comparison off (`off` says why) and the labels are still written."""

    def __init__(self, labels: LabelSet, mode: str, text_column: str, gold_column: str | None) -> None:
        self.labels, self.text_column, self.gold_column = labels, text_column, gold_column
        self.outputs = output_names(mode, labels.names)
        self.rows: list[dict[str, Any]] = []
        self.seen = 0
        self.gold = 0  # rows compared with the file's label
        self.correct = 0
        self.off: str | None = None

    def __call__(self, inputs: pa.Table, labels: Labels) -> None:
        texts = self._column(inputs, self.text_column)
        golds = self._column(inputs, self.gold_column)
        predicted = labels.label
        outputs = {name: values.to_pylist() for name, values in labels.columns().items()}
        for i, (text, gold, label) in enumerate(zip(texts, golds, predicted)):
            gold = self._gold(gold, self.seen + i)
            if gold is not None and label is not None:
                self.gold += 1
                self.correct += label == gold
            if len(self.rows) < SHOWN_ROWS:
                row = {"text": text}
                row.update({name: _shown(outputs[name][i]) for name in self.outputs})
                row.update(gold=gold or "", correct="" if gold is None or label is None else label == gold)
                self.rows.append(row)
        self.seen += len(labels)

    @staticmethod
    def _column(inputs: pa.Table, name: str | None) -> list[Any]:
        if name is None or name not in inputs.column_names:  # JSON rows may lack a key
            return [None] * inputs.num_rows
        return inputs.column(name).to_pylist()

    def _gold(self, value: Any, row: int) -> str | None:
        if self.off is not None or value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            return self.labels.name_of(value)
        except LabelSetError as exc:
            self.off = f"row {row + 1} of its '{self.gold_column}' column: {exc}"
            return None

    @property
    def compared(self) -> bool:
        return self.gold_column is not None and self.off is None and self.gold > 0

    def frame(self) -> pd.DataFrame:
        columns = ["text", *self.outputs] + (["gold", "correct"] if self.compared else [])
        return pd.DataFrame(self.rows, columns=columns)


def _shown(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def file_message(summary: PredictSummary, view: FileView) -> str:
    counts = ", ".join(f"{name} {n}" for name, n in summary.label_counts.items() if n)
    parts = [f"{summary.rows:,} rows classified in {summary.seconds:.1f} s"]
    if counts:
        parts.append(f"labels: {counts}")
    if view.compared:
        parts.append(f"agreement with the file's labels {view.correct / view.gold:.1%} ({view.gold:,} rows)")
    if view.off:
        parts.append(f"the file's labels are not compared ({view.off})")
    if summary.invalid:
        parts.append(f"invalid answers: {summary.invalid}")
    if summary.empty:
        parts.append(f"rows without text (no label): {summary.empty}")
    if summary.cut:
        parts.append(f"long texts cut to the model's limit: {summary.cut}")
    if summary.rows > len(view.rows):
        parts.append(f"the table shows the first {len(view.rows)}; the download holds them all")
    return "; ".join(parts)


def build(state: AppState) -> dict[str, Any]:
    """The Classify tab's components and events (call inside a gr.Tab); returns the "wrong?" button and
    the state holding the latest result, which the layout connects to the Label tab."""
    last = gr.State(None)  # the latest result shown, for the "wrong?" button
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(
                label="Text",
                lines=4,
                max_lines=12,
                placeholder="Type or paste a short English text…",
                # Measured (README, "Texts phrased otherwise"): 24/24 phrased so, 6/24 otherwise.
                info='The shipped adapter learned from tweets that say how someone feels ("i feel …"): '
                "it reads texts phrased so best",
                elem_id="classify-text",
            )
            with gr.Row():
                mode = gr.Radio(list(MODES), value="score", label="Mode", info=MODE_INFO)
                thinking = gr.Checkbox(
                    value=False, label="Thinking", info="Gemma 4 only; off is what classification wants"
                )
            with gr.Row():
                button = gr.Button("Classify", variant="primary", elem_id="classify-button", scale=3)
                wrong = gr.Button("wrong? correct it", elem_id="classify-wrong", scale=1)
            examples = example_texts()
            if examples:
                gr.Examples(examples=[[t] for t in examples], inputs=[text], label="Examples")
        with gr.Column(scale=2):
            label = gr.Textbox(label="Label", interactive=False, elem_id="classify-label")
            message = gr.Textbox(label="Message", interactive=False, visible=True, elem_id="classify-message")
            chart = gr.Plot(
                show_label=False, value=plots.empty("Label probabilities"), elem_id="classify-chart"
            )
            with gr.Row():
                raw = gr.Textbox(label="Raw answer", interactive=False)
                valid = gr.Textbox(label="Valid", interactive=False)
                latency = gr.Textbox(label="Latency", interactive=False)

    with gr.Accordion("Classify a file of texts", open=False):
        gr.Markdown(
            "Upload a CSV, TSV, JSONL or Parquet file with a `text` column, or choose its column of texts "
            f"in **{TEXT_FIELD}** (a `label` column is optional: the labels are compared with it). Up to "
            f"{state.settings.batch_text_limit():,} rows; the "
            "download holds every column of the file, then the label and its probabilities (score mode). "
            "A larger file: the `gemma-emotion predict` command."
        )
        with gr.Row():
            upload = gr.File(
                label="Texts file",
                file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet"],
                elem_id="classify-file-upload",
            )
            with gr.Column():
                batch_mode = gr.Radio(list(MODES), value="score", label="Mode")
                text_col = text_column_field("classify-file-column")
        with gr.Row():
            batch_button = gr.Button("Classify file", elem_id="classify-file-button", scale=3)
            batch_stop = gr.Button("Stop", variant="stop", elem_id="classify-file-stop", scale=1)
        batch_message = gr.Textbox(label="Message", interactive=False, elem_id="classify-file-message")
        # An empty table with the output's first columns, not gradio's placeholder headers "1 2 3".
        table = gr.Dataframe(
            value=empty_predictions(), label="Predictions", interactive=False, wrap=True, max_height=420
        )
        batch_file = gr.File(label="Download predictions", interactive=False)

    async def on_classify(text_value: str, mode_value: str, thinking_value: bool):
        try:
            res = await classify_text_async(state, text_value, mode_value, thinking_value)
        except Exception as exc:
            return "", warn(exc), plots.empty("Label probabilities"), "", "", "", None
        notes = [n for n in (res["note"],) if n]
        if thinking_value and not res["thinking"]:
            notes.append("thinking is a Gemma 4 switch; this model ignores it")
        shown = f"{res['model']}{' + adapter' if res['adapter'] else ''}"
        return (
            res["label"],
            "; ".join(notes) or f"classified by {shown}",
            plots.probabilities({res["label"]: res["probabilities"]} if res["probabilities"] else {}),
            res["raw"],
            "valid" if res["valid"] else "invalid: not one of the labels",
            f"{res['latency_ms']:.0f} ms model, {res['total_ms']:.0f} ms in all",
            res,
        )

    button.click(
        on_classify,
        [text, mode, thinking],
        [label, message, chart, raw, valid, latency, last],
        api_visibility="private",
        **BATCHED,
    )
    text.submit(
        on_classify,
        [text, mode, thinking],
        [label, message, chart, raw, valid, latency, last],
        api_visibility="private",
        **BATCHED,
    )

    upload.change(
        lambda path: column_field(state, path), [upload], [text_col, batch_message],
        api_visibility="private", concurrency_limit=None,
    )  # fmt: skip

    async def on_batch(path: str | None, mode_value: str, column: str | None = None, progress=gr.Progress()):
        def shown(done: int, total: int | None) -> None:
            if total:
                progress((done, total), desc="classifying", unit="texts")

        try:
            progress(0, desc="reading the file")
            summary, view, out = await in_thread(
                classify_file, state, path, mode_value, text_column=column, progress=shown
            )
        except Exception as exc:
            return warn(exc), empty_predictions(), None
        if view.off:
            gr.Warning(md(f"the file's labels are not compared: {view.off}"))
        return file_message(summary, view), view.frame(), out

    # Public as `classify_file`: an API client uploads a file (gradio_client's handle_file) and gets the
    # message, the table and the labelled file, as the page does. Its text_column parameter comes last and
    # defaults to empty (predict's guess), so calls made before it existed work as they did.
    batch_event = batch_button.click(
        on_batch, [upload, batch_mode, text_col], [batch_message, table, batch_file], api_name="classify_file"
    )
    batch_stop.click(None, None, None, cancels=[batch_event], api_visibility="private")

    @api_endpoint
    async def classify(
        text: str, mode: str = "score", thinking: bool = False, finetuned: bool = True
    ) -> dict:
        """Classify one text: label, valid, probabilities (score mode), raw, latency_ms, model, adapter.
        Requests that arrive together are answered by one batched pass (the same answers)."""
        return await classify_text_async(state, text, mode, thinking, finetuned)

    @api_endpoint
    async def classify_batch(texts: list[str], mode: str = "score", finetuned: bool = True) -> list[dict]:
        """Classify many texts; one result dict each, in input order. Runs in chunks; a cancelled request
        stops at the next chunk. At most max_batch_texts texts (the settings)."""
        return await in_thread(classify_texts, state, texts, mode, finetuned)

    gr.api(classify, api_name="classify", **BATCHED)
    gr.api(classify_batch, api_name="classify_batch")
    return {"wrong": wrong, "last": last}
