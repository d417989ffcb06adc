"""Shared fixtures: tiny random Gemma 3 / Gemma 4 checkpoints (seconds on CPU) and the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion"
if not SHARED_DATA.is_dir():  # CI clones elsewhere, with shared/ beside the clone
    SHARED_DATA = Path(os.environ.get("GEMMA_EMOTION_SHARED_DATA", Path.cwd().parent / "shared/data/emotion"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "embedded: loads the real embedded Gemma 3 270M (slow, needs the GGUF)")
    config.addinivalue_line("markers", "browser: drives a real headless Chromium")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "test.jsonl").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
