"""The page: header, model/adapter picker with the loading status, and the tabs; plus launch options.

The status line polls the loader on a timer while a model loads, so a fresh machine shows progress
(embedded model conversion, downloads) instead of a blank page. The `status` and `load_model` API
endpoints expose the same to gradio_client.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from gemma_emotion.settings import NO_ADAPTER
from gemma_emotion.ui import classify, compare, evaluate, label, train
from gemma_emotion.ui.common import api_endpoint, md, warn
from gemma_emotion.ui.state import AppState

TITLE = "Gemma Emotion"
INTRO = (
    "Label short English texts as **sadness, joy, love, anger, fear or surprise** (or with labels of your "
    "own) with a Gemma model, compare the base model with its LoRA fine-tune, train your own adapter and "
    "evaluate it."
)
CSS = """
#classify-label textarea { font-size: 1.6em; font-weight: 700; }
#model-status { min-height: 2.5em; }
#label-buttons button { white-space: nowrap; padding-left: 4px; padding-right: 4px; }
#label-text textarea { font-size: 1.15em; }
"""
STATUS_POLL_S = 1.0


def status_markdown(status: dict[str, Any]) -> str:
    """One line about the model: loading with stage and percent, ready, or the error (all escaped)."""
    serving = ""
    if status.get("model"):
        adapter = status.get("adapter")
        serving = f"**{md(status['model'])}**" + (
            f" + adapter `{md(_short(adapter))}`" if adapter else " (no adapter)"
        )
        serving += f" on {md(status.get('device') or '?')}"
    state = status.get("state")
    if state == "loading":
        pct = round(100 * float(status.get("fraction") or 0))
        line = (
            f"⏳ Loading **{md(status.get('requested_model'))}**: {md(status.get('stage') or '')} ({pct} %). "
            "The page works meanwhile; model requests wait for the load."
        )
        if serving:
            line += f" Serving {serving} until then."
        return line
    if state == "error":
        # Name the adapter too: when only the adapter failed, the model itself was not at fault.
        asked = status.get("requested_adapter")
        what = f"**{md(status.get('requested_model'))}**"
        what += f" with adapter `{md(_short(asked))}`" if asked else ""
        line = f"❌ Could not load {what}: {md(status.get('error'))}."
        return line + (f" Still serving {serving}." if serving else " No model is loaded.")
    if state == "ready":
        took = status.get("seconds")
        return f"✅ {serving}" + (f" (loaded in {took:.0f} s)" if isinstance(took, (int, float)) else "")
    return "Model not loaded yet."


def _short(path: str) -> str:
    parts = str(path).rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 else str(path)


def build_app(state: AppState) -> gr.Blocks:
    """The whole app for one AppState (queue and launch are the caller's)."""
    settings = state.settings
    demo_mode = settings.demo_mode
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# 🎭 {TITLE}\n{INTRO}")
        if settings.storage_warning:
            gr.Markdown(f"⚠️ {md(settings.storage_warning)}")
        status = gr.Markdown(status_markdown(state.status()), elem_id="model-status")
        status_timer = gr.Timer(STATUS_POLL_S, active=True)
        with gr.Accordion("Model and adapter", open=False):
            with gr.Row():
                model = gr.Dropdown(
                    choices=state.model_choices(),
                    value=settings.model,
                    label="Model",
                    allow_custom_value=not demo_mode,
                    elem_id="model-picker",
                    info="embedded (Gemma 3 270M shipped on PyPI), a Hub id"
                    + ("" if demo_mode else ", or a local folder"),
                )
                adapter = gr.Dropdown(
                    choices=state.adapter_choices(),
                    value=state.initial_adapter() or NO_ADAPTER,
                    label="Adapter",
                    allow_custom_value=not demo_mode,
                    elem_id="adapter-picker",
                    info="a LoRA adapter: shipped, or from a training run",
                )
            load = gr.Button("Load", variant="secondary", elem_id="model-load")

        with gr.Tabs() as tabs:
            with gr.Tab("Classify", id="classify"):
                classify_parts = classify.build(state)
            with gr.Tab("Compare", id="compare"):
                compare_parts = compare.build(state)
            with gr.Tab("Train", id="train"):
                train_parts = train.build(state)
            with gr.Tab("Evaluate", id="evaluate"):
                eval_parts = evaluate.build(state)
            with gr.Tab("Label", id="label"):
                label_parts = label.build(state)
        label.connect_wrong(state, label_parts, classify_parts, "classify", tabs)
        label.connect_wrong(state, label_parts, compare_parts, "compare", tabs)

        def poll():
            st = state.status()
            # The Label tab's buttons follow the label set of the model now serving.
            return status_markdown(st), gr.Timer(active=st["state"] == "loading"), list(state.labels.names)

        poll_outputs = [status, status_timer, label_parts["names"]]
        status_timer.tick(
            poll,
            None,
            poll_outputs,
            api_visibility="private",
            concurrency_limit=None,
            show_progress="hidden",
        )

        def on_load_model(model_v: str, adapter_v: str | None):
            try:
                state.load(model_v, adapter_v)
            except Exception as exc:
                warn(exc)
            return poll()

        load.click(
            on_load_model,
            [model, adapter],
            poll_outputs,
            api_visibility="private",
            concurrency_limit=None,
        )

        def adapter_update(current: str | None = None):
            choices = state.adapter_choices()
            values = {v for _, v in choices}
            if current and current not in values and not demo_mode:
                choices.append((current, current))
            return gr.Dropdown(choices=choices, value=current if current else NO_ADAPTER)

        def adapter_for_model(model_v: str | None, adapter_v: str | None):
            # Picking `embedded` with no adapter chosen brings its shipped adapter; picking another model
            # drops the shipped adapter, which fits the embedded model only.
            default, shipped = state.default_adapter(model_v), state.default_adapter("embedded")
            if adapter_v in (None, "", NO_ADAPTER) and default:
                return adapter_update(default)
            if adapter_v == shipped and default != shipped:
                return adapter_update(NO_ADAPTER)
            return gr.skip()

        model.input(
            adapter_for_model,
            [model, adapter],
            [adapter],
            api_visibility="private",
            concurrency_limit=None,
            show_progress="hidden",
        )

        adapter.focus(
            adapter_update,
            [adapter],
            [adapter],
            api_visibility="private",
            concurrency_limit=None,
            show_progress="hidden",
        )

        def on_page_load():
            st = state.status()
            current = state.model.adapter if state.model is not None else state.initial_adapter()
            out = [status_markdown(st), gr.Timer(active=st["state"] == "loading"), adapter_update(current)]
            out.append(compare_parts["refresh_runs"]())
            out.append(eval_parts["on_load"]())
            out.append(label_parts["refresh_reports"]())
            out.append(list(state.labels.names))
            out.extend(label_parts["page_load"]())
            if train_parts:
                out.extend(train_parts["on_load"]())
            return tuple(out)

        load_outputs = [status, status_timer, adapter, compare_parts["run"], eval_parts["earlier"]]
        load_outputs += [label_parts["report"], label_parts["names"], *label_parts["page_load_outputs"]]
        if train_parts:
            load_outputs += train_parts["outputs"]
        app.load(on_page_load, None, load_outputs, api_visibility="private", concurrency_limit=None)

        @api_endpoint
        def status_api() -> dict:
            """The loader's status: state (loading/ready/error), model, adapter, stage, fraction, error."""
            return state.status()

        @api_endpoint
        def load_model(model: str, adapter: str = "") -> dict:
            """Load another model and/or adapter in the background; poll `status` for progress.

            adapter: a folder from `adapters`, "none" for the bare model, or empty for the model's default
            (the shipped adapter for `embedded`).
            """
            state.load(model, adapter if adapter and adapter.strip() else state.default_adapter(model))
            return state.status()

        @api_endpoint
        def adapters() -> list[dict]:
            """The adapters that can be loaded: [{label, value}] (value is what load_model takes)."""
            return [{"label": label, "value": value} for label, value in state.adapter_choices()]

        gr.api(status_api, api_name="status", concurrency_limit=None)
        gr.api(load_model, api_name="load_model", concurrency_limit=None)
        gr.api(adapters, api_name="adapters", concurrency_limit=None)
    return app


def launch_options(state: AppState) -> dict[str, Any]:
    """Keyword arguments for Blocks.launch that follow from the settings (theme, css, keys, upload limit)."""
    return {
        "theme": gr.themes.Soft(),
        "css": CSS,
        "js": label.keyboard_js(),
        "max_file_size": f"{state.settings.max_upload_mb}mb",
        "show_error": True,
    }
