"""The Classify tab and the `classify` / `classify_batch` API endpoints.

One text: label, a probability per label of the loaded model's label set (score mode; the bars follow
the set), the raw answer, valid or not, latency. A file of
texts: a table and a downloadable predictions file. The API functions return plain dicts; the tab adds
the plot and the table on top of the same calls.
"""

from __future__ import annotations

import json
import time
from typing import Any

import gradio as gr
import pandas as pd

from gemma_emotion.classify import MODES, Prediction
from gemma_emotion.labels import EMOTIONS, LabelSet
from gemma_emotion.paths import ASSETS
from gemma_emotion.ui import plots
from gemma_emotion.ui.common import api_endpoint, csv_text, download, read_upload, warn
from gemma_emotion.ui.state import AppState, UserError

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
    preds = state.predict([c.text for c in cleaned], mode, adapter=finetuned, progress=progress)
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
        batch_button = gr.Button("Classify file")
        batch_message = gr.Textbox(label="Message", interactive=False)
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
        try:
            label_set = state.labels
            texts, labels = read_upload(path, state.settings, label_set)
            progress(0, desc="classifying")
            results = classify_texts(
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
