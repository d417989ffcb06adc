"""The Classify tab and the `classify` / `classify_batch` API endpoints.

One text: label, a probability per label of the loaded model's label set (score mode; the bars follow
the set), the raw answer, valid or not, latency; answered by the app state's micro-batcher, so the
requests that wait together share one batched pass (the handlers are async: a request waiting for its
pass holds no thread). A file of texts, or `classify_batch`: in chunks, with progress, stopped by the Stop
button or a cancelled request (`common.in_thread`). The API functions return plain dicts; the tab adds
the plot and the table on top of the same calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import gradio as gr
import pandas as pd

from gemma_emotion.batching import CancelToken
from gemma_emotion.classify import MODES, Prediction
from gemma_emotion.labels import EMOTIONS, LabelSet
from gemma_emotion.paths import ASSETS
from gemma_emotion.ui import plots
from gemma_emotion.ui.common import BATCHED, api_endpoint, csv_text, download, in_thread, read_upload, warn
from gemma_emotion.ui.state import AppState, TextInput, UserError

EXAMPLES_FILE = ASSETS / "examples.json"
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
    """Many texts → one dict each, in input order; texts over the size limit are cut (and say so). In
    chunks: `progress(done, total)` after each, and a set `cancel` stops the job (RequestCancelled)."""
    check_mode(mode)
    if not texts:
        raise UserError("no texts to classify")
    check_batch_size(state, len(texts))
    cleaned = [state.clean_text(t) for t in texts]
    preds = state.predict_many(
        [c.text for c in cleaned], mode, adapter=finetuned, progress=progress, cancel=cancel
    )
    out = []
    for c, pred in zip(cleaned, preds):
        row = prediction_dict(pred, state)
        row["note"] = c.note
        out.append(row)
    return out


def batch_columns(labels: LabelSet = EMOTIONS) -> list[str]:
    """The columns of a classified file: one probability column per label of the set."""
    return ["text", "label", "valid", "raw", *[f"prob_{n}" for n in labels.names], "gold", "correct"]


BATCH_COLUMNS = batch_columns()  # the six emotions'


def batch_rows(results: list[dict], golds: list[int], labels: LabelSet = EMOTIONS) -> list[dict]:
    """One row per result; `golds` are label ids of `labels` (-1: none)."""
    rows = []
    for res, gold in zip(results, golds):
        row = {"text": res["text"], "label": res["label"], "valid": res["valid"], "raw": res["raw"]}
        probs = res.get("probabilities")
        for name in labels.names:
            row[f"prob_{name}"] = round(probs[name], 4) if probs and name in probs else None
        row["gold"] = labels.names[gold] if gold >= 0 else ""
        row["correct"] = (res["label"] == labels.names[gold]) if gold >= 0 else ""
        rows.append(row)
    return rows


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
            "Upload a CSV, TSV, JSONL or Parquet file with a `text` column (a `label` column is optional)."
        )
        with gr.Row():
            upload = gr.File(label="Texts file", file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet"])
            batch_mode = gr.Radio(list(MODES), value="score", label="Mode")
        with gr.Row():
            batch_button = gr.Button("Classify file", elem_id="classify-file-button", scale=3)
            batch_stop = gr.Button("Stop", variant="stop", elem_id="classify-file-stop", scale=1)
        batch_message = gr.Textbox(label="Message", interactive=False)
        table = gr.Dataframe(label="Predictions", interactive=False, wrap=True, max_height=420)
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

    async def on_batch(path: str | None, mode_value: str, progress=gr.Progress()):
        try:
            label_set = state.labels
            texts, labels = read_upload(path, state.settings, label_set)
            progress(0, desc="classifying")
            results = await in_thread(
                classify_texts,
                state,
                texts,
                mode_value,
                progress=lambda done, total: progress((done, total), desc="classifying", unit="texts"),
            )
        except Exception as exc:
            return warn(exc), None, None
        rows = batch_rows(results, labels, label_set)
        columns = batch_columns(label_set)
        cut = sum(1 for r in results if r["note"])
        note = f"{len(rows)} texts classified" + (f"; {cut} long texts were cut" if cut else "")
        return (
            note,
            pd.DataFrame(rows, columns=columns),
            download("predictions.csv", csv_text(rows, columns)),
        )

    batch_event = batch_button.click(
        on_batch, [upload, batch_mode], [batch_message, table, batch_file], api_visibility="private"
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
