"""The Evaluate tab and the `evaluate` / `reports` API endpoints.

An evaluation scores the loaded model (base, fine-tuned or both, from the one model) on a data slice and
writes each result as a report folder: `<storage>/reports/<timestamp>/{base,finetuned}/` holding
metrics.json and predictions.csv (the same layout as a run's reports/). The tab shows accuracy and
macro-F1, per-class F1 and invalid counts grouped by model, a confusion matrix, the mistakes filtered by
gold and predicted label, downloads, and earlier reports (the app's own, the runs' and the shipped run's)
side by side. The page opens on the shipped run's base and fine-tuned reports, read from disk.

The data is a Hub id, a server path (outside demo mode) or an uploaded labelled file: an upload is
previewed at once (first rows, counts, what is dropped and why) with its text and label columns guessed
and changeable, and the evaluation uses the columns chosen. Empty texts and duplicates are left out (the
preview says how many); labels the model does not know are refused, by name.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from gemma_emotion import evaluate as core_eval
from gemma_emotion import paths
from gemma_emotion.batching import CancelToken
from gemma_emotion.data import (
    DROP_CLEANUP,
    DataError,
    Preview,
    file_fingerprint,
    fingerprint,
    read_split,
    sample,
)
from gemma_emotion.labels import EMOTIONS, INVALID
from gemma_emotion.ui import plots
from gemma_emotion.ui.classify import MODES, check_mode
from gemma_emotion.ui.common import (
    PREVIEW_COLUMNS,
    UPLOAD_TYPES,
    api_endpoint,
    download,
    in_thread,
    json_text,
    labelled_preview,
    preview_view,
    read_labelled,
    uploaded_path,
    warn,
)
from gemma_emotion.ui.state import SHIPPED, AppState, UserError

WHICH = {"fine-tuned": ("finetuned",), "base": ("base",), "both": ("base", "finetuned")}
SPLITS = ["test", "validation", "train"]
DEFAULT_SIZE = 200
ALL = "all"
MISTAKE_COLUMNS = ["text", "gold", "predicted", "raw"]
SUMMARY_COLUMNS = ["report", "model", "adapter", "mode", "n", "accuracy", "macro-F1", "invalid"]
EARLIER_PREFIXES = ("evaluation ", "run ", SHIPPED)  # view names of reports picked from the list


def run_evaluation(
    state: AppState,
    data: str | None = None,
    split: str = "test",
    size: int | None = DEFAULT_SIZE,
    mode: str = "score",
    which: str = "both",
    seed: int = 0,
    progress=None,
    cancel: CancelToken | None = None,
    *,
    upload: Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Evaluate, write the report folder(s), return {report_dir, reports: {name: metrics}, comparison,
    note, data_note, dropped}. An `upload` (a file the visitor uploaded) replaces `data` and `split`.

    The texts are classified in chunks (`AppState.predict_many`): other requests are served between
    chunks, and a set `cancel` stops the evaluation at the next one (RequestCancelled, nothing written)."""
    check_mode(mode)
    variants = WHICH.get("fine-tuned" if which == "finetuned" else which)
    if variants is None:
        raise UserError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    size = None if size in (None, 0) else int(size)
    rows = state.settings.clamp_eval_rows(size)
    labels = state.labels  # the loaded model's: its gold labels must be labels of that set
    if upload is not None:
        table = read_labelled(upload, state.settings, text_column=text_column, label_column=label_column,
                              labels=labels, drop=DROP_CLEANUP)  # fmt: skip
        data, split = f"upload: {upload.name}", "upload"
        extra = {"data_sha256": file_fingerprint(upload)}
    else:
        data = (data or "").strip() or paths.default_data()
        if not state.settings.allows_arbitrary_paths and data != paths.default_data():
            raise UserError(f"in this demo evaluations use {paths.default_data()} only, or an uploaded file")
        try:
            table = read_split(data, split, text_column=text_column or None,
                               label_column=label_column or None, labels=labels)  # fmt: skip
        except DataError as exc:
            raise UserError(str(exc)) from exc
        extra = {}
    ds = sample(table.ds, rows, stratify=True, seed=int(seed or 0))
    texts, gold = list(ds["text"]), list(ds["label"])
    meta = {
        "data": data,
        "split": split,
        "rows": len(texts),
        "seed": int(seed or 0),
        "fingerprint": fingerprint(ds),
        "text_column": table.text_column,
        "label_column": table.label_column,
        "data_note": table.note,
        **extra,
    }

    reports: dict[str, core_eval.Report] = {}
    with state.classifier() as clf:
        if clf.labels != labels:
            raise UserError("the model was switched while the data loaded: evaluate again")
        lm, version = clf.lm, state.model_version
    note = None
    if "finetuned" in variants and lm.adapter is None:
        if len(variants) == 1:
            raise UserError("no adapter is loaded: evaluate the base model, or pick an adapter above")
        variants, note = ("base",), "no adapter is loaded, so only the base model was evaluated"
    for i, variant in enumerate(variants):

        def step(done: int, total: int, i: int = i) -> None:
            if progress:
                progress(i * total + done, total * len(variants))

        start = time.perf_counter()
        adapter = variant == "finetuned"
        preds = state.predict_many(
            texts, mode, adapter=adapter, progress=step, cancel=cancel, task="evaluate"
        )
        reports[variant] = core_eval.build_report(
            preds, gold, lm, labels, mode=mode, adapter=adapter, seconds=time.perf_counter() - start,
            meta={**meta, "variant": variant},
        )  # fmt: skip
    if state.model_version != version:  # each variant's chunks saw one model; the two must see the same
        raise UserError("the model or adapter was switched during the evaluation; run it again")
    out_dir = _new_report_dir(state.reports_dir)
    try:
        for variant, report in reports.items():
            core_eval.write_report(report, out_dir / variant)
    except OSError:
        shutil.rmtree(out_dir, ignore_errors=True)  # a full disk: no half evaluation left in the list
        raise
    result: dict[str, Any] = {
        "report_dir": str(out_dir),
        "reports": {name: r.metrics for name, r in reports.items()},
        "comparison": None,
        "note": note,
        "data_note": table.note,
        "dropped": table.dropped_text() or None,
    }
    if len(reports) == 2:
        result["comparison"] = core_eval.compare_reports(reports["base"], reports["finetuned"])
    return result


