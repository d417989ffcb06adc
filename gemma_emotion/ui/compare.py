"""The Compare tab and the `compare` / `compare_batch` / `compare_reports` API endpoints.

Base and fine-tuned predictions come from ONE loaded model: the adapter is switched off for the base
pass and on for the fine-tuned one, both under the same hold of the model lock, so an adapter switch
can never fall between them. One text goes through the app state's micro-batcher (texts compared at the
same time share their two passes); many texts run in chunks that a cancelled request stops. The
before/after table reads a run's stored reports (score mode, and generate mode where the run wrote those
too); the page opens on the shipped run's, never recomputed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from gemma_emotion.batching import CancelToken
from gemma_emotion.evaluate import METRICS_FILE, compare_reports
from gemma_emotion.labels import EMOTIONS, LabelSet
from gemma_emotion.runs import RunNotFound
from gemma_emotion.ui import plots
from gemma_emotion.ui.classify import MODES, check_batch_size, check_mode, prediction_dict
from gemma_emotion.ui.common import BATCHED, api_endpoint, csv_text, download, in_thread, read_upload, warn
from gemma_emotion.ui.state import SHIPPED, AppState, ComparedText, TextInput, UserError

PAIR_COLUMNS = ["agree", "text", "base", "finetuned", "base_p", "finetuned_p", "gold"]
TABLE_COLUMNS = ["mode", "metric", "base", "fine-tuned", "change"]
TABLE_METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("invalid", "invalid answers"))
DISAGREE_STYLE = "background-color: #fde2e1; font-weight: 600"


def compare_pairs(
    state: AppState, texts: list[str], mode: str = "score", progress=None, cancel: CancelToken | None = None
) -> dict[str, Any]:
    """Base and fine-tuned predictions of the same texts from the one loaded model, in chunks
    (`progress(done, total)` after each; a set `cancel` stops the job with RequestCancelled)."""
    check_mode(mode)
    if not texts:
        raise UserError("no texts to compare")
    check_batch_size(state, len(texts))
    cleaned = state.clean_texts(texts)
    pairs = state.compare_many([c.text for c in cleaned], mode, progress=progress, cancel=cancel)
    return pairs_result(state, cleaned, pairs, mode)


async def compare_text_async(state: AppState, text: str, mode: str = "score") -> dict[str, Any]:
    """One text, base and fine-tuned, answered in a pass shared with the texts compared beside it."""
    check_mode(mode)
    cleaned = state.clean_text(text)
    pair = await asyncio.wrap_future(state.submit_compare(cleaned.text, mode))
    return pairs_result(state, [cleaned], [pair], mode)


def pairs_result(
    state: AppState, cleaned: list[TextInput], pairs: list[ComparedText], mode: str
) -> dict[str, Any]:
    rows = []
    for c, pair in zip(cleaned, pairs):
        b, t = pair.base, pair.finetuned
        b_dict, t_dict = prediction_dict(b, state), prediction_dict(t, state)
        b_dict["adapter"] = None
        t_dict["model"], t_dict["adapter"], b_dict["model"] = pair.model, pair.adapter, pair.model
        rows.append(
            {"text": c.text, "base": b_dict, "finetuned": t_dict, "agree": b.label == t.label, "note": c.note}
        )
    agree = sum(r["agree"] for r in rows)
    return {
        "model": pairs[0].model,
        "adapter": pairs[0].adapter,
        "mode": mode,
        "rows": rows,
        "agree": agree,
        "disagree": len(rows) - agree,
    }


def run_comparison(state: AppState, run: str) -> dict[str, Any]:
    """Before/after numbers of a run (or the shipped run) from its stored base and fine-tuned reports.

    `generate` holds the same comparison for the generate-mode reports, None when the run has none.
    """
    if not run:
        raise UserError("pick a run first")
    try:
        reports = state.run_reports(run)
    except RunNotFound:  # said without the server's runs folder, which its message names
        raise UserError(f"no run named {run!r}: pick one from the list") from None
    if "base" not in reports or "finetuned" not in reports:
        raise UserError(f"run {run} has no base and fine-tuned reports (yet)")
    try:
        out = compare_reports(reports["base"], reports["finetuned"])
    except ValueError as exc:  # reports of two label sets
        raise UserError(f"run {run}: {exc}") from exc
    out["run"] = run
    out["n"] = reports["finetuned"].metrics.get("n")
    out["base_metrics"] = reports["base"].metrics
    out["finetuned_metrics"] = reports["finetuned"].metrics
    out["generate"] = None
    if "base_generate" in reports and "finetuned_generate" in reports:
        out["generate"] = compare_reports(reports["base_generate"], reports["finetuned_generate"])
    return out


def comparison_table(result: dict) -> pd.DataFrame:
    rows = []
    modes = [(result["base_metrics"].get("mode") or "score", result)]
    if result.get("generate"):
        modes.append(("generate", result["generate"]))
    for mode, section in modes:
        for key, title in TABLE_METRICS:
            m = section["metrics"][key]
            fmt = (lambda v: f"{v:.0f}") if key == "invalid" else (lambda v: f"{v:.4f}")
            rows.append(
                {
                    "mode": mode,
                    "metric": title,
                    "base": fmt(m["base"]),
                    "fine-tuned": fmt(m["finetuned"]),
                    "change": ("+" if m["delta"] >= 0 else "") + fmt(m["delta"]),
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def runs_with_reports(state: AppState) -> list[str]:
    """Picker names of the runs with base and fine-tuned reports: the shipped run first, then the runs'."""
    shipped = state.shipped_run()
    runs = ([shipped] if shipped is not None else []) + state.list_runs()
    # Only whether the reports are there: reading them all would load every predictions.csv per refresh.
    return [run.name for run in runs if _has_pair(Path(run.path) / "reports")]


