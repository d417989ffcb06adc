"""The Label tab: review a queue of examples, fix their labels, export the corrections; the label API.

A queue comes from an evaluation report (its mistakes and invalid answers), from texts without labels
(scored by the loaded model, least confident first; the scored texts are offered as a download, in input
order and the upload's format, written by `predict`'s writer), or from the "wrong?" buttons of the Classify
and Compare tabs. Each visitor has their own queue (`review.ReviewQueue` in a gr.State: the queue, its filters
and mark/skip/undo live in the core); the corrections they make go to the one shared `CorrectionStore`,
made under the loaded model's label set: the label buttons are that set's (a fixed row of MAX_LABELS
buttons, relabelled and shown or hidden when another adapter loads), keys 1-9 pick the first nine, S skips,
U undoes (see KEYBOARD_JS).

API endpoints: `label_queue`, `label_submit`, `label_undo`, `corrections_list` (gr.api, JSON in and out),
`corrections_export` (a file, through the tab's own export button) and `label_load_texts` (the tab's "Score
and load": a file or lines in, the first item shown and the scored file out).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import pyarrow as pa

from gemma_emotion import annotators, review
from gemma_emotion import corrections as core
from gemma_emotion.batching import CancelToken
from gemma_emotion.evaluate import load_report
from gemma_emotion.labels import INVALID, MAX_LABELS
from gemma_emotion.predict import Labels, output_table
from gemma_emotion.review import ALL, SOURCES, QueueFilter, ReviewQueue
from gemma_emotion.tables import encode_table
from gemma_emotion.ui import plots
from gemma_emotion.ui.classify import (
    chosen_columns,
    classify_texts,
    column_field,
    labelled_name,
    text_column_field,
)
from gemma_emotion.ui.common import api_endpoint, download, in_thread, md, read_upload, warn
from gemma_emotion.ui.evaluate import list_reports
from gemma_emotion.ui.state import AppState, UserError

WHO_COLUMNS = ["annotator", "texts"]
PAIR_COLUMNS = ["annotators", "texts in common", "same label", "Cohen's kappa"]
# Label, skip, undo and filter run at the speed of keys: no progress overlay, and never queued behind the
# model work that holds the app's one concurrency slot (they touch only the queue and the database).
INSTANT = dict(api_visibility="private", concurrency_limit=None, show_progress="hidden")
MAX_TEXT_CHARS = 100_000  # a correction keeps its text whole (no cut), but a request stays bounded
EXPORT_NAMES = {
    "emotion-jsonl": "corrections.jsonl",
    "chat-jsonl": "corrections-chat.jsonl",
    "csv": "corrections.csv",
}
SKIP, UNDO = "s", "u"
HOTKEYS = 9  # keys 1-9 pick the first nine labels; a larger set's other labels are buttons only
HELP = (
    "Review examples and give each its right label: click a label or press **1-9** (the first nine "
    "labels of the loaded model's set), **S** skips, "
    "**U** undoes the last action. Load a queue on the left: the mistakes of an evaluation, or texts "
    "without labels (the model scores them, least confident first); **wrong?** in Classify and Compare "
    "adds the text shown there. Corrections are saved at once and can be exported or added to training."
)

# Keys 1-9 click the n-th label button (the buttons follow the loaded label set, so the keys are by
# position), S skip, U undo, only while the Label tab is shown and no text field has the focus. Clicking
# the buttons (rather than calling the server) keeps one code path for both.
KEYBOARD_JS = """
() => {
  const keys = {%KEYS%};
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) {
      return;
    }
    const key = (event.key || "").toLowerCase();
    const nth = /^[1-9]$/.test(key) ? Number(key) : 0;
    const button = nth && nth <= %HOTKEYS%
      ? document.querySelectorAll("#label-buttons button")[nth - 1]
      : keys[key] && document.getElementById(keys[key]);
    if (!button || button.offsetParent === null || button.disabled) return;
    event.preventDefault();
    button.click();
  });
}
"""


def button_id(name: str) -> str:
    """The element id of a label's button: `label-btn-<name>`, the name lower-cased with anything but
    letters and digits as dashes (label names are free text; an id is not)."""
    return "label-btn-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "label")


def button_ids(names: list[str]) -> list[str]:
    """Each label's button id, made unique by position where two names read the same ("a b", "a-b")."""
    ids: list[str] = []
    for i, name in enumerate(names):
        candidate = button_id(name)
        ids.append(candidate if candidate not in ids else f"{candidate}-{i + 1}")
    return ids


