"""The Train tab and the `train_start` / `train_stop` / `train_resume` / `train_status` / `runs_compare`
API endpoints.

The form is generated from `TrainConfig`'s fields (`form_specs`: one plain spec per option, turned into
gradio components by `build`), so a new option shows here without an edit; beside it, the `train` command
the form amounts to (`config.command_line`, made from the same fields), ready to copy. The tab builds a
`TrainConfig` from it, hands it to the one `Runner` (training runs in its own process), and follows the
run by polling its log.jsonl on a `gr.Timer`: loss curve with evaluation points, progress with ETA, the
log's tail. A page reload finds the running job again (`Runner.active()` on load); a second Start is
refused with the name of the run that is training. The run shown can be resumed (stopped or failed, with
a checkpoint) or its settings put into the form ("Use these settings"). Below, several runs compared:
their loss curves on one plot and a table of the settings in which they differ and their figures
(`compare`). In demo mode the tab is read-only. With no run of its own yet, the tab shows the shipped run
(the one that trained the shipped adapter).
The data is a Hub id or a server path, or an uploaded labelled file: previewed on upload (first rows,
counts, what is dropped), its text and label columns guessed and changeable; it is the training data, and
the validation and test rows are a stratified slice of it (the run keeps a copy of the file).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import pandas as pd

from gemma_emotion import gpu, paths
from gemma_emotion.config import Group, TrainConfig, command_line, config_fields
from gemma_emotion.data import Preview
from gemma_emotion.labels import LabelSet
from gemma_emotion.runfolder import LogRecord
from gemma_emotion.runs import RunInfo, RunnerBusy
from gemma_emotion.train_data import run_labels
from gemma_emotion.ui import plots
from gemma_emotion.ui.common import (
    PREVIEW_COLUMNS,
    UPLOAD_TYPES,
    api_endpoint,
    labelled_preview,
    md,
    preview_view,
    uploaded_path,
    warn,
)
from gemma_emotion.ui.state import AppState, UserError

POLL_S = 2.0
TAIL = 15
DEMO_HINT = (
    "Training is switched off in this public demo. **Duplicate this Space** (menu ⋮ → Duplicate this "
    "Space) onto your own GPU hardware to fine-tune your own adapter; it runs the same app with training on."
)
# A three-way choice for an option that may be left to the device plan (bool or None).
TRI_STATE = {"auto": None, "on": True, "off": False}
FormKind = Literal["text", "number", "checkbox", "choice"]
ROW_WIDTH = 2  # fields side by side in a row of the form
COMPARE_COLUMNS = ["", "run", "another run"]  # the empty comparison: a blank, then the runs' names
MIN_UPLOAD_ROWS = 10  # fewer usable rows cannot give both training rows and a held-out slice


@dataclass(frozen=True)
class FormField:
    """One field of the Train tab's form, as plain data: what `build` makes a gradio component of."""

    name: str
    label: str
    kind: FormKind
    value: Any
    group: Group
    info: str | None = None
    whole: bool = False  # a number without decimals
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    zero_is_none: bool = False  # 0 in the field means None ("all", "auto", "off")
    tri_state: bool = False  # a choice of TRI_STATE's words for an option that is on, off or auto

    @property
    def elem_id(self) -> str:
        return "train-" + self.name.replace("_", "-")


def form_specs(defaults: dict[str, Any], cls: type = TrainConfig) -> list[FormField]:
    """The form's fields, one per option of the config class that has a group, with `defaults`' values."""
    specs = []
    for f in config_fields(cls):
        o = f.option
        if o.group is None:
            continue
        value = defaults.get(f.name, f.default)
        if f.kind is bool and f.optional:
            kind: FormKind = "choice"
            value = next(word for word, v in TRI_STATE.items() if v is value)
        elif f.kind is bool:
            kind, value = "checkbox", bool(value)
        elif f.kind is str and o.choices:
            kind = "choice"
        elif f.kind is str:
            kind, value = "text", value or ""
        else:
            kind = "number"
            if f.zero_is_none and value is None:
                value = 0
        specs.append(
            FormField(
                name=f.name,
                label=o.label,
                kind=kind,
                value=value,
                group=o.group,
                info=o.info,
                whole=f.kind is int,
                minimum=0 if f.zero_is_none else o.minimum,
                maximum=o.maximum,
                choices=tuple(TRI_STATE) if f.kind is bool else tuple(map(str, o.choices)),
                zero_is_none=f.zero_is_none,
                tri_state=f.kind is bool and f.optional,
            )
        )
    return specs


