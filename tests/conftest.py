"""Shared fixtures: tiny random Gemma 3 / Gemma 4 checkpoints (seconds on CPU) and the emotion data.

The data comes from the copy bundled in the package, so the suite needs nothing outside the repository;
`../shared/data/emotion` is only read by the test that checks the bundled copy equals it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny.py
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # label_set_data.py builds the label-set data files

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "emotion"
if not SHARED_DATA.is_dir():  # CI clones elsewhere, with shared/ beside the clone
    SHARED_DATA = Path(os.environ.get("GEMMA_EMOTION_SHARED_DATA", Path.cwd().parent / "shared/data/emotion"))


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; never `playwright install`
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded: loads the real embedded Gemma 3 270M (slow, needs the GGUF)"
    )
    config.addinivalue_line("markers", "browser: drives a real headless Chromium")


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> Path:
    """dair-ai/emotion as a folder of train/validation/test JSONL files ({"text", "label"} a line), written
    once a session from the bundled copy: the same rows as ../shared/data/emotion (test_bundled_data.py
    checks that where the folder exists). A missing bundled copy fails, never skips."""
    from gemma_emotion.paths import BUNDLED_DATA
    from gemma_emotion.sources import BUNDLED_SPLITS

    folder = tmp_path_factory.mktemp("emotion")
    for split in BUNDLED_SPLITS:
        file = BUNDLED_DATA / f"{split}.parquet"
        if not file.is_file():
            pytest.fail(f"the bundled dataset is missing {file}: run scripts/bundle_emotion.py")
        rows = pq.read_table(file).to_pylist()
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"text": r["text"], "label": int(r["label"])}) + "\n" for r in rows)
    return folder


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory, shared_data) -> Path:
    from tiny import make_gemma3

    return make_gemma3(tmp_path_factory.mktemp("tiny-gemma3"), shared_data / "train.jsonl")


@pytest.fixture(scope="session")
def tiny_gemma4(tmp_path_factory, shared_data) -> Path:
    from tiny import make_gemma4

    return make_gemma4(tmp_path_factory.mktemp("tiny-gemma4"), shared_data / "train.jsonl")


@pytest.fixture(scope="session")
def tiny_gemma4_mm(tmp_path_factory, shared_data) -> Path:
    """A multimodal Gemma 4 checkpoint whose vision tower uses Gemma4ClippableLinear."""
    from tiny import make_gemma4

    return make_gemma4(
        tmp_path_factory.mktemp("tiny-gemma4-mm"), shared_data / "train.jsonl", multimodal=True
    )


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every browser test; missing it fails CI rather than skipping there."""
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


# Label names of the label-set tests that the tiny vocabulary would otherwise read as unknown words.
LABEL_SET_WORDS = (
    "negative",
    "positive",
    "surprise",
    "neutral",
    "very",
    "happy",
    "sad",
    "Very",
    "Happy",
    "Sad",
)


@pytest.fixture(scope="session")
def tiny_words3(tmp_path_factory, shared_data) -> Path:
    """A tiny Gemma 3 whose vocabulary also holds LABEL_SET_WORDS."""
    from tiny import make_gemma3

    out = tmp_path_factory.mktemp("tiny-gemma3-words")
    return make_gemma3(out, shared_data / "train.jsonl", extra_words=LABEL_SET_WORDS)


@pytest.fixture(scope="session")
def tiny_words4(tmp_path_factory, shared_data) -> Path:
    """A tiny Gemma 4 (KV-shared layers) whose vocabulary also holds LABEL_SET_WORDS."""
    from tiny import make_gemma4

    out = tmp_path_factory.mktemp("tiny-gemma4-words")
    return make_gemma4(out, shared_data / "train.jsonl", extra_words=LABEL_SET_WORDS)


VALENCE = ["negative", "positive", "surprise"]


def write_csv(path: Path, rows: list[dict]) -> Path:
    """A CSV file of `rows` (dicts), header from the first row's keys."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def label_set_cli(*args: str, runs: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """`python -m gemma_emotion ARGS` with its runs folder; training a tiny model on 2 shared CPU cores
    takes minutes."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GEMMA_EMOTION_RUNS": str(runs)}
    command = [sys.executable, "-m", "gemma_emotion", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=timeout)


@pytest.fixture(scope="session")
def valence_file(tmp_path_factory, shared_data) -> Path:
    """Emotion rows mapped to valence (negative = sadness, anger, fear; positive = joy, love; surprise)."""
    from label_set_data import write_set

    out = write_set(shared_data, tmp_path_factory.mktemp("valence"), "valence", fmt="csv", limit=400)
    return out / "train.csv"


@pytest.fixture(scope="session")
def valence_run(tmp_path_factory, tiny_words3, valence_file) -> dict:
    """`train --labels negative,positive,surprise --train-size 96` through the CLI on the tiny model: the
    run the label-set tests of the CLI and of the app use (its adapter holds labels.json)."""
    runs = tmp_path_factory.mktemp("valence-runs")
    proc = label_set_cli(
        "train", "--model", str(tiny_words3), "--data", str(valence_file), "--labels", ",".join(VALENCE),
        "--train-size", "96", "--test-size", "24", "--name", "valence", runs=runs,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"runs": runs, "dir": runs / "valence", "adapter": runs / "valence" / "adapter", "proc": proc}
