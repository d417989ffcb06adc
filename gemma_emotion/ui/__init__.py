"""The Gradio app: one module per tab, the page layout, and the app state. The only gradio code there is."""

from gemma_emotion.ui.layout import build_app, launch_options
from gemma_emotion.ui.state import AppState

__all__ = ["AppState", "build_app", "launch_options"]
