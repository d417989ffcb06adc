"""The Gradio app: one module per tab, the page layout, and the app state. The only gradio code there is.

`build_app` and `launch_options` are imported on first use, so `gemma_emotion.ui.state` (the app's model,
batcher and runner, which use no gradio) loads where gradio is not installed: benchmarks drive it on a
GPU host that has none.
"""

from typing import Any

__all__ = ["AppState", "build_app", "launch_options"]


def __getattr__(name: str) -> Any:
    if name in ("build_app", "launch_options"):
        from gemma_emotion.ui import layout

        return getattr(layout, name)
    if name == "AppState":
        from gemma_emotion.ui.state import AppState

        return AppState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
