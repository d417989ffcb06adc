"""gemma-emotion: teach a Gemma model to label text with one of six emotions.

The core package never imports gradio: it runs headless from the CLI and on a GPU host.
"""

from gemma_emotion.labels import LABELS, SYSTEM_PROMPT, parse_answer

__all__ = ["LABELS", "SYSTEM_PROMPT", "parse_answer"]
__version__ = "0.1.0"