def config_defaults(state: AppState) -> dict[str, Any]:
    """TrainConfig's defaults, with the app's model and the device plan's defaults for this machine."""
    from gemma_emotion.plan import device_defaults

    defaults = {f.name: f.default for f in config_fields()}
    defaults["model"] = state.settings.model
    defaults["data"] = paths.default_data()
    defaults.update(device_defaults())
    return defaults


def make_config(state: AppState, values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a dict of field values (unknown keys refused, zeros meaning "auto"/"all"); the
    options not given take the config's defaults, or the device plan's where those depend on the device."""
    from gemma_emotion.plan import device_defaults

    fields = config_fields()
    known = {f.name for f in fields}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"unknown training option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    values = {**device_defaults(), **values}
    values.setdefault("model", state.settings.model)
    values.setdefault("data", paths.default_data())
    # The API takes 0 (or "") for "auto"/"all"/"off" as well as None where 0 is not a valid value itself.
    for f in fields:
        if f.zero_is_none and values.get(f.name) in (0, ""):
            values[f.name] = None
    if not values.get("name"):
        values["name"] = None
    if isinstance(values.get("labels"), str) and not values["labels"].strip():
        values["labels"] = None  # an empty field: the data's names, else the six
    config = TrainConfig(**values)
    config.validate()
    return config


def start_training(state: AppState, values: dict[str, Any], upload: Path | None = None) -> dict[str, Any]:
    """Start a run; an `upload` (a file the visitor uploaded) is its training data, checked first."""
    if not state.settings.allows_training:
        raise UserError("training is switched off in this demo; duplicate the Space to train")
    if gpu.on_zero_gpu():
        raise UserError(gpu.NO_TRAINING_ON_ZERO_GPU)
    if upload is not None:
        values = {**values, "data": str(upload)}
        preview_training_file(
            state, upload, values.get("text_column"), values.get("label_column"), values.get("labels")
        )
    config = make_config(state, values)
    labels = run_labels(config)  # given, else the data's names, else the six; shown before training
    try:
        info = state.runner.start(config)
    except RunnerBusy as exc:
        raise UserError(f"{exc}. Stop it first, or wait for it to finish.") from exc
    return {**run_dict(info), "labels": list(labels.names)}


def preview_training_file(
    state: AppState,
    upload: Path,
    text_column: str | None,
    label_column: str | None,
    labels: str | None = None,
) -> Preview:
    """The upload's preview, its labels mapped through the names given (else the set its names make);
    UserError when it cannot train (malformed, too big, no labels, too few rows), before any run exists."""
    given = LabelSet.parse(labels) if isinstance(labels, str) and labels.strip() else None
    p = labelled_preview(
        upload, state.settings, text_column=text_column, label_column=label_column, labels=given
    )
    if p.label_column is None:
        raise UserError(f"{upload.name}: no label column: pick the column that holds the labels")
    if p.n_rows < MIN_UPLOAD_ROWS:
        raise UserError(f"{upload.name}: {p.n_rows} usable rows; training needs at least {MIN_UPLOAD_ROWS}")
    return p


def push_run(state: AppState, name: str | None, repo: str, private: bool = True) -> str:
    """Push a run's adapter (with its card and reports) to a Hub model repo with HF_TOKEN; the repo URL."""
    from gemma_emotion import hub, settings

    if not state.settings.allows_training:
        raise UserError("pushing to the Hub is switched off in this demo")
    if not name:
        raise UserError("pick a run first")
    if not settings.hf_token():
        raise UserError("set HF_TOKEN in the server's environment (a Space secret) to push to the Hub")
    info = state.find_run(name)
    adapter = getattr(info, "adapter_dir", None)
    if adapter is None or not Path(adapter, "adapter_config.json").is_file():
        raise UserError(f"run {name} has no adapter (yet)")
    return hub.push_adapter(adapter, (repo or "").strip(), private=bool(private))


def stop_training(state: AppState) -> dict[str, Any]:
    if not state.settings.allows_training:
        raise UserError("training is switched off in this demo")
    info = state.runner.stop()
    return {"stopped": info is not None, "run": run_dict(info) if info else None}


def resume_training(state: AppState, name: str) -> dict[str, Any]:
    """Continue a stopped or failed run from its last checkpoint (the refusal says why when it cannot)."""
    if not state.settings.allows_training:
        raise UserError("training is switched off in this demo")
    if gpu.on_zero_gpu():
        raise UserError(gpu.NO_TRAINING_ON_ZERO_GPU)
    if not name:
        raise UserError("name the run to resume")
    try:
        info = state.runner.resume(name)
    except RunnerBusy as exc:
        raise UserError(f"{exc}. Stop it first, or wait for it to finish.") from exc
    return run_dict(info)


def command_for(state: AppState, values: dict[str, Any]) -> str:
    """The `train` command the form's values amount to; a comment saying what is wrong while they make no
    config (a half-typed number)."""
    try:
        return command_line(make_config(state, values))
    except UserError as exc:
        return f"# {exc}"


def settings_of(state: AppState, name: str) -> dict[str, Any]:
    """A run's recorded settings as the form's values (its name left out: a new run needs its own)."""
    config = TrainConfig.from_dict(state.find_run(name).config)
    specs = form_specs({**config.to_dict(), "name": None})
    return {spec.name: spec.value for spec in specs}


def compare_view(state: AppState, names: list[str], smoothing: float = 0.0) -> tuple[Any, list[list[str]]]:
    """The picked runs' curves on one figure and the table of their differing settings and figures."""
    from gemma_emotion.compare import compare_runs, comparison_table

    runs = [state.find_run(n) for n in names]
    logs = [state.run_log(r.name)[0] for r in runs]
    table = comparison_table(compare_runs(runs, logs)) if len(runs) >= 2 else []
    figure = plots.compare_curves({r.name: log for r, log in zip(runs, logs)}, smoothing)
    return figure, table


def comparison_dict(state: AppState, names: list[str]) -> dict[str, Any]:
    """The comparison as JSON: runs, settings and metrics rows, and the same as a table of text."""
    from gemma_emotion.compare import compare_runs, comparison_table

    runs = [state.find_run(n) for n in names or []]
    comparison = compare_runs(runs, [state.run_log(r.name)[0] for r in runs])
    return {**dataclasses.asdict(comparison), "table": comparison_table(comparison)}


def training_status(state: AppState, name: str | None = None, since: int = 0) -> dict[str, Any]:
    """The named run (else the running one, else the newest, else the shipped one): its record, log from
    `since`, progress."""
    active = state.runner.active() if state.settings.allows_training else None
    info = None
    if name:
        info = state.find_run(name)
    elif active is not None:
        info = active
    else:
        runs = state.list_runs()
        info = runs[0] if runs else state.shipped_run()
    if info is None:
        return {"active": None, "run": None, "records": [], "next": 0, "progress": None}
    records, next_line = state.run_log(info.name, max(0, int(since or 0)))
    every = records if since == 0 else state.run_log(info.name)[0]
    return {
        "active": active.name if active else None,
        "run": run_dict(info),
        "records": records,
        "next": next_line,
        "progress": progress_of(info, every),
    }


def run_dict(info: RunInfo) -> dict[str, Any]:
    """RunInfo as JSON. Its `path` is renamed `run_dir`: gradio_client downloads any dict with a "path"."""
    data = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    data["run_dir"] = data.pop("path")
    data["resumable"] = info.resumable
    return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


def progress_of(info: RunInfo, records: list[LogRecord]) -> dict[str, Any]:
    """Fraction done, step, epoch, ETA and speed from the newest log records."""
    last = next((r for r in reversed(records) if "epoch" in r), {})
    epochs = float(info.config.get("epochs") or 1.0)
    epoch = float(last.get("epoch") or 0.0)
    if info.status == "completed":
        fraction = 1.0
    elif last.get("max_steps"):
        fraction = min(1.0, (last.get("step") or 0) / last["max_steps"])
    else:
        fraction = min(1.0, epoch / epochs) if epochs > 0 else 0.0
    speed = next((r["examples_per_s"] for r in reversed(records) if r.get("examples_per_s")), None)
    return {
        "fraction": round(fraction, 4),
        "step": last.get("step"),
        "epoch": epoch,
        "epochs": epochs,
        "eta_s": last.get("eta_s") if info.status == "running" else 0,
        "examples_per_s": speed,
        "phase": getattr(info, "phase", None),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_record(r: LogRecord) -> str:
    parts = [f"step {r.get('step', '?')}"]
    if r.get("epoch") is not None:
        parts.append(f"epoch {r['epoch']:.2f}")
    for key, label, fmt in (
        ("loss", "loss", "{:.4f}"),
        ("eval_loss", "eval loss", "{:.4f}"),
        ("eval_accuracy", "eval accuracy", "{:.3f}"),
        ("learning_rate", "lr", "{:.2e}"),
        ("grad_norm", "grad norm", "{:.2f}"),
        ("examples_per_s", "ex/s", "{:.1f}"),
    ):
        if r.get(key) is not None:
            try:
                parts.append(f"{label} {fmt.format(r[key])}")
            except (TypeError, ValueError):
                parts.append(f"{label} {r[key]}")
    if r.get("eta_s") is not None:
        parts.append(f"ETA {_duration(r['eta_s'])}")
    return " · ".join(parts)


def status_line(status: dict) -> str:
    run = status.get("run")
    if not run:
        return "No training run yet."
    prog = status.get("progress") or {}
    line = f"Run {run['name']}: {run['status']}"
    if run.get("phase") and run["status"] == "running":
        line += f" ({run['phase']})"
    if run.get("labels"):
        line += f" · labels: {', '.join(run['labels'])}"
    if run["status"] == "running":
        line += f" · epoch {prog.get('epoch', 0):.2f} of {prog.get('epochs', 1):g}"
        if prog.get("eta_s") is not None:
            line += f" · about {_duration(prog['eta_s'])} left"
    if run.get("n_corrections"):
        line += f" · trained with {run['n_corrections']} corrections"
    metrics = run.get("metrics") or {}
    if metrics:
        shown = []
        for key in ("train_loss", "base_accuracy", "finetuned_accuracy", "finetuned_macro_f1"):
            if isinstance(metrics.get(key), (int, float)):
                shown.append(f"{key.replace('_', ' ')} {metrics[key]:.4f}")
        if shown:
            line += " · " + ", ".join(shown)
    ended = run.get("ended") or {}
    if ended.get("reason") == "early_stopped":
        line += f" · early-stopped at step {ended.get('step')}, kept step {ended.get('best_step')}"
    if run.get("resumable") and run["status"] != "running":
        line += f" · can resume from step {run.get('checkpoint_step')}"
    if run.get("error"):
        line += f" · error: {run['error']}"
    return line


def build(state: AppState) -> dict[str, Any]:
    """The Train tab (call inside a gr.Tab); returns the page-load hook that reattaches to a running job."""
    allowed = state.settings.allows_training
    try:
        defaults = config_defaults(state)
    except ImportError as exc:
        gr.Markdown(f"Training is not available: {exc}")
        return {}
    if not allowed:
        gr.Markdown(DEMO_HINT, elem_id="train-demo-hint")
    elif gpu.on_zero_gpu():
        gr.Markdown(f"⚠️ {gpu.NO_TRAINING_ON_ZERO_GPU[0].upper()}{gpu.NO_TRAINING_ON_ZERO_GPU[1:]}.")

    viewed = gr.State(None)
    timer = gr.Timer(POLL_S, active=False)
    fields: dict[str, Any] = {}
    specs = form_specs(defaults)
    tri_state = {spec.name for spec in specs if spec.tri_state}

    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            main = [f for f in specs if f.group == "main"]
            after_data = next((i + 1 for i, f in enumerate(main) if f.name == "data"), len(main))
            _form_group(main[:after_data], fields, allowed)
            upload, text_col, label_col, preview_outputs = _upload_block(allowed)
            _form_group(main[after_data:], fields, allowed)
            with gr.Accordion("Advanced", open=False):
                _form_group([f for f in specs if f.group == "advanced"], fields, allowed)
            with gr.Row():
                start = gr.Button(
                    "Start training", variant="primary", interactive=allowed, elem_id="train-start"
                )
                stop = gr.Button("Stop", variant="stop", interactive=allowed, elem_id="train-stop")
            command = gr.Code(
                value=command_line(TrainConfig(**{**defaults, "name": None})),
                language="shell",
                label="The same from the command line",
                interactive=False,
                lines=2,
                wrap_lines=True,
                show_line_numbers=False,
                buttons=["copy"],
                elem_id="train-command",
            )
        with gr.Column(scale=2):
            status = gr.Textbox(label="Status", interactive=False, elem_id="train-status")
            progress = gr.Slider(
                0, 100, value=0, label="Progress (%)", interactive=False, elem_id="train-progress"
            )
            curve = gr.Plot(show_label=False, value=plots.empty("Training loss"), elem_id="train-loss")
            tail = gr.Textbox(
                label="Log (latest steps)", lines=8, max_lines=16, interactive=False, elem_id="train-log"
            )
            with gr.Row():
                run_pick = gr.Dropdown(label="Show run", choices=[], elem_id="train-run")
                refresh = gr.Button("Refresh runs", size="sm")
            with gr.Row():
                resume = gr.Button(
                    "Resume from its last checkpoint", interactive=False, size="sm", elem_id="train-resume"
                )
                reuse = gr.Button("Use these settings", size="sm", elem_id="train-use-settings")

            if allowed:  # never in demo mode: a push writes to someone's Hub account
                with gr.Accordion("Push to the Hub", open=False):
                    with gr.Row():
                        push_repo = gr.Textbox(
                            label="Hub model repo (owner/name)",
                            max_lines=1,
                            elem_id="train-push-repo",
                            info="the shown run's adapter, its model card and reports; uses HF_TOKEN",
                        )
                        push_private = gr.Checkbox(value=True, label="Private")
                    push_btn = gr.Button("Push to the Hub", elem_id="train-push")
                    push_msg = gr.Textbox(label="Hub", interactive=False, elem_id="train-push-message")
    with gr.Accordion("Compare runs", open=True):
        with gr.Row():
            compare_pick = gr.Dropdown(
                label="Runs to compare", choices=[], multiselect=True, scale=3, elem_id="train-compare-runs"
            )
            smoothing = gr.Slider(
                0, 0.99, value=0.0, step=0.01, label="Smoothing", scale=1, elem_id="train-smoothing",
                info="as TensorBoard's: an average over the recent steps",
            )  # fmt: skip
        compare_plot = gr.Plot(
            show_label=False, value=plots.empty("Training loss by run"), elem_id="train-compare-plot"
        )
        compare_table = gr.Dataframe(
            value=pd.DataFrame(columns=COMPARE_COLUMNS),
            label="Settings that differ, and each run's figures",
            interactive=False,
            wrap=True,
            elem_id="train-compare-table",
        )

    def form_values(data: dict) -> dict[str, Any]:
        """The form as TrainConfig fields: empty numbers are None, a three-way choice a bool or None."""
        values: dict[str, Any] = {}
        for name, component in fields.items():
            value = data[component]
            if name in tri_state:
                value = TRI_STATE.get(value)
            elif isinstance(value, str):
                value = value.strip() or None
            elif isinstance(value, float) and value.is_integer() and component.precision == 0:
                value = int(value)
            values[name] = value
        values["model"] = values["model"] or state.settings.model
        values["data"] = values["data"] or paths.default_data()
        if values.get("report_to") is None:
            values["report_to"] = "none"
        return values

    def run_names() -> list[str]:
        shipped = state.shipped_run()
        return [r.name for r in state.list_runs()] + ([shipped.name] if shipped is not None else [])

    def render(name_: str | None):
        """(viewed, status, progress, curve, tail, run picker, timer, resume) for the viewed run."""
        try:
            st = training_status(state, name_)
        except Exception as exc:
            return (
                name_, f"⚠️ {exc}", 0, plots.empty("Training loss"), "", gr.skip(), gr.Timer(active=False),
                gr.Button(interactive=False),
            )  # fmt: skip
        run = st["run"]
        names = run_names()
        if run is None:
            return (
                None,
                status_line(st),
                0,
                plots.empty("Training loss"),
                "",
                gr.Dropdown(choices=names),
                gr.Timer(active=False),
                gr.Button(interactive=False),
            )
        records = st["records"]
        # The run's notes first: which data copy it read, what was dropped and held out.
        lines = [f"note: {n}" for n in run.get("notes") or []] + [format_record(r) for r in records[-TAIL:]]
        if run.get("error"):
            lines.append(f"error: {run['error']}")
        running = run["status"] == "running"
        return (
            run["name"],
            status_line(st),
            round(100 * (st["progress"] or {}).get("fraction", 0.0), 1),
            plots.loss_curve(records, f"Training loss: {run['name']}"),
            "\n".join(lines) or "(no steps logged yet)",
            gr.Dropdown(choices=names, value=run["name"]),
            gr.Timer(active=running),
            gr.Button(interactive=allowed and bool(run.get("resumable")) and st["active"] is None),
        )

    shown = [viewed, status, progress, curve, tail, run_pick, timer, resume]

    labels_box = [fields["labels"]] if "labels" in fields else []  # the names to map the labels through

    def on_upload(
        file: str | None, text_v: str | None = None, label_v: str | None = None, labels_v: str | None = None
    ):
        """Preview a new upload (columns guessed), or the same upload with the columns or labels picked."""
        if not file:
            return (gr.Accordion(visible=False), *preview_view(None))
        try:
            p = preview_training_file(state, uploaded_path(file), text_v, label_v, labels_v)
        except Exception as exc:
            return (gr.Accordion(visible=True), warn(exc), *preview_view(None)[1:])
        held = max(1, min(p.n_rows // 10, 2000))
        return (
            gr.Accordion(visible=True),
            *preview_view(p, f"{held} of its rows will be held out for validation and test"),
        )

    upload.change(
        lambda f, *given: on_upload(f, None, None, *given), [upload, *labels_box], preview_outputs,
        api_visibility="private", concurrency_limit=None,
    )  # fmt: skip
    inputs = [upload, text_col, label_col, *labels_box]
    for picker in (text_col, label_col):
        picker.input(on_upload, inputs, preview_outputs, api_visibility="private", concurrency_limit=None)
    for box in labels_box:  # on leaving the field: a half-typed list of names is no label set yet
        box.blur(on_upload, inputs, preview_outputs, api_visibility="private", concurrency_limit=None)

    def on_start(data: dict):
        try:
            values = form_values(data)
            file = uploaded_path(data[upload])
            if file is not None:
                values.update(text_column=data[text_col] or None, label_column=data[label_col] or None)
            info = start_training(state, values, file)
        except Exception as exc:
            warn(exc)
            active = state.runner.active() if allowed else None
            return render(active.name if active else None)  # attach to the run that is training, if any
        gr.Info(md(f"training started: {info['name']} (labels: {', '.join(info['labels'])})"))
        return render(info["name"])

    start.click(
        on_start, {*fields.values(), upload, text_col, label_col}, shown, api_visibility="private",
        concurrency_limit=None,
    )  # fmt: skip

    def on_stop(name_: str | None):
        try:
            res = stop_training(state)
        except Exception as exc:
            warn(exc)
            return render(name_)
        if not res["stopped"]:
            gr.Info("no run is training")
            return render(name_)
        return render(res["run"]["name"])

    stop.click(on_stop, [viewed], shown, api_visibility="private", concurrency_limit=None)

    def on_resume(name_: str | None):
        try:
            info = resume_training(state, name_ or "")
        except Exception as exc:
            warn(exc)
            return render(name_)
        gr.Info(f"training resumed: {info['name']}")
        return render(info["name"])

    resume.click(on_resume, [viewed], shown, api_visibility="private", concurrency_limit=None)

    form = list(fields.values())

    def on_reuse(name_: str | None):
        """The viewed run's settings into the form, and the command they amount to."""
        if not name_:
            gr.Info("pick a run first")
            return [gr.skip()] * (len(form) + 1)
        try:
            values = settings_of(state, name_)
            config = TrainConfig.from_dict({**state.find_run(name_).config, "name": None})
        except Exception as exc:
            warn(exc)
            return [gr.skip()] * (len(form) + 1)
        gr.Info(f"the form holds the settings of {name_}")
        return [*(values[name] for name in fields), command_line(config)]

    reuse.click(on_reuse, [viewed], [*form, command], api_visibility="private", concurrency_limit=None)

    def on_form_input(data: dict):
        return command_for(state, form_values(data))

    for component in form:  # a person's edits; "Use these settings" sets the command itself
        component.input(
            on_form_input, set(form), [command], api_visibility="private", concurrency_limit=None,
            show_progress="hidden",
        )  # fmt: skip

    def on_compare(names_: list[str] | None, weight: float):
        names_ = list(names_ or [])
        none = pd.DataFrame(columns=COMPARE_COLUMNS)
        if not names_:
            return plots.empty("Training loss by run", "pick two or more runs"), none
        try:
            figure, table = compare_view(state, names_, float(weight or 0.0))
        except Exception as exc:
            warn(exc)
            return plots.empty("Training loss by run", "could not compare these runs"), none
        if not table:
            return figure, none
        return figure, gr.Dataframe(value=table[1:], headers=table[0])

    compare_pick.change(
        on_compare, [compare_pick, smoothing], [compare_plot, compare_table], api_visibility="private",
        concurrency_limit=None,
    )  # fmt: skip
    smoothing.release(
        on_compare, [compare_pick, smoothing], [compare_plot, compare_table], api_visibility="private",
        concurrency_limit=None, show_progress="hidden",
    )  # fmt: skip

    if allowed:

        def on_push(name_: str | None, repo: str, private: bool) -> str:
            try:
                url = push_run(state, name_, repo, private)
            except Exception as exc:
                return warn(exc)
            return f"pushed the adapter of {name_} to {url}"

        push_btn.click(on_push, [viewed, push_repo, push_private], [push_msg], api_visibility="private")

    timer.tick(
        render, [viewed], shown, api_visibility="private", concurrency_limit=None, show_progress="hidden"
    )
    run_pick.input(render, [run_pick], shown, api_visibility="private", concurrency_limit=None)

    def on_refresh(name_: str | None, picked: list[str] | None):
        names = run_names()
        kept = [n for n in picked or [] if n in names]
        return (*render(name_), gr.Dropdown(choices=names, value=kept))

    refresh.click(
        on_refresh, [viewed, compare_pick], [*shown, compare_pick], api_visibility="private",
        concurrency_limit=None,
    )  # fmt: skip

    def on_load():
        """Reattach after a reload: the running job if any, else the newest run; the runs to compare."""
        active = state.runner.active() if allowed else None
        return (*render(active.name if active else None), gr.Dropdown(choices=run_names()))

    @api_endpoint
    def train_start(config: dict, file: dict | None = None) -> dict:
        """Start a training run; `config` holds TrainConfig fields (model, data, text_column, label_column,
        train_size, epochs, ...). `file` (gradio_client's handle_file) is an uploaded file of training rows
        that replaces config's data."""
        return start_training(state, config or {}, uploaded_path(file))

    @api_endpoint
    def train_stop() -> dict:
        """Stop the running training (its adapter so far is saved): {stopped, run}."""
        return stop_training(state)

    @api_endpoint
    def train_resume(name: str) -> dict:
        """Continue a stopped or failed run from its last checkpoint, in its own folder; the run as JSON."""
        return resume_training(state, name)

    @api_endpoint
    def train_status(name: str = "", since: int = 0) -> dict:
        """A run's status, log records from line `since`, and progress; no name = the running/newest run."""
        return training_status(state, name or None, since)

    @api_endpoint
    def runs_compare(names: list[str]) -> dict:
        """Two or more runs side by side: the settings in which they differ and their final figures."""
        return comparison_dict(state, names)

    gr.api(train_start, api_name="train_start", concurrency_limit=None)
    gr.api(train_stop, api_name="train_stop", concurrency_limit=None)
    gr.api(train_resume, api_name="train_resume", concurrency_limit=None)
    gr.api(train_status, api_name="train_status", concurrency_limit=None)
    gr.api(runs_compare, api_name="runs_compare", concurrency_limit=None)
    return {"on_load": on_load, "outputs": [*shown, compare_pick]}


def _upload_block(allowed: bool) -> tuple[Any, Any, Any, list[Any]]:
    """The upload, its two column pickers and its preview: (upload, text picker, label picker, the outputs a
    preview fills: box, summary, first rows, text picker, label picker)."""
    with gr.Group():
        upload = gr.File(
            label="…or upload your training data (CSV, TSV, JSONL, JSON, Parquet)", file_types=UPLOAD_TYPES,
            type="filepath", interactive=allowed, elem_id="train-upload",
        )  # fmt: skip
        with gr.Row():
            text_col = gr.Dropdown(
                label="Text column", choices=[], interactive=allowed, elem_id="train-text-column"
            )
            label_col = gr.Dropdown(
                label="Label column", choices=[], interactive=allowed, elem_id="train-label-column"
            )
    with gr.Accordion("Uploaded file", open=True, visible=False) as box:
        summary = gr.Markdown(elem_id="train-preview-summary")
        rows = gr.Dataframe(
            value=pd.DataFrame(columns=PREVIEW_COLUMNS), label="First rows", interactive=False, wrap=True,
            max_height=220, elem_id="train-preview",
        )  # fmt: skip
    return upload, text_col, label_col, [box, summary, rows, text_col, label_col]


def _form_group(specs: list[FormField], fields: dict[str, Any], allowed: bool) -> None:
    """The components of one group of the form, into `fields`: text fields and three-way choices on their
    own line, the other fields side by side, ROW_WIDTH to a row."""
    row: list[FormField] = []

    def flush() -> None:
        if row:
            with gr.Row():
                for spec in row:
                    fields[spec.name] = _component(spec, allowed)
            row.clear()

    for spec in specs:
        if spec.kind in ("text", "choice"):
            flush()
            fields[spec.name] = _component(spec, allowed)
            continue
        row.append(spec)
        if len(row) == ROW_WIDTH:
            flush()
    flush()


def _component(spec: FormField, allowed: bool) -> Any:
    common = dict(label=spec.label, value=spec.value, interactive=allowed, elem_id=spec.elem_id)
    if spec.kind == "text":
        return gr.Textbox(info=spec.info, **common)
    if spec.kind == "checkbox":
        return gr.Checkbox(info=spec.info, **common)
    if spec.kind == "choice":
        return gr.Radio(list(spec.choices), info=spec.info, **common)
    return gr.Number(
        precision=0 if spec.whole else None,
        minimum=spec.minimum,
        maximum=spec.maximum,
        info=spec.info,
        **common,
    )
