"""The Classify tab and the `classify` / `classify_batch` API endpoints.

One text: label, a probability per label of the loaded model's label set (score mode; the bars follow
the set), the raw answer, valid or not, latency. A file of texts: labelled by the core's `predict_file`
(in chunks, with progress, up to the settings' row limit) into a downloadable file, its first rows shown
as a table. Many texts through the API go through the same core function, `predict.label_texts`. The API
functions return plain dicts; the tab adds the plot and the table on top of the same calls.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import pyarrow as pa

from gemma_emotion.classify import MODES, Classifier, Prediction
from gemma_emotion.data import LABEL_COLUMNS, TEXT_COLUMNS
from gemma_emotion.labels import EMOTIONS, LabelSet, LabelSetError
from gemma_emotion.paths import ASSETS
from gemma_emotion.predict import (
    PROB_PREFIX,
    Labels,
    PredictOptions,
    PredictSummary,
    label_texts,
    predict_file,
)
from gemma_emotion.ui import plots
from gemma_emotion.ui.common import api_endpoint, check_upload, warn
from gemma_emotion.ui.state import AppState, UserError

EXAMPLES_FILE = ASSETS / "examples.json"
SHOWN_ROWS = 1000  # rows of a labelled file shown in the page; the download holds them all
MODE_INFO = (
    "score: the probability of each label of the model's label set (never invalid). "
    "generate: the model writes its answer, read strictly (can be invalid)."
)


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
    cleaned = state.clean_text(text)
    start = time.perf_counter()
    pred = state.predict([cleaned.text], mode, adapter=finetuned, thinking=thinking)[0]
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


def classify_texts(
    state: AppState, texts: list[str], mode: str = "score", finetuned: bool = True, progress=None
) -> list[dict[str, Any]]:
    """Many texts → one dict each, in input order; texts over the size limit are cut (and say so)."""
    check_mode(mode)
    if not texts:
        raise UserError("no texts to classify")
    limit = state.settings.clamp_eval_rows(len(texts))
    if limit is not None and len(texts) > limit:
        raise UserError(f"at most {limit} texts at once in this demo, got {len(texts)}")
    cleaned = [state.clean_text(t) for t in texts]
    labels: Labels = state.with_classifier(
        "classify", label_texts, [c.text for c in cleaned], mode, adapter=finetuned, progress=progress
    )
    lm = state.model
    out = []
    for c, row in zip(cleaned, labels.to_dicts()):
        row.update(text=c.text, model=lm.spec.name if lm else None, adapter=lm.adapter if lm else None,
                   note=c.note)  # fmt: skip
        out.append(row)
    return out


def file_columns(labels: LabelSet = EMOTIONS) -> list[str]:
    """The columns of a labelled file's table in the page: one probability column per label of the set."""
    return ["text", "label", "confidence", "valid", "raw", *[PROB_PREFIX + n for n in labels.names], "gold",
            "correct"]  # fmt: skip


class FileView:
    """What the page shows of a labelled file: its first rows, and the accuracy where it has a label column.
    Labels in that column are read as evaluation reads them: one outside the set stops the job, naming its
    row."""

    def __init__(self, name: str, labels: LabelSet) -> None:
        self.name, self.labels = name, labels
        self.rows: list[dict[str, Any]] = []
        self.seen = 0
        self.gold = 0  # rows with a gold label
        self.correct = 0

    def __call__(self, inputs: pa.Table, labels: Labels) -> None:
        names = inputs.column_names
        text_col = next((c for c in TEXT_COLUMNS if c in names), None)
        gold_col = next((c for c in LABEL_COLUMNS if c in names), None)
        texts = inputs.column(text_col).to_pylist() if text_col else [None] * len(labels)
        golds = inputs.column(gold_col).to_pylist() if gold_col else [None] * len(labels)
        for i, (text, gold, res) in enumerate(zip(texts, golds, labels.to_dicts())):
            gold_name = self._gold(gold, self.seen + i)
            if gold_name is not None:
                self.gold += 1
                self.correct += res["label"] == gold_name
            if len(self.rows) < SHOWN_ROWS:
                probs = res["probabilities"] or {}
                row = {
                    "text": text,
                    "label": res["label"],
                    "valid": res["valid"],
                    "raw": res["raw"],
                    "confidence": round(max(probs.values()), 4) if probs else None,
                    "gold": gold_name or "",
                    "correct": (res["label"] == gold_name) if gold_name else "",
                }
                row.update({PROB_PREFIX + n: round(probs[n], 4) if probs else None for n in labels.names})
                self.rows.append(row)  # fmt: skip
        self.seen += len(labels)

    def _gold(self, value: Any, row: int) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            return self.labels.name_of(value)
        except LabelSetError as exc:
            raise UserError(f"{self.name}, row {row + 1}: {exc}") from exc


