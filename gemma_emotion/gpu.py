"""ZeroGPU glue: wrap GPU work in `spaces.GPU(duration=...)` on a Space, leave it untouched elsewhere.

The `spaces` package is imported only when we are on a Space and it is installed, never at import time.
On ZeroGPU it must be imported before anything initialises CUDA, so app.py should call `load_spaces()`
(or decorate its GPU functions) before loading a model.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TypeVar

from gemma_emotion.settings import on_space

F = TypeVar("F", bound=Callable)


def load_spaces(env: Mapping[str, str] | None = None) -> ModuleType | None:
    """The `spaces` module on a Space where it is installed, else None."""
    if not on_space(os.environ if env is None else env):
        return None
    try:
        return importlib.import_module("spaces")
    except ImportError:
        return None


def gpu_task(duration: int, env: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Decorator factory: `spaces.GPU(duration=duration)` on a Space with `spaces`, else the identity."""
    if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
        raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
    spaces = load_spaces(env)
    if spaces is None:
        return _unchanged
    return spaces.GPU(duration=duration)


def _unchanged(fn: F) -> F:
    return fn