def keyboard_js() -> str:
    """The page script that maps keys to the Label tab's buttons (pass as launch(js=...))."""
    keys = {SKIP: "label-skip", UNDO: "label-undo"}
    body = ", ".join(f'"{k}": "{v}"' for k, v in keys.items())
    return KEYBOARD_JS.replace("%KEYS%", body).replace("%HOTKEYS%", str(HOTKEYS))


def button_caption(index: int, name: str) -> str:
    """What the button of the label at `index` (0-based) says: its hotkey (none past the ninth), its name."""
    return f"{index + 1} · {name}" if index < HOTKEYS else name


def slot_id(index: int) -> str:
    """The element id of the button slot at `index` while no label of the set shows on it."""
    return f"label-slot-{index + 1}"


# -- queue items ---------------------------------------------------------------------------------------
def resolve_report(state: AppState, folder: str) -> Path:
    """A listed report folder (an evaluation's or a run's). A folder holding base/ and finetuned/ reports
    means its fine-tuned one (else its base one). Nothing outside the listed reports is ever read."""
    folder = (folder or "").strip()
    if not folder:
        raise UserError("pick an evaluation report first")
    listed = {os.path.normpath(path) for _, path in list_reports(state)}
    wanted = os.path.normpath(folder)
    if wanted in listed:
        return Path(wanted)
    for variant in ("finetuned", "base"):
        candidate = os.path.join(wanted, variant)
        if candidate in listed:
            return Path(candidate)
    raise UserError(f"not a stored report: {folder} (pick one from the list, or evaluate first)")


def _report_ref(state: AppState, folder: Path) -> str:
    """The report as named in a correction's source_ref: relative to the storage folder, no server path."""
    try:
        return folder.resolve().relative_to(state.storage.resolve()).as_posix()
    except ValueError:
        return "/".join(folder.parts[-3:])