def preview_upload(
    state: AppState, file: Any, text_column: str | None = None, label_column: str | None = None
) -> Preview:
    """The preview of an uploaded labelled file, its labels mapped through the model's."""
    path = uploaded_path(file)
    if path is None:
        raise UserError("upload a labelled file first (CSV, TSV, JSONL, JSON or Parquet)")
    return labelled_preview(path, state.settings, text_column=text_column, label_column=label_column,
                            labels=state.labels)  # fmt: skip


def unknown_warning(unknown: dict[str, int]) -> str:
    if not unknown:
        return ""
    names = ", ".join(list(unknown)[:10])
    return f"labels the model does not know: {names}. Evaluation refuses them: rename or remove those rows"


def _new_report_dir(root: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    candidate.mkdir(parents=True)
    return candidate


def list_reports(state: AppState) -> list[tuple[str, str]]:
    """(label, folder) of every stored report: the app's evaluations, then the runs', newest first, then
    the shipped run's."""
    found: list[tuple[str, str]] = []
    if state.reports_dir.is_dir():
        for folder in sorted(state.reports_dir.iterdir(), reverse=True):
            found += [(f"evaluation {folder.name} {sub.name}", str(sub)) for sub in _report_folders(folder)]
    for run in state.list_runs():
        found += [
            (f"run {run.name} {sub.name}", str(sub)) for sub in _report_folders(Path(run.path) / "reports")
        ]
    shipped = state.shipped_run()
    if shipped is not None:
        found += [
            (f"{shipped.name} {sub.name}", str(sub)) for sub in _report_folders(shipped.path / "reports")
        ]
    return found


def shipped_selection(state: AppState) -> list[str]:
    """The folders the tab opens on: the shipped run's base and fine-tuned reports (score mode)."""
    shipped = state.shipped_run()
    if shipped is None:
        return []
    wanted = {str(shipped.path / "reports" / variant) for variant in ("base", "finetuned")}
    return [path for _, path in list_reports(state) if path in wanted]


def _report_folders(parent: Path) -> list[Path]:
    """Sub-folders holding a metrics.json, base before finetuned before the rest."""
    if not parent.is_dir():
        return []
    order = {"base": 0, "finetuned": 1}
    subs = [p for p in parent.iterdir() if (p / core_eval.METRICS_FILE).is_file()]
    return sorted(subs, key=lambda p: (order.get(p.name, 2), p.name))


def load_view(state: AppState, folder: str) -> dict[str, Any]:
    """A report as the tab holds it: {metrics, predictions, dir}; the shipped ones from the state's copy."""
    shipped = state.shipped_run()
    try:
        if shipped is not None and Path(folder).parent == shipped.path / "reports":
            report = state.shipped_reports()[Path(folder).name]
        else:
            report = core_eval.load_report(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot read the report in {folder}: {exc}") from exc
    return {"metrics": report.metrics, "predictions": report.predictions, "dir": folder}


def summary_frame(views: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, view in views.items():
        m = view["metrics"]
        rows.append(
            {
                "report": name,
                "model": _short_name(m.get("model")),
                "adapter": _short_name(m.get("adapter")),
                "mode": m.get("mode"),
                "n": m.get("n"),
                "accuracy": round(m["accuracy"], 4),
                "macro-F1": round(m["macro_f1"], 4),
                "invalid": m.get("invalid"),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _short_name(spec: str | None) -> str:
    """A model or adapter as a table cell: a Hub id as is, a folder by its name (a run's by the run's)."""
    if not spec:
        return ""
    if not spec.startswith(("/", ".", "~")):
        return spec
    path = Path(spec)
    return path.parent.name if path.name == "adapter" else path.name


def mistakes(view: dict | None, gold: str = ALL, predicted: str = ALL) -> pd.DataFrame:
    """Wrong predictions of one report, filtered by gold and predicted label ("all" = no filter)."""
    rows = []
    for p in (view or {}).get("predictions", []):
        if not p.get("gold") or p.get("predicted") == p.get("gold"):
            continue
        if gold != ALL and p["gold"] != gold:
            continue
        if predicted != ALL and p["predicted"] != predicted:
            continue
        rows.append({k: p.get(k, "") for k in MISTAKE_COLUMNS})
    return pd.DataFrame(rows, columns=MISTAKE_COLUMNS)


def build(state: AppState) -> dict[str, Any]:
    """The Evaluate tab (call inside a gr.Tab); returns components the layout refreshes."""
    demo = not state.settings.allows_arbitrary_paths
    views = gr.State({})
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            data = gr.Textbox(
                label="Data",
                value=paths.default_data(),
                interactive=not demo,
                info="Hub dataset id, a folder of split files, or one file"
                if not demo
                else "fixed in this demo",
            )
            split = gr.Dropdown(SPLITS, value="test", label="Split")
            with gr.Group():
                upload = gr.File(
                    label="…or upload a labelled file (CSV, TSV, JSONL, JSON, Parquet)",
                    file_types=UPLOAD_TYPES,
                    type="filepath",
                    elem_id="evaluate-upload",
                )
                with gr.Row():
                    text_col = gr.Dropdown(
                        label="Text column", choices=[], interactive=True, elem_id="evaluate-text-column"
                    )
                    label_col = gr.Dropdown(
                        label="Label column", choices=[], interactive=True, elem_id="evaluate-label-column"
                    )
            size = gr.Number(
                value=min(DEFAULT_SIZE, state.settings.max_eval_rows) if demo else DEFAULT_SIZE,
                label="Rows (0 = all)" if not demo else f"Rows (at most {state.settings.max_eval_rows})",
                precision=0,
                minimum=0,
                elem_id="evaluate-rows",
            )
            mode = gr.Radio(list(MODES), value="score", label="Mode")
            which = gr.Radio(
                list(WHICH), value="both", label="Model", info="base = adapter off", elem_id="evaluate-which"
            )
            seed = gr.Number(value=0, label="Sampling seed", precision=0)
            with gr.Row():
                button = gr.Button("Evaluate", variant="primary", elem_id="evaluate-button", scale=3)
                stop = gr.Button("Stop", variant="stop", elem_id="evaluate-stop", scale=1)
            earlier = gr.Dropdown(
                label="Add earlier reports",
                choices=[],
                multiselect=True,
                elem_id="evaluate-earlier",
                info="from earlier evaluations and training runs",
            )
            refresh = gr.Button("Refresh reports", size="sm")
        with gr.Column(scale=3):
            with gr.Accordion("Uploaded file", open=True, visible=False) as preview_box:
                preview_summary = gr.Markdown(elem_id="evaluate-preview-summary")
                preview_rows = gr.Dataframe(
                    value=pd.DataFrame(columns=PREVIEW_COLUMNS),
                    label="First rows",
                    interactive=False,
                    wrap=True,
                    max_height=260,
                    elem_id="evaluate-preview",
                )
            message = gr.Textbox(label="Result", interactive=False, elem_id="evaluate-message")
            summary = gr.Dataframe(
                value=pd.DataFrame(columns=SUMMARY_COLUMNS),
                label="Accuracy and macro-F1",
                interactive=False,
                elem_id="evaluate-summary",
            )
            with gr.Row():
                with gr.Column(scale=3):
                    f1_chart = gr.Plot(show_label=False, value=plots.empty("F1 per class"))
                with gr.Column(scale=1, min_width=200):
                    invalid_chart = gr.Plot(show_label=False, value=plots.empty("Invalid answers"))
            view = gr.Dropdown(label="Report shown below", choices=[], elem_id="evaluate-view")
            confusion_chart = gr.Plot(show_label=False, value=plots.empty("Confusion matrix"))
            with gr.Row():
                gold_filter = gr.Dropdown([ALL, *EMOTIONS.names], value=ALL, label="Gold label")
                pred_filter = gr.Dropdown([ALL, *EMOTIONS.names, INVALID], value=ALL, label="Predicted label")
            mistakes_table = gr.Dataframe(
                value=pd.DataFrame(columns=MISTAKE_COLUMNS),
                label="Mistakes",
                interactive=False,
                wrap=True,
                max_height=400,
                column_widths=["58%", "12%", "12%", "18%"],
            )
            with gr.Row():
                metrics_file = gr.File(label="metrics.json", interactive=False)
                predictions_file = gr.File(label="predictions.csv", interactive=False)

    def render(all_views: dict, shown: str | None, gold: str, pred: str):
        names = list(all_views)
        shown = shown if shown in all_views else (names[-1] if names else None)
        metrics = {n: v["metrics"] for n, v in all_views.items()}
        current = all_views.get(shown) if shown else None
        files = (None, None)
        names_shown = core_eval.report_labels(current["metrics"]) if current else list(EMOTIONS.names)
        if current:
            rows = current["predictions"]
            files = (
                download("metrics.json", json_text(current["metrics"])),
                download("predictions.csv", core_eval.predictions_csv(rows, names_shown)),
            )
        return (
            summary_frame(all_views) if all_views else None,
            plots.per_class_f1(metrics),
            plots.invalid_counts(metrics),
            gr.Dropdown(choices=names, value=shown),
            plots.confusion(current["metrics"] if current else None, f"Confusion matrix: {shown or ''}"),
            mistakes(current, gold, pred),
            *files,
            # The label filters offer the shown report's labels.
            gr.Dropdown(choices=[ALL, *names_shown], value=gold if gold in names_shown else ALL),
            gr.Dropdown(
                choices=[ALL, *names_shown, INVALID], value=pred if pred in [*names_shown, INVALID] else ALL
            ),
        )

    shown_outputs = [
        summary,
        f1_chart,
        invalid_chart,
        view,
        confusion_chart,
        mistakes_table,
        metrics_file,
        predictions_file,
        gold_filter,
        pred_filter,
    ]

    preview_outputs = [preview_box, preview_summary, preview_rows, text_col, label_col]

    def on_upload(file: str | None, text_v: str | None = None, label_v: str | None = None):
        """Preview a new upload (columns guessed), or the same upload with the columns picked."""
        if not file:
            return (gr.Accordion(visible=False), *preview_view(None))
        try:
            p = preview_upload(state, file, text_v, label_v)
        except Exception as exc:
            summary = warn(exc)
            return (gr.Accordion(visible=True), summary, *preview_view(None)[1:])
        return (gr.Accordion(visible=True), *preview_view(p, unknown_warning(p.unknown)))

    upload.change(
        lambda f: on_upload(f), [upload], preview_outputs, api_visibility="private", concurrency_limit=None
    )
    for picker in (text_col, label_col):
        picker.input(
            on_upload, [upload, text_col, label_col], preview_outputs, api_visibility="private",
            concurrency_limit=None,
        )  # fmt: skip

    async def on_evaluate(
        data_v, split_v, size_v, mode_v, which_v, seed_v, earlier_v, gold, pred, file, text_v, label_v,
        progress=gr.Progress(),
    ):  # fmt: skip
        try:
            progress(0, desc="loading data")
            res = await in_thread(
                run_evaluation,
                state,
                data_v,
                split_v,
                int(size_v or 0),
                mode_v,
                which_v,
                int(seed_v or 0),
                progress=lambda done, total: progress((done, total), desc="evaluating", unit="texts"),
                upload=uploaded_path(file),
                text_column=text_v if file else None,
                label_column=label_v if file else None,
            )
            all_views = _earlier_views(earlier_v)
            stamp = Path(res["report_dir"]).name
            for variant in res["reports"]:
                all_views[f"{variant} ({stamp})"] = load_view(state, str(Path(res["report_dir"]) / variant))
        except Exception as exc:
            return (warn(exc), gr.skip(), *[gr.skip()] * len(shown_outputs))
        parts = [
            f"{n}: accuracy {m['accuracy'] * 100:.1f} %, macro-F1 {m['macro_f1']:.3f}, invalid {m['invalid']}"
            for n, m in res["reports"].items()
        ]
        n = next(iter(res["reports"].values()))["n"]
        text = f"{'; '.join(parts)} — {n} texts, saved in {res['report_dir']}"
        for extra in (res["note"], res["dropped"], res["data_note"]):
            if extra:
                text += f" ({extra})"
        return (text, all_views, *render(all_views, None, gold, pred))

    evaluate_event = button.click(
        on_evaluate,
        [
            data,
            split,
            size,
            mode,
            which,
            seed,
            earlier,
            gold_filter,
            pred_filter,
            upload,
            text_col,
            label_col,
        ],
        [message, views, *shown_outputs],
        api_visibility="private",
    )
    stop.click(None, None, None, cancels=[evaluate_event], api_visibility="private")

    def _earlier_views(selected: list[str] | None) -> dict[str, dict]:
        labels = dict((path, label) for label, path in list_reports(state))
        return {labels.get(path, path): load_view(state, path) for path in selected or [] if path in labels}

    def on_earlier(selected, current: dict, gold, pred):
        # Keep this session's fresh evaluations, replace the earlier ones with the selection.
        kept = {n: v for n, v in (current or {}).items() if not n.startswith(EARLIER_PREFIXES)}
        try:
            all_views = {**_earlier_views(selected), **kept}
        except Exception as exc:
            warn(exc)
            return (current, *[gr.skip()] * len(shown_outputs))
        return (all_views, *render(all_views, None, gold, pred))

    earlier.change(
        on_earlier,
        [earlier, views, gold_filter, pred_filter],
        [views, *shown_outputs],
        api_visibility="private",
    )
    for control in (view, gold_filter, pred_filter):
        control.input(
            render,
            [views, view, gold_filter, pred_filter],
            shown_outputs,
            api_visibility="private",
            concurrency_limit=None,
        )

    def refresh_reports(selected: list[str] | None = None):
        choices = list_reports(state)
        paths_ = {path for _, path in choices}
        return gr.Dropdown(choices=choices, value=[p for p in selected or [] if p in paths_])

    refresh.click(refresh_reports, [earlier], [earlier], api_visibility="private", concurrency_limit=None)

    def on_load():
        """The report list on page load, with the shipped run's reports picked: their change fills the tab."""
        return refresh_reports(shipped_selection(state))

    @api_endpoint
    async def evaluate(
        data: str = "",
        split: str = "test",
        size: int = DEFAULT_SIZE,
        mode: str = "score",
        which: str = "both",
        seed: int = 0,
        file: dict | None = None,
        text_column: str = "",
        label_column: str = "",
    ) -> dict:
        """Evaluate the loaded model on a data slice (size 0 = all rows); writes a report folder. `file`
        (gradio_client's handle_file) is an uploaded labelled file that replaces data and split; the
        columns are guessed unless named. Runs in chunks; a cancelled request stops at the next chunk and
        writes nothing."""
        return await in_thread(
            run_evaluation, state, data or None, split, size, mode, which, seed, upload=uploaded_path(file),
            text_column=text_column or None, label_column=label_column or None,
        )  # fmt: skip

    @api_endpoint
    def data_preview(file: dict | None = None, text_column: str = "", label_column: str = "") -> dict:
        """What an uploaded labelled file holds: columns (chosen and all), label set, row and label counts,
        dropped rows by reason, the first rows, and a warning naming labels the model does not know."""
        p = preview_upload(state, file, text_column or None, label_column or None)
        return {**p.to_dict(), "warning": unknown_warning(p.unknown) or None}

    @api_endpoint
    def reports() -> list[dict]:
        """Stored reports: [{label, dir}] from the app's evaluations and the training runs."""
        return [{"label": label, "dir": path} for label, path in list_reports(state)]

    gr.api(evaluate, api_name="evaluate")
    gr.api(data_preview, api_name="data_preview", concurrency_limit=None)
    gr.api(reports, api_name="reports")
    return {"earlier": earlier, "refresh_reports": refresh_reports, "on_load": on_load}
