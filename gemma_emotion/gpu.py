"""ZeroGPU glue: wrap GPU work in `spaces.GPU(duration=...)` on a Space, leave it untouched elsewhere.

The `spaces` package is imported only when we are on a Space and it is installed, never at import time.
On ZeroGPU it must be imported before anything initialises CUDA, so app.py calls `load_spaces()` before
it loads a model (and before the app's GPU functions are decorated: see ui/state.py).

What `spaces.GPU` does on ZeroGPU (spaces 0.51, `spaces/zero/decorator.py` and `wrappers.py`), and what
follows for callers:
- It keeps ONE wrapper per function object (`decorated_cache`): decorating the same function again with
  another duration returns the first wrapper and its duration. Each kind of GPU work must therefore be
  its own function, decorated once.
- `duration` may be a number of seconds or a callable that gets the call's own arguments and returns the
  seconds to ask for (computed in the main process, before the GPU is requested).
- The call runs in a worker process forked from the main one. Its arguments go to the worker through a
  pickling queue and its result (or each value a generator yields) comes back the same way, so both must
  pickle; the worker sees the main process's memory as it was at the fork (the loaded model included).
- A worker that returned normally is kept and reused for later calls; one whose call raised is dropped,
  and the next call forks a fresh one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, TypeVar

from gemma_emotion.settings import on_space

F = TypeVar("F", bound=Callable)
Duration = int | Callable[..., int]
ENV_ZERO_GPU = "SPACES_ZERO_GPU"  # set to "true" by Hugging Face on ZeroGPU hardware (read by `spaces`)
NO_TRAINING_ON_ZERO_GPU = (
    "training needs a GPU for its whole run, in its own process; ZeroGPU lends one only inside a request, "
    "for minutes at most, so training is off here: duplicate the Space onto GPU hardware (an L4 or larger) "
    "to train"
)


def load_spaces(env: Mapping[str, str] | None = None) -> ModuleType | None:
    """The `spaces` module on a Space where it is installed, else None."""
    if not on_space(os.environ if env is None else env):
        return None
    try:
        return importlib.import_module("spaces")
    except ImportError:
        return None


def on_zero_gpu(env: Mapping[str, str] | None = None) -> bool:
    """True on ZeroGPU hardware: GPU work must then run inside a `spaces.GPU` function."""
    env = os.environ if env is None else env
    return on_space(env) and env.get(ENV_ZERO_GPU, "").lower() in ("1", "t", "true")


def gpu_task(duration: Duration, env: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Decorator factory: `spaces.GPU(duration=duration)` on a Space with `spaces`, else the identity.

    `duration` is seconds, or a callable given the call's arguments that returns seconds.
    """
    if not callable(duration) and (
        isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0
    ):
        raise ValueError(f"duration must be a positive number of seconds or a callable, got {duration!r}")
    spaces = load_spaces(env)
    if spaces is None:
        return _unchanged
    return spaces.GPU(duration=duration)


def is_wrapped(fn: Any) -> bool:
    """True when `spaces` wrapped `fn` for ZeroGPU (its wrappers carry a `zerogpu` attribute)."""
    return hasattr(fn, "zerogpu")


def _unchanged(fn: F) -> F:
    return fn