def queue_from_report(state: AppState, folder: str, only_mistakes: bool = True) -> list[dict[str, Any]]:
    """The review items of a stored report: its mistakes and invalid answers (or every row)."""
    path = resolve_report(state, folder)
    try:
        report = load_report(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the report {path.name}: {exc}") from exc
    if not report.predictions:
        raise UserError(f"the report {_report_ref(state, path)} has no predictions.csv")
    return review.report_items(report, _report_ref(state, path), state.corrections, only_mistakes)


def score_texts(
    state: AppState,
    texts: list[str],
    golds: list[int] | None = None,
    progress=None,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Texts scored by the loaded model (fine-tuned if an adapter is loaded), in input order: the Classify
    tab's result dicts (`classify_texts`: predict's path, in chunks, at most the settings' batch limit),
    each with `gold`, the name of its label in `golds` (ids of the loaded model's set) or None. Blank texts
    are left out (with their labels); `progress(done, total)` after each chunk, `cancel` stops the job."""
    golds = list(golds or [])
    kept = [(t, golds[i] if i < len(golds) else -1) for i, t in enumerate(texts or [])
            if isinstance(t, str) and t.strip()]  # fmt: skip
    if not kept:
        raise UserError("no texts: upload a file with a 'text' column or type one text per line")
    names = state.labels.names
    results = classify_texts(state, [t for t, _ in kept], "score", progress=progress, cancel=cancel)
    for res, (_, gold) in zip(results, kept):
        res["gold"] = names[gold] if 0 <= gold < len(names) else None
    return results


def queue_items(
    state: AppState, scored: list[dict[str, Any]], source_ref: str = "texts"
) -> list[dict[str, Any]]:
    """The review items of `score_texts`' results, least confident first."""
    rows = [
        {"text": res["text"], "gold": res["gold"], "predicted": res["label"], "valid": res["valid"],
         "raw": res["raw"], "probabilities": res["probabilities"] or {}}
        for res in scored
    ]  # fmt: skip
    lm = state.model
    model, adapter = (lm.spec.name, lm.adapter) if lm is not None else (None, None)
    return review.scored_items(rows, source_ref, state.corrections, model, adapter, state.labels)


def load_texts(
    state: AppState,
    texts: list[str],
    golds: list[int] | None = None,
    source_ref: str = "texts",
    upload: str | None = None,
    progress=None,
    cancel: CancelToken | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """The Label tab's "Score and load": the texts scored (`score_texts`), as the queue's items (least
    confident first) and as the download of every scored text (`scored_download`)."""
    scored = score_texts(state, texts, golds, progress, cancel)
    return queue_items(state, scored, source_ref), scored_download(state, scored, upload)


def queue_from_texts(
    state: AppState,
    texts: list[str],
    golds: list[int] | None = None,
    source_ref: str = "texts",
    progress=None,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Texts scored by the loaded model (`score_texts`), as review items, least confident first."""
    return queue_items(state, score_texts(state, texts, golds, progress, cancel), source_ref)


def scored_download(state: AppState, scored: list[dict[str, Any]], upload: str | None = None) -> str:
    """`score_texts`' results as a file to download, in input order, written as `predict` writes its output
    (`predict.output_table`, `tables.encode_table`): text, gold (when any text has a label), then label,
    confidence and p_<label> for each label of the set. In the upload's format (a JSON array as JSON Lines,
    typed texts alone as CSV), named like the Classify tab's labelled file."""
    inputs = {"text": [res["text"] for res in scored]}
    if any(res.get("gold") is not None for res in scored):
        inputs["gold"] = [res.get("gold") for res in scored]
    # The label set the texts were scored with (their probabilities' keys, in the set's order), which an
    # adapter loaded meanwhile cannot change.
    names = next(
        (list(res["probabilities"]) for res in scored if res.get("probabilities")), state.labels.names
    )
    labels = Labels.from_dicts(scored, names, "score")
    name = labelled_name(Path(upload) if upload else Path("texts.csv"))
    return download(name, encode_table(output_table(pa.table(inputs), labels), name.rsplit(".", 1)[-1]))


# -- corrections ---------------------------------------------------------------------------------------
def correction_dict(c: core.Correction | None) -> dict[str, Any] | None:
    return None if c is None else dataclasses.asdict(c)


def event_dict(e: core.HistoryEvent | None) -> dict[str, Any] | None:
    return None if e is None else dataclasses.asdict(e)


def _opt(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def submit_correction(
    state: AppState,
    text: str,
    label: str | int,
    *,
    annotator: str | None = None,
    predicted: str | None = None,
    gold: str | None = None,
    source: str | None = None,
    source_ref: str | None = None,
    model: str | None = None,
    adapter: str | None = None,
    probabilities: dict[str, float] | None = None,
) -> core.Correction:
    """Store the right label of a text, made under the loaded model's label set; UserError for an
    empty/huge text or a label outside that set. A gold label or probabilities of another set (an item
    from a report made with other labels) are not kept: they would not mean the same labels."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("empty text: there is nothing to label")
    if len(text) > MAX_TEXT_CHARS:
        raise UserError(f"the text has {len(text)} characters; corrections take at most {MAX_TEXT_CHARS}")
    labels = state.labels
    if isinstance(label, str) and label.strip() and label not in labels and not label.strip().isdigit():
        raise UserError(
            f"unknown label {label!r}: the loaded model's labels are {', '.join(labels.names)} "
            "(load the adapter whose labels you mean)"
        )
    if _opt(gold) is not None and gold not in labels and not str(gold).strip().isdigit():
        gold = None
    if probabilities and not all(name in labels for name in probabilities):
        probabilities = None
    try:
        return state.corrections.add(
            text,
            label,
            labels=labels,
            predicted=_opt(predicted),
            gold=_opt(gold),
            source=_opt(source),
            source_ref=_opt(source_ref),
            model=_opt(model),
            adapter=_opt(adapter),
            annotator=_opt(annotator),
            probabilities=probabilities or None,
        )
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from exc


def submit_item(state: AppState, item: dict[str, Any], label: str, annotator: str | None) -> core.Correction:
    return submit_correction(
        state,
        item["text"],
        label,
        annotator=annotator,
        predicted=item.get("predicted"),
        gold=item.get("gold"),
        source=item.get("source"),
        source_ref=item.get("source_ref"),
        model=item.get("model"),
        adapter=item.get("adapter"),
        probabilities=item.get("probabilities"),
    )


def undo_last(state: AppState, annotator: str | None = None) -> core.Undone | None:
    """Revert the latest correction (of `annotator`, if named); None when there is nothing to undo."""
    return state.corrections.undo_last(_opt(annotator))


def resolve_annotator(typed: str | None, profile: Any = None) -> str | None:
    """Who a correction is recorded under: the signed-in Hugging Face user on a Space with sign-in (a typed
    name is ignored there; UserError when nobody is signed in), else the typed name (see annotators)."""
    try:
        return annotators.annotator_for(profile, typed, oauth=annotators.oauth_enabled())
    except annotators.AnnotatorError as exc:
        raise UserError(str(exc)) from exc


def annotator_tables(state: AppState) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(texts per annotator, agreement of each pair who labelled the same texts) for the tab."""
    found = annotators.summary(state.corrections)
    counts = pd.DataFrame(list(found["counts"].items()), columns=WHO_COLUMNS)
    pairs = pd.DataFrame(
        [[f"{p['a']} / {p['b']}", p["n"], p["agreed"], p["kappa"]] for p in found["pairs"]],
        columns=PAIR_COLUMNS,
    )
    return counts, pairs


def export_file(state: AppState, fmt: str) -> str:
    """The corrections in `fmt`, written to a fresh temporary file for download (never the store itself)."""
    if fmt not in core.FORMATS:
        raise UserError(f"format must be one of {', '.join(core.FORMATS)}, got {fmt!r}")
    try:
        return download(EXPORT_NAMES[fmt], core.render(state.corrections, fmt))
    except core.CorrectionsError as exc:  # corrections of several label sets in one emotion-jsonl file
        raise UserError(str(exc)) from exc


def push_corrections(state: AppState, repo_id: str, private: bool = True) -> str:
    """Push the corrections to a Hub dataset (typed labels, card) with HF_TOKEN from the environment; the
    commit URL."""
    if state.settings.demo_mode:
        raise UserError("pushing to the Hub is switched off in this demo")
    from gemma_emotion import hub

    return hub.push_corrections(state.corrections, (repo_id or "").strip(), private=private)


# -- the tab -------------------------------------------------------------------------------------------
def _filter(
    gold: str | None, predicted: str | None, max_conf: float | None, source: str | None
) -> QueueFilter:
    return QueueFilter(gold, predicted, 1.0 if max_conf is None else float(max_conf), source)


def _check_filter(flt: QueueFilter, names: list[str], items: list[dict[str, Any]]) -> None:
    """UserError for a filter value that no item could match (a misspelt label would show an empty queue
    as if nothing were left to review). A report's items may carry labels of another set: theirs count."""
    known = {None, "", ALL, INVALID, *names}
    known |= {it.get("gold") for it in items} | {it.get("predicted") for it in items}
    for what, value in (("gold", flt.gold), ("predicted", flt.predicted)):
        if value not in known:
            raise UserError(f"unknown {what} label {value!r}: use {ALL} or one of {', '.join(names)}")
    if flt.source not in (None, "", ALL, *SOURCES):
        raise UserError(f"unknown source {flt.source!r}: use {ALL} or one of {', '.join(SOURCES)}")
    if flt.max_confidence is not None and not 0 <= flt.max_confidence <= 1:
        raise UserError(f"max_confidence must be between 0 and 1, got {flt.max_confidence}")


def progress_line(queue: ReviewQueue, flt: QueueFilter, total_corrections: int) -> str:
    saved = f"{total_corrections} correction{'' if total_corrections == 1 else 's'} saved"
    if not queue.items:
        return f"**No queue yet.** {saved} so far."
    reviewed, shown = queue.progress(flt)
    hidden = len(queue.items) - shown
    line = f"**{reviewed} of {shown} reviewed**"
    if hidden:
        line += f" ({hidden} more hidden by the filters)"
    if shown and reviewed == shown:
        line += " · all done ✔"
    return line + f" · {saved}"


def item_markdown(item: dict[str, Any] | None, queue: ReviewQueue) -> str:
    if item is None:
        return "Nothing to review here: load a queue, change the filters, or undo." if queue.items else ""
    parts = []
    if item.get("gold"):
        parts.append(f"gold **{md(item['gold'])}**")
    pred = md(item["predicted"])
    conf = item.get("confidence")
    parts.append(f"predicted **{pred}**" + (f" ({conf:.0%})" if isinstance(conf, (int, float)) else ""))
    if not item.get("valid", True) and item.get("raw") is not None:
        parts.append(f"raw answer `{md(item['raw'][:200])}`")
    ref = item.get("source_ref")
    parts.append(f"from {md(item['source'])}" + (f" `{md(ref)}`" if ref else ""))
    if item.get("corrected"):
        parts.append(f"already corrected as **{md(item['corrected'])}**")
    return " · ".join(parts)


def build(state: AppState) -> dict[str, Any]:
    """The Label tab (call inside a gr.Tab); returns the parts the layout wires to other tabs."""
    demo = state.settings.demo_mode
    queue = gr.State(ReviewQueue())
    # The loaded model's label names: the buttons and filters follow them (the layout sets this on page load
    # and whenever a model or adapter finishes loading).
    names = gr.State([])
    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            with gr.Group():
                gr.Markdown("**Mistakes of an evaluation**")
                report = gr.Dropdown(
                    label="Report",
                    choices=[],
                    elem_id="label-report",
                    info="from the Evaluate tab and from training runs",
                )
                only_mistakes = gr.Checkbox(value=True, label="Only mistakes and invalid answers")
                with gr.Row():
                    load_report_btn = gr.Button("Load report", variant="primary", elem_id="label-load-report")
                    refresh = gr.Button("Refresh", size="sm")
            with gr.Group():
                gr.Markdown("**Texts without labels** (scored by the loaded model)")
                upload = gr.File(
                    label="Texts file (CSV, TSV, JSONL, JSON, Parquet)",
                    file_types=[".csv", ".tsv", ".jsonl", ".json", ".parquet"],
                    height=120,
                    elem_id="label-upload",
                )
                text_col = text_column_field("label-upload-column")
                pasted = gr.Textbox(label="…or one text per line", lines=3, elem_id="label-texts")
                load_texts_btn = gr.Button("Score and load", elem_id="label-load-texts")
                scored_file = gr.File(
                    label="Download the scored texts", interactive=False, elem_id="label-scored-file"
                )
            with gr.Accordion("Filters", open=False):
                gold_f = gr.Dropdown([ALL, *state.labels.names], value=ALL, label="Gold label")
                pred_f = gr.Dropdown([ALL, *state.labels.names, INVALID], value=ALL, label="Predicted label")
                conf_f = gr.Slider(0, 1, value=1, step=0.05, label="Max confidence (1 = all)")
                source_f = gr.Dropdown([ALL, *SOURCES], value=ALL, label="Source")
            oauth = annotators.oauth_enabled()
            if oauth:  # a Space with sign-in: the signed-in user is the annotator, nobody types a name
                gr.LoginButton(elem_id="label-login")
            annotator = gr.Textbox(
                label="Your name (optional)",
                max_lines=1,
                elem_id="label-annotator",
                info="saved with each correction; undo then reverts only yours",
                visible=not oauth,
            )
        with gr.Column(scale=2):
            # Filled on every page load (`page_load`), not once when the page was built: the count changes.
            progress = gr.Markdown(label="Progress", elem_id="label-progress")
            text = gr.Textbox(label="Text", lines=3, max_lines=12, interactive=False, elem_id="label-text")
            info = gr.Markdown(label="Item", elem_id="label-info")
            # One button per possible label, wired once; a label set shows its first len(set) of them.
            # Not a gr.render of the names: each render registers new handlers and drops the last one's, and
            # a hotkey pressed while the page still showed the older buttons reached no handler (lost in CI
            # three times, once after the renders were cut to one per page load).
            with gr.Row(elem_id="label-buttons"):
                label_btns = [
                    gr.Button(visible=False, min_width=90, elem_id=slot_id(i)) for i in range(MAX_LABELS)
                ]

            with gr.Row():
                skip = gr.Button("Skip (S)", size="sm", elem_id="label-skip")
                undo = gr.Button("Undo (U)", size="sm", elem_id="label-undo")
            message = gr.Textbox(label="Message", interactive=False, elem_id="label-message")
            chart = gr.Plot(
                label="Model probabilities", show_label=False, value=plots.empty("Model probabilities")
            )

    with gr.Accordion("Export and share the corrections", open=False):
        with gr.Row():
            fmt = gr.Radio(
                list(core.FORMATS),
                value="emotion-jsonl",
                label="Format",
                info="emotion-jsonl: {text, label id}; chat-jsonl: prompt/completion; csv: everything",
            )
            export_btn = gr.Button("Export", elem_id="label-export")
            export_out = gr.File(label="Download", interactive=False, elem_id="label-export-file")
        with gr.Row():
            repo = gr.Textbox(
                label="Hub dataset repo (owner/name)",
                interactive=not demo,
                max_lines=1,
                info="switched off in this demo" if demo else "uses HF_TOKEN from the server's environment",
            )
            private = gr.Checkbox(value=True, label="Private", interactive=not demo)
            push_btn = gr.Button("Push to Hub", interactive=not demo)
        push_msg = gr.Textbox(label="Hub", interactive=False)

    with gr.Accordion("Annotators and agreement", open=False):
        gr.Markdown("Texts each annotator labelled, and Cohen's kappa where two labelled the same texts.")
        with gr.Row():
            # Filled on every page load (`page_load`) and by Refresh.
            who_table = gr.Dataframe(
                value=pd.DataFrame(columns=WHO_COLUMNS), label="Annotators", interactive=False,
                elem_id="label-annotators",
            )  # fmt: skip
            pair_table = gr.Dataframe(
                value=pd.DataFrame(columns=PAIR_COLUMNS), label="Agreement", interactive=False,
                elem_id="label-agreement",
            )  # fmt: skip
        who_refresh = gr.Button("Refresh", size="sm")
    who_refresh.click(
        lambda: annotator_tables(state), None, [who_table, pair_table], api_visibility="private",
        concurrency_limit=None,
    )  # fmt: skip

    filters = [gold_f, pred_f, conf_f, source_f]
    shown = [queue, progress, text, info, chart]

    def view(q: ReviewQueue, flt: QueueFilter):
        item = q.current
        probs = (item or {}).get("probabilities") or {}
        chart_v = (
            plots.probabilities({"model": probs}, "Model probabilities")
            if probs
            else plots.empty("Model probabilities", "no probabilities for this item" if item else "")
        )
        return (
            q,
            progress_line(q, flt, state.corrections.count()),
            (item or {}).get("text", ""),
            item_markdown(item, q),
            chart_v,
        )

    def on_load_report(q: ReviewQueue, folder, only, *flt_v):
        try:
            items = queue_from_report(state, folder, bool(only))
        except Exception as exc:
            return (*view(q, _filter(*flt_v)), warn(exc))
        flt = _filter(*flt_v)
        q.load(items, flt)
        return (*view(q, flt), f"loaded {len(items)} examples from {_report_label(state, folder)}")

    load_report_btn.click(
        on_load_report, [queue, report, only_mistakes, *filters], [*shown, message], api_visibility="private"
    )

    # The filters by name, not *args: gradio finds a gr.Progress only among the positional parameters.
    async def on_load_texts(
        q: ReviewQueue, path, lines, gold_v, pred_v, conf_v, source_v, column=None, bar=gr.Progress()
    ):
        flt_v = (gold_v, pred_v, conf_v, source_v)

        def shown(done: int, total: int) -> None:
            bar((done, total), desc="scoring", unit="texts")

        try:
            texts, golds, ref, note = [], [], "texts", ""
            if path:
                # Gold labels read as the loaded model's labels: the queue names them by that set.
                text_column, gold_column = chosen_columns(state, path, column)
                texts, golds, note = read_upload(path, state.settings, state.labels, text_column, gold_column)
                ref = Path(path).name
            typed = [t for t in (lines or "").splitlines() if t.strip()]
            texts, golds = texts + typed, golds + [-1] * len(typed)
            items, out = await in_thread(load_texts, state, texts, golds, ref, path, progress=shown)
        except Exception as exc:
            return (*view(q, _filter(*flt_v)), warn(exc), None)
        flt = _filter(*flt_v)
        q.load(items, flt)
        return (
            *view(q, flt),
            f"loaded {len(items)} texts, least confident first; the download holds them all"
            + (f" ({note})" if note else ""),
            out,
        )

    # Public as `label_load_texts`: an API client uploads a file (gradio_client's handle_file) or sends lines
    # (and may name the file's text column, last) and gets what the page shows of the queue's first item,
    # the message and the scored file.
    load_texts_btn.click(
        on_load_texts, [queue, upload, pasted, *filters, text_col], [*shown, message, scored_file],
        api_name="label_load_texts",
    )  # fmt: skip
    upload.change(
        lambda path: column_field(state, path), [upload], [text_col, message],
        api_visibility="private", concurrency_limit=None,
    )  # fmt: skip

    def on_label(index: int):
        # The buttons are slots: the label is the set's name at this position, and the button's own text comes
        # with the click so that a set replaced while the click travelled never saves another label.
        def handler(
            caption: str,
            q: ReviewQueue,
            current: list[str],
            who: str,
            profile: gr.OAuthProfile | None,
            *flt_v,
        ):
            flt = _filter(*flt_v)
            if index >= len(current) or caption != button_caption(index, current[index]):
                changed = UserError("the label set has just changed: look and click again")
                return (*view(q, flt), warn(changed))
            name = current[index]
            item = q.current
            if item is None:
                gr.Warning("nothing to label: load a queue first")
                return (*view(q, flt), "nothing to label")
            try:
                who = resolve_annotator(who, profile)
                submit_item(state, item, name, who)
            except Exception as exc:
                return (*view(q, flt), warn(exc))
            q.mark(name, who, flt)
            return (*view(q, flt), f"saved: {name}")

        return handler

    for i, btn in enumerate(label_btns):
        btn.click(on_label(i), [btn, queue, names, annotator, *filters], [*shown, message], **INSTANT)

    def on_names(current: list[str]):
        ids = button_ids(current)
        buttons = [
            gr.Button(button_caption(i, current[i]), visible=True, elem_id=ids[i])
            if i < len(current)
            else gr.Button(visible=False, elem_id=slot_id(i))
            for i in range(MAX_LABELS)
        ]
        return (
            gr.Dropdown(choices=[ALL, *current], value=ALL),
            gr.Dropdown(choices=[ALL, *current, INVALID], value=ALL),
            *buttons,
        )

    names.change(on_names, [names], [gold_f, pred_f, *label_btns], **INSTANT)

    def on_skip(q: ReviewQueue, *flt_v):
        flt = _filter(*flt_v)
        if q.current is None:
            return (*view(q, flt), "nothing to skip")
        q.skip(flt)
        return (*view(q, flt), "skipped")

    skip.click(
        on_skip,
        [queue, *filters],
        [*shown, message],
        **INSTANT,
    )

    def on_undo(q: ReviewQueue, who: str, profile: gr.OAuthProfile | None, *flt_v):
        flt = _filter(*flt_v)
        if q.undo_skip():
            return (*view(q, flt), "skip undone")
        try:
            # As it was labelled, even if the name field changed since; signed in: only that user's.
            undone = undo_last(state, resolve_annotator(q.undo_annotator(who), profile))
        except Exception as exc:
            return (*view(q, flt), warn(exc))
        if undone is None:
            return (*view(q, flt), "nothing to undo")
        q.reverted(undone)
        reverted = undone.event.text
        label_now = undone.current.label if undone.current else None
        short = reverted if len(reverted) <= 60 else reverted[:57] + "…"
        note = f"undid {undone.event.label or 'the removal'} for “{short}”"
        return (*view(q, flt), note + (f" (now {label_now})" if label_now else ""))

    undo.click(
        on_undo,
        [queue, annotator, *filters],
        [*shown, message],
        **INSTANT,
    )

    def on_filter(q: ReviewQueue, *flt_v):
        flt = _filter(*flt_v)
        q.settle(flt)
        return view(q, flt)

    for control in filters:
        control.input(
            on_filter,
            [queue, *filters],
            shown,
            **INSTANT,
        )

    def corrections_export(format: str) -> str:  # noqa: A002 - the API parameter's public name
        try:
            return export_file(state, format)
        except Exception as exc:
            raise gr.Error(str(exc) if isinstance(exc, UserError) else f"export failed: {exc}") from exc

    export_btn.click(
        corrections_export, [fmt], [export_out], api_name="corrections_export", concurrency_limit=None
    )

    def on_push(repo_v: str, private_v: bool):
        try:
            url = push_corrections(state, repo_v, bool(private_v))
        except Exception as exc:
            return warn(exc)
        return f"pushed {state.corrections.count()} corrections: {url}"

    push_btn.click(on_push, [repo, private], [push_msg], api_visibility="private")

    def refresh_reports(current: str | None = None):
        choices = list_reports(state)
        values = [v for _, v in choices]
        return gr.Dropdown(
            choices=choices, value=current if current in values else (values[0] if values else None)
        )

    refresh.click(refresh_reports, [report], [report], api_visibility="private", concurrency_limit=None)

    # -- API ------------------------------------------------------------------------------------------
    @api_endpoint
    async def label_queue(
        report: str = "",
        texts: list[str] | None = None,
        only_mistakes: bool = True,
        gold: str = ALL,
        predicted: str = ALL,
        max_confidence: float = 1.0,
        source: str = ALL,
    ) -> dict:
        """A review queue: a stored report's mistakes (report = its folder) or texts scored by the model,
        least confident first; filtered by gold, predicted, max_confidence and source."""
        if report and texts:
            raise UserError("give a report or texts, not both")
        if report:
            items = await asyncio.to_thread(queue_from_report, state, report, only_mistakes)
        else:  # model work in chunks: a cancelled request stops at the next one
            items = await in_thread(queue_from_texts, state, texts)
        flt = QueueFilter(gold, predicted, max_confidence, source)
        _check_filter(flt, state.labels.names, items)
        kept = [items[i] for i in flt.indices(items)]
        return {"items": kept, "total": len(items), "shown": len(kept)}

    @api_endpoint
    def label_submit(
        text: str,
        label: str,
        annotator: str = "",
        predicted: str = "",
        gold: str = "",
        source: str = "",
        source_ref: str = "",
        model: str = "",
        adapter: str = "",
        probabilities: dict | None = None,
        profile: gr.OAuthProfile | None = None,
    ) -> dict:
        """Save the right label of a text (a label of the loaded model's set); returns {correction, total}.
        On a Space with sign-in the annotator is the signed-in user, whatever `annotator` says."""
        c = submit_correction(
            state,
            text,
            label,
            annotator=resolve_annotator(annotator, profile),
            predicted=predicted,
            gold=gold,
            source=source,
            source_ref=source_ref,
            model=model,
            adapter=adapter,
            probabilities=probabilities,
        )
        return {"correction": correction_dict(c), "total": state.corrections.count()}

    @api_endpoint
    def label_undo(annotator: str = "", profile: gr.OAuthProfile | None = None) -> dict:
        """Undo the latest correction (of `annotator`, if given; of the signed-in user on a Space with
        sign-in): {undone, current, total}."""
        done = undo_last(state, resolve_annotator(annotator, profile))
        return {
            "undone": event_dict(done.event) if done else None,
            "current": correction_dict(done.current) if done else None,
            "total": state.corrections.count(),
        }

    @api_endpoint
    def corrections_list() -> dict:
        """Every current correction, oldest first, and the count per label."""
        store = state.corrections
        return {
            "corrections": [correction_dict(c) for c in store.current()],
            "counts": store.counts_by_label(state.labels),
        }

    gr.api(label_queue, api_name="label_queue")
    gr.api(label_submit, api_name="label_submit", concurrency_limit=None)
    gr.api(label_undo, api_name="label_undo", concurrency_limit=None)
    gr.api(corrections_list, api_name="corrections_list", concurrency_limit=None)

    @api_endpoint
    def annotators_api() -> dict:
        """Texts per annotator and, for each pair who labelled the same texts, their agreement:
        {counts: {annotator: texts}, pairs: [{a, b, n, agreed, kappa}]} (kappa: Cohen's, scikit-learn)."""
        return annotators.summary(state.corrections)

    gr.api(annotators_api, api_name="annotators", concurrency_limit=None)

    def page_load() -> tuple:
        # In the layout's one private load event: a callable value would be a public API endpoint each.
        who, pairs = annotator_tables(state)
        return progress_line(ReviewQueue(), QueueFilter(), state.corrections.count()), who, pairs

    return {
        "queue": queue,
        "names": names,
        "filters": filters,
        "shown": shown,
        "message": message,
        "view": view,
        "report": report,
        "refresh_reports": refresh_reports,
        "page_load": page_load,
        "page_load_outputs": [progress, who_table, pair_table],
    }


def _report_label(state: AppState, folder: str) -> str:
    try:
        return _report_ref(state, resolve_report(state, folder))
    except UserError:
        return str(folder)


def connect_wrong(
    state: AppState, parts: dict[str, Any], source_tab: dict[str, Any], origin: str, tabs=None
) -> None:
    """Wire a tab's "wrong?" button (`source_tab["wrong"]`): the tab's latest result (`source_tab["last"]`,
    a gr.State holding the prediction dict) joins the visitor's queue as a live item, and the Label tab
    opens on it."""
    outputs = [*parts["shown"], parts["message"], *parts["filters"]]
    if tabs is not None:
        outputs.append(tabs)

    def on_wrong(q: ReviewQueue, result: dict | None):
        if not result or not result.get("text"):
            gr.Warning("classify a text first, then press wrong? to correct it")
            return tuple(gr.skip() for _ in outputs)
        q.add_live(review.live_item(result, origin, state.corrections))
        flt = QueueFilter()
        out = [*parts["view"](q, flt), "added from " + origin + ": pick the right label", ALL, ALL, 1.0, ALL]
        if tabs is not None:
            out.append(gr.Tabs(selected="label"))
        return tuple(out)

    inputs = [parts["queue"], source_tab["last"]]
    source_tab["wrong"].click(on_wrong, inputs, outputs, api_visibility="private", concurrency_limit=None)
