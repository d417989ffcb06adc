"""The Train tab and the `train_start` / `train_stop` / `train_status` API endpoints.

The tab builds a `TrainConfig`, hands it to the one `Runner` (training runs in its own process), and
follows the run by polling its log.jsonl on a `gr.Timer`: loss curve with evaluation points, progress
with ETA, the log's tail. A page reload finds the running job again (`Runner.active()` on load); a
second Start is refused with the name of the run that is training. In demo mode the tab is read-only.
With no run of its own yet, the tab shows the shipped run (the one that trained the shipped adapter).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import gradio as gr

from gemma_emotion import paths
from gemma_emotion.ui import plots
from gemma_emotion.ui.common import api_endpoint, warn
from gemma_emotion.ui.state import AppState, UserError

POLL_S = 2.0
TAIL = 15
DEMO_HINT = (
    "Training is switched off in this public demo. **Duplicate this Space** (menu ⋮ → Duplicate this "
    "Space) onto your own GPU hardware to fine-tune your own adapter; it runs the same app with training on."
)
FOUR_BIT = {"auto": None, "on": True, "off": False}


def _train_module():
    from gemma_emotion import train

    return train


def config_defaults(state: AppState) -> dict[str, Any]:
    """TrainConfig's defaults, with the app's model and a train size that fits the device."""
    train = _train_module()
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(train.TrainConfig)
        if f.default is not dataclasses.MISSING
    }
    defaults["model"] = state.settings.model
    defaults["data"] = paths.default_data()
    if defaults.get("train_size") is None and not _has_cuda():
        defaults["train_size"] = 1000  # all 16k rows take hours on a CPU
    return defaults


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def make_config(state: AppState, values: dict[str, Any]):
    """A TrainConfig from a dict of field values (unknown keys refused, zeros meaning "auto"/"all")."""
    train = _train_module()
    known = {f.name for f in dataclasses.fields(train.TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"unknown training option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    values = dict(values)
    values.setdefault("model", state.settings.model)
    values.setdefault("data", paths.default_data())
    # The API takes 0 for "auto"/"all"/"off" as well as None; test_size 0 means "skip" to TrainConfig.
    for key in ("train_size", "batch_size", "grad_accum", "eval_steps", "learning_rate"):
        if key in values and values[key] in (0, ""):
            values[key] = None
    if not values.get("name"):
        values["name"] = None
    try:
        config = train.TrainConfig(**values)
        config.validate()
    except TypeError as exc:
        raise UserError(f"bad training options: {exc}") from exc
    return config


def start_training(state: AppState, values: dict[str, Any]) -> dict[str, Any]:
    if not state.settings.allows_training:
        raise UserError("training is switched off in this demo; duplicate the Space to train")
    from gemma_emotion.runs import RunnerBusy

    config = make_config(state, values)
    try:
        info = state.runner.start(config)
    except RunnerBusy as exc:
        raise UserError(f"{exc}. Stop it first, or wait for it to finish.") from exc
    return run_dict(info)


def stop_training(state: AppState) -> dict[str, Any]:
    if not state.settings.allows_training:
        raise UserError("training is switched off in this demo")
    info = state.runner.stop()
    return {"stopped": info is not None, "run": run_dict(info) if info else None}


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


def run_dict(info) -> dict[str, Any]:
    """RunInfo as JSON. Its `path` is renamed `run_dir`: gradio_client downloads any dict with a "path"."""
    data = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
    data["run_dir"] = data.pop("path")
    return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}


def progress_of(info, records: list[dict]) -> dict[str, Any]:
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


def format_record(r: dict) -> str:
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

    viewed = gr.State(None)
    timer = gr.Timer(POLL_S, active=False)
    fields: dict[str, Any] = {}

    def number(name: str, label: str, *, whole: bool = True, zero_is_none: bool = False, **kw) -> None:
        value = defaults.get(name)
        if zero_is_none and value is None:
            value = 0
        fields[name] = gr.Number(
            label=label, value=value, precision=0 if whole else None, interactive=allowed, **kw
        )

    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            fields["model"] = gr.Textbox(
                label="Model",
                value=defaults["model"],
                interactive=allowed,
                info="embedded, a Hub id or a checkpoint folder",
            )
            fields["data"] = gr.Textbox(
                label="Data",
                value=defaults["data"],
                interactive=allowed,
                info="Hub dataset id, a folder of split files, or a file (train + validation splits)",
            )
            with gr.Row():
                number("train_size", "Training rows (0 = all)", minimum=0, zero_is_none=True)
                number("epochs", "Epochs", whole=False, minimum=0)
            with gr.Row():
                number("learning_rate", "Learning rate (0 = auto for the batch)", whole=False, minimum=0,
                       zero_is_none=True)  # fmt: skip
                number("seed", "Seed", minimum=0)
            with gr.Row():
                number("eval_steps", "Evaluate every N steps (0 = off)", minimum=0, zero_is_none=True)
                number("test_size", "Test rows after training (empty = all, 0 = skip)", minimum=0)
            with gr.Row():
                fields["use_corrections"] = gr.Checkbox(
                    label="Add my corrections",
                    value=bool(defaults.get("use_corrections")),
                    interactive=allowed,
                    info="the labels fixed in the Label tab join the training data",
                    elem_id="train-use-corrections",
                )
                number("corrections_oversample", "Repeat each correction", minimum=1)
            fields["name"] = gr.Textbox(label="Run name (optional)", value="", interactive=allowed)
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    number("batch_size", "Batch size (0 = fit the device)", minimum=0, zero_is_none=True)
                    number("grad_accum", "Gradient accumulation (0 = auto)", minimum=0, zero_is_none=True)
                with gr.Row():
                    number("max_length", "Max tokens", minimum=16)
                    number("eval_size", "Validation rows per evaluation", minimum=1)
                fields["load_in_4bit"] = gr.Radio(
                    list(FOUR_BIT),
                    value="auto",
                    label="4-bit (QLoRA)",
                    interactive=allowed,
                    info="auto: 4-bit on small CUDA cards, never on CPU",
                )
                with gr.Row():
                    number("lora_r", "LoRA r", minimum=1)
                    number("lora_alpha", "LoRA alpha", minimum=1)
                    number("lora_dropout", "LoRA dropout", whole=False, minimum=0)
                fields["balance"] = gr.Checkbox(
                    label="Balance the labels (repeat the rarer ones' rows)",
                    value=bool(defaults.get("balance")),
                    interactive=allowed,
                )
                if "eval_generate" in defaults:
                    fields["eval_generate"] = gr.Checkbox(
                        label="Also evaluate in generate mode after training (slow on a CPU)",
                        value=bool(defaults.get("eval_generate")),
                        interactive=allowed,
                    )
            with gr.Row():
                start = gr.Button(
                    "Start training", variant="primary", interactive=allowed, elem_id="train-start"
                )
                stop = gr.Button("Stop", variant="stop", interactive=allowed, elem_id="train-stop")
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

    def form_values(data: dict) -> dict[str, Any]:
        """The form as TrainConfig fields: empty numbers are None, the 4-bit choice a bool or None."""
        values: dict[str, Any] = {}
        for name, component in fields.items():
            value = data[component]
            if name == "load_in_4bit":
                value = FOUR_BIT.get(value)
            elif isinstance(value, str):
                value = value.strip() or None
            elif isinstance(value, float) and value.is_integer() and component.precision == 0:
                value = int(value)
            values[name] = value
        values["model"] = values["model"] or state.settings.model
        values["data"] = values["data"] or paths.default_data()
        return values

    def render(name_: str | None):
        """(viewed, status, progress, curve, tail, run picker, timer) for the viewed run."""
        try:
            st = training_status(state, name_)
        except Exception as exc:
            return (name_, f"⚠️ {exc}", 0, plots.empty("Training loss"), "", gr.skip(), gr.Timer(active=False))
        run = st["run"]
        shipped = state.shipped_run()
        names = [r.name for r in state.list_runs()] + ([shipped.name] if shipped is not None else [])
        if run is None:
            return (
                None,
                status_line(st),
                0,
                plots.empty("Training loss"),
                "",
                gr.Dropdown(choices=names),
                gr.Timer(active=False),
            )
        records = st["records"]
        lines = [format_record(r) for r in records[-TAIL:]]
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
        )

    shown = [viewed, status, progress, curve, tail, run_pick, timer]

    def on_start(data: dict):
        try:
            info = start_training(state, form_values(data))
        except Exception as exc:
            warn(exc)
            active = state.runner.active() if allowed else None
            return render(active.name if active else None)  # attach to the run that is training, if any
        gr.Info(f"training started: {info['name']}")
        return render(info["name"])

    start.click(on_start, set(fields.values()), shown, api_visibility="private", concurrency_limit=None)

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

    timer.tick(
        render, [viewed], shown, api_visibility="private", concurrency_limit=None, show_progress="hidden"
    )
    run_pick.input(render, [run_pick], shown, api_visibility="private", concurrency_limit=None)
    refresh.click(render, [viewed], shown, api_visibility="private", concurrency_limit=None)

    def on_load():
        """Reattach after a reload: the running job if any, else the newest run."""
        active = state.runner.active() if allowed else None
        return render(active.name if active else None)

    @api_endpoint
    def train_start(config: dict) -> dict:
        """Start a training run; `config` holds TrainConfig fields (model, data, train_size, epochs, ...)."""
        return start_training(state, config or {})

    @api_endpoint
    def train_stop() -> dict:
        """Stop the running training (its adapter so far is saved): {stopped, run}."""
        return stop_training(state)

    @api_endpoint
    def train_status(name: str = "", since: int = 0) -> dict:
        """A run's status, log records from line `since`, and progress; no name = the running/newest run."""
        return training_status(state, name or None, since)

    gr.api(train_start, api_name="train_start", concurrency_limit=None)
    gr.api(train_stop, api_name="train_stop", concurrency_limit=None)
    gr.api(train_status, api_name="train_status", concurrency_limit=None)
    return {"on_load": on_load, "outputs": shown}
