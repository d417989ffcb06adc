"""Where a data name leads: `dair-ai/emotion` to the Hugging Face Hub when it answers, else to the copy
bundled in `gemma_emotion/assets/emotion/`.

The decision takes one quick look at the Hub (skipped when HF_HUB_OFFLINE is set), bounded well under 2 s,
made once a process and remembered, and it comes with a note saying which copy was used, for the CLI to
print and the app to show. Every other name (a folder, a file, another Hub id) is passed through as is.
The copy itself is built by `bundle.py`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gemma_emotion import paths

HUB_DATASET = "dair-ai/emotion"
BUNDLED_SPLITS = ("train", "validation", "test")
FINGERPRINTS_FILE = "fingerprints.json"
HUB_PROBE_TIMEOUT_S = 1.5  # one look at the Hub; the whole decision stays under 2 s


# -- the decision --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceChoice:
    """What a data name resolves to: the thing to read, where it comes from, and a note for the user.

    `seconds` is the time spent deciding (the Hub probe for `dair-ai/emotion`; 0 for anything else)."""

    name: str
    ref: str
    origin: Literal["hub", "bundled", "local"]
    note: str | None = None
    seconds: float = 0.0


_hub_lock = threading.Lock()
_hub_problems: dict[str, str | None] = {}  # Hub dataset id -> None (answered) or why it did not


def is_bundled_name(source: str | os.PathLike) -> bool:
    """True for the Hub id whose copy is bundled (any case), when no local file or folder has that name."""
    text = str(source).strip()
    return text.lower() == HUB_DATASET and not Path(text).expanduser().exists()


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as the environment says now."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {
        "1", "true", "yes", "on"
    }  # fmt: skip


def choose_source(source: str | os.PathLike) -> SourceChoice:
    """Resolve a data name: `dair-ai/emotion` to the Hub when it answers, else to the bundled copy."""
    text = str(source).strip()
    if not is_bundled_name(text):
        origin = "local" if Path(text).expanduser().exists() else "hub"
        return SourceChoice(text, text, origin)
    start = time.monotonic()
    problem, remembered = _hub_problem(HUB_DATASET)
    seconds = time.monotonic() - start
    how = "remembered from earlier in this process" if remembered else f"decided in {seconds:.2f} s"
    if problem is None:
        note = f"{HUB_DATASET}: from the Hugging Face Hub (it answered; {how})"
        return SourceChoice(text, HUB_DATASET, "hub", note, seconds)
    note = f"{HUB_DATASET}: the bundled copy in {_shown_path(paths.BUNDLED_DATA)} ({problem}; {how})"
    return SourceChoice(text, str(paths.BUNDLED_DATA), "bundled", note, seconds)


def _shown_path(path: Path) -> str:
    try:
        return str(path.relative_to(paths.REPO_ROOT))
    except ValueError:
        return str(path)


def _hub_problem(repo_id: str) -> tuple[str | None, bool]:
    """(None when the Hub answers for `repo_id`, else why not; whether that was remembered). Asked once a
    process: the answer is kept, so nothing waits on the network twice (callers queue on the lock rather
    than probe side by side)."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set", False
    with _hub_lock:
        if repo_id in _hub_problems:
            return _hub_problems[repo_id], True
        _hub_problems[repo_id] = _probe_hub(repo_id, HUB_PROBE_TIMEOUT_S)
        return _hub_problems[repo_id], False


def _probe_hub(repo_id: str, timeout: float) -> str | None:
    # A thread with a deadline rather than only the HTTP timeout: name resolution on a machine with no
    # network can block for many seconds, and no HTTP client timeout covers it.
    from huggingface_hub import HfApi

    outcome: list[BaseException | None] = []

    def ask() -> None:
        try:
            HfApi().dataset_info(repo_id, timeout=timeout)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - any failure means "use the bundled copy"
            outcome.append(exc)

    worker = threading.Thread(target=ask, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.2)
    if not outcome or "Timeout" in type(outcome[0]).__name__:
        return f"the Hub did not answer within {timeout:g} s"
    if outcome[0] is not None:
        return f"the Hub is not reachable: {type(outcome[0]).__name__}"
    return None


def remember_hub_failure(repo_id: str, problem: str) -> None:
    """The Hub answered the probe but loading failed: use the bundled copy for the rest of the process."""
    with _hub_lock:
        _hub_problems[repo_id] = problem


def forget_hub_decision() -> None:
    """Decide again on the next call (tests; a long-running app whose network came back)."""
    with _hub_lock:
        _hub_problems.clear()