def _has_pair(reports: Path) -> bool:
    return all((reports / variant / METRICS_FILE).is_file() for variant in ("base", "finetuned"))


def pairs_frame(
    result: dict, labels: list[int] | None = None, label_set: LabelSet = EMOTIONS
) -> tuple[pd.DataFrame, Any]:
    """The comparison as a table; `labels` are gold label ids of `label_set` (-1: none)."""
    rows = []
    for i, r in enumerate(result["rows"]):
        b, t = r["base"], r["finetuned"]
        rows.append(
            {
                "agree": "yes" if r["agree"] else "NO",
                "text": r["text"],
                "base": b["label"],
                "finetuned": t["label"],
                "base_p": round(b["probabilities"][b["label"]], 3)
                if b.get("probabilities") and b["valid"]
                else None,
                "finetuned_p": round(t["probabilities"][t["label"]], 3)
                if t.get("probabilities") and t["valid"]
                else None,
                "gold": label_set.names[labels[i]] if labels and labels[i] >= 0 else "",
            }
        )
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    styled = frame.style.apply(
        lambda row: [DISAGREE_STYLE if row["agree"] == "NO" else "" for _ in row], axis=1
    )
    return frame, styled


def build(state: AppState) -> dict[str, Any]:
    """The Compare tab (call inside a gr.Tab); returns components the layout refreshes or wires."""
    last = gr.State(None)  # the latest fine-tuned result shown, for the "wrong?" button
    gr.Markdown(
        "The same text through the **base** model (adapter off) and the **fine-tuned** model (adapter on): "
        "one model in memory, the adapter switched per pass."
    )
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text", lines=3, elem_id="compare-text")
            mode = gr.Radio(list(MODES), value="score", label="Mode")
            with gr.Row():
                button = gr.Button("Compare", variant="primary", elem_id="compare-button", scale=3)
                wrong = gr.Button("wrong? correct it", elem_id="compare-wrong", scale=1)
        with gr.Column(scale=2):
            verdict = gr.Textbox(label="Result", interactive=False, elem_id="compare-result")
            chart = gr.Plot(show_label=False, value=plots.empty("Base vs fine-tuned"))

    with gr.Accordion("Compare a file of texts", open=False):
        with gr.Row():
            upload = gr.File(label="Texts file", file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet"])
            batch_mode = gr.Radio(list(MODES), value="score", label="Mode")
        with gr.Row():
            batch_button = gr.Button("Compare file", elem_id="compare-file-button", scale=3)
            batch_stop = gr.Button("Stop", variant="stop", elem_id="compare-file-stop", scale=1)
        batch_message = gr.Textbox(label="Message", interactive=False)
        table = gr.Dataframe(
            value=pd.DataFrame(columns=PAIR_COLUMNS),
            label="Base vs fine-tuned (disagreements highlighted)",
            interactive=False,
            wrap=True,
            max_height=420,
        )
        batch_file = gr.File(label="Download", interactive=False)

    with gr.Accordion("Before / after a training run (stored reports)", open=True):
        with gr.Row():
            run = gr.Dropdown(label="Run", choices=[], allow_custom_value=False, elem_id="compare-run")
            refresh = gr.Button("Refresh runs", size="sm")
        run_message = gr.Textbox(label="Message", interactive=False)
        run_table = gr.Dataframe(
            value=pd.DataFrame(columns=TABLE_COLUMNS),
            label="Before / after",
            interactive=False,
            elem_id="compare-run-table",
        )
        run_chart = gr.Plot(show_label=False, value=plots.empty("F1 per class"))

    async def on_compare(text_value: str, mode_value: str):
        try:
            res = await compare_text_async(state, text_value, mode_value)
        except Exception as exc:
            return warn(exc), plots.empty("Base vs fine-tuned"), None
        r = res["rows"][0]
        b, t = r["base"]["label"], r["finetuned"]["label"]
        line = f"base: {b}  |  fine-tuned: {t}  —  " + ("they agree" if r["agree"] else "THEY DISAGREE")
        if r["note"]:
            line += f"  ({r['note']})"
        probs = {"base": r["base"]["probabilities"], "fine-tuned": r["finetuned"]["probabilities"]}
        return line, plots.probabilities(probs, "Base vs fine-tuned"), r["finetuned"]

    button.click(on_compare, [text, mode], [verdict, chart, last], api_visibility="private", **BATCHED)
    text.submit(on_compare, [text, mode], [verdict, chart, last], api_visibility="private", **BATCHED)

    async def on_batch(path: str | None, mode_value: str, progress=gr.Progress()):
        try:
            label_set = state.labels
            texts, labels, left_out = read_upload(path, state.settings, label_set)
            res = await in_thread(
                compare_pairs,
                state,
                texts,
                mode_value,
                progress=lambda done, total: progress((done, total), desc="comparing", unit="texts"),
            )
        except Exception as exc:
            return warn(exc), pd.DataFrame(columns=PAIR_COLUMNS), None
        frame, styled = pairs_frame(res, labels, label_set)
        note = f"{len(frame)} texts: {res['agree']} agree, {res['disagree']} disagree"
        if left_out:
            note += f" ({left_out})"
        return note, styled, download("comparison.csv", csv_text(frame.to_dict("records"), PAIR_COLUMNS))

    batch_event = batch_button.click(
        on_batch, [upload, batch_mode], [batch_message, table, batch_file], api_visibility="private"
    )
    batch_stop.click(None, None, None, cancels=[batch_event], api_visibility="private")

    def on_run(name: str | None):
        if not name:
            return "", None, plots.empty("F1 per class")
        try:
            res = run_comparison(state, name)
        except Exception as exc:
            return warn(exc), None, plots.empty("F1 per class")
        changed = res.get("changed_predictions")
        title = name if name.startswith(SHIPPED) else f"run {name}"
        note = f"{title}: {res.get('n')} test texts" + (f", {changed} predictions changed" if changed else "")
        chart = plots.per_class_f1({"base": res["base_metrics"], "fine-tuned": res["finetuned_metrics"]})
        return note, comparison_table(res), chart

    run.change(on_run, [run], [run_message, run_table, run_chart], api_visibility="private")

    def refresh_runs(current: str | None = None):
        names = runs_with_reports(state)
        value = current if current in names else (names[0] if names else None)
        return gr.Dropdown(choices=names, value=value)

    refresh.click(refresh_runs, [run], [run], api_visibility="private", concurrency_limit=None)

    @api_endpoint
    async def compare(text: str, mode: str = "score") -> dict:
        """Base and fine-tuned prediction of one text: {base, finetuned, agree, model, adapter}."""
        res = await compare_text_async(state, text, mode)
        row = res["rows"][0]
        return {**row, "model": res["model"], "adapter": res["adapter"], "mode": mode}

    @api_endpoint
    async def compare_batch(texts: list[str], mode: str = "score") -> dict:
        """Base and fine-tuned predictions of many texts: {rows, agree, disagree, model, adapter}. Runs in
        chunks; a cancelled request stops at the next chunk. At most max_batch_texts texts."""
        return await in_thread(compare_pairs, state, texts, mode)

    @api_endpoint
    def compare_run(run: str) -> dict:
        """Before/after metrics of a training run (or "shipped: <name>") from its stored reports; `generate`
        holds the generate-mode comparison where the run has one."""
        res = run_comparison(state, run)
        return {k: res[k] for k in ("run", "n", "metrics", "per_class_f1", "changed_predictions", "generate")}

    gr.api(compare, api_name="compare", **BATCHED)
    gr.api(compare_batch, api_name="compare_batch")
    gr.api(compare_run, api_name="compare_run")
    return {"run": run, "refresh_runs": refresh_runs, "wrong": wrong, "last": last}