def _label_file(
    clf: Classifier, path: Path, out: Path, options: PredictOptions, progress=None
) -> tuple[PredictSummary, FileView]:
    """The GPU work of one file (it returns what the page needs: on ZeroGPU it runs in another process)."""
    view = FileView(path.name, clf.labels)
    return predict_file(clf, path, out, options, progress=progress, on_chunk=view), view


def classify_file(
    state: AppState, path: str | None, mode: str = "score", finetuned: bool = True, progress=None
) -> tuple[PredictSummary, FileView, str]:
    """An uploaded file labelled through `predict_file` into a fresh temporary folder: the summary, what to
    show, and the path of the predictions file (CSV: every column of the upload, then the labels)."""
    check_mode(mode)
    file = check_upload(path, state.settings)
    out = Path(tempfile.mkdtemp(prefix="gemma-emotion-")) / "predictions.csv"
    options = PredictOptions(mode=mode, adapter=finetuned, max_rows=state.settings.file_row_limit())
    summary, view = state.with_classifier("evaluate", _label_file, file, out, options, progress=progress)
    return summary, view, str(out)


def file_message(summary: PredictSummary, view: FileView) -> str:
    counts = ", ".join(f"{name} {n}" for name, n in summary.label_counts.items() if n)
    parts = [
        f"{summary.rows} texts classified in {summary.seconds:.1f} s ({summary.texts_per_s:.0f} texts/s)"
    ]
    if counts:
        parts.append(f"labels: {counts}")
    if view.gold:
        parts.append(f"accuracy against the file's labels {view.correct / view.gold:.1%} ({view.gold} rows)")
    if summary.invalid:
        parts.append(f"invalid answers: {summary.invalid}")
    if summary.empty:
        parts.append(f"rows without text (no label): {summary.empty}")
    if summary.cut:
        parts.append(f"long texts cut to the model's limit: {summary.cut}")
    if summary.limited:
        parts.append(f"only the first {summary.rows} rows were labelled (the limit here)")
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
            "Upload a CSV, TSV, JSONL or Parquet file with a `text` column (a `label` column is optional: "
            f"the predictions are compared with it). Up to {state.settings.file_row_limit():,} rows are "
            "labelled; the download holds every column of the file, then the label and its probabilities."
        )
        with gr.Row():
            upload = gr.File(label="Texts file", file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet"])
            batch_mode = gr.Radio(list(MODES), value="score", label="Mode")
        batch_button = gr.Button("Classify file")
        batch_message = gr.Textbox(label="Message", interactive=False, elem_id="classify-file-message")
        table = gr.Dataframe(label="Predictions", interactive=False, wrap=True, max_height=420)
        batch_file = gr.File(label="Download predictions", interactive=False)

    def on_classify(text_value: str, mode_value: str, thinking_value: bool):
        try:
            res = classify_text(state, text_value, mode_value, thinking_value)
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
    )
    text.submit(
        on_classify,
        [text, mode, thinking],
        [label, message, chart, raw, valid, latency, last],
        api_visibility="private",
    )

    def on_batch(path: str | None, mode_value: str, progress=gr.Progress()):
        def shown(done: int, total: int | None) -> None:
            if total:
                progress((done, total), desc="classifying", unit="texts")

        try:
            progress(0, desc="classifying")
            summary, view, out = classify_file(state, path, mode_value, progress=shown)
        except Exception as exc:
            return warn(exc), None, None
        return file_message(summary, view), pd.DataFrame(view.rows, columns=file_columns(view.labels)), out

    batch_button.click(
        on_batch, [upload, batch_mode], [batch_message, table, batch_file], api_visibility="private"
    )

    @api_endpoint
    def classify(text: str, mode: str = "score", thinking: bool = False, finetuned: bool = True) -> dict:
        """Classify one text: label, valid, probabilities (score mode), raw, latency_ms, model, adapter."""
        return classify_text(state, text, mode, thinking, finetuned)

    @api_endpoint
    def classify_batch(texts: list[str], mode: str = "score", finetuned: bool = True) -> list[dict]:
        """Classify many texts; one result dict each, in input order."""
        return classify_texts(state, texts, mode, finetuned)

    gr.api(classify, api_name="classify")
    gr.api(classify_batch, api_name="classify_batch")
    return {"wrong": wrong, "last": last}
