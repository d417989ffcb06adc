"""Where things live on disk and which environment variables move them.

One place for every location the project reads or writes, so the CLI, the app and the tests agree.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_MODEL = "GEMMA_EMOTION_MODEL"  # default model spec when no --model is given
ENV_CACHE = "GEMMA_EMOTION_CACHE"  # converted embedded checkpoint and other caches
ENV_GGUF = "GEMMA_EMOTION_GGUF"  # explicit path of the embedded GGUF file
ENV_RUNS = "GEMMA_EMOTION_RUNS"  # runs directory (run folders, corrections database)
ENV_DATA = "GEMMA_EMOTION_DATA"  # default data source (Hub id, folder or file)

DEFAULT_MODEL = "embedded"
DEFAULT_DATA = "dair-ai/emotion"
PACKAGE_DIR = Path(__file__).resolve().parent
# Package data, so a clone and an installed wheel find them alike: example texts, the shipped adapter and
# the records of the run that trained it.
ASSETS = PACKAGE_DIR / "assets"
# The bundled copy of dair-ai/emotion (one Parquet file a split, its README and fingerprints).
BUNDLED_DATA = ASSETS / "emotion"
# The clone's root when the package runs from a clone (space.yaml, README.md); in an installed package this
# is site-packages, where those files are not.
REPO_ROOT = PACKAGE_DIR.parent


def cache_dir() -> Path:
    """The project's cache folder (created on demand)."""
    base = os.environ.get(ENV_CACHE) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gemma-emotion"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir(override: str | os.PathLike | None = None) -> Path:
    """The runs directory: the flag, else the environment, else ./runs."""
    return Path(override or os.environ.get(ENV_RUNS) or "runs")


def default_model() -> str:
    return os.environ.get(ENV_MODEL) or DEFAULT_MODEL


def default_data() -> str:
    return os.environ.get(ENV_DATA) or DEFAULT_DATA
