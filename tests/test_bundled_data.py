"""The bundled copy of dair-ai/emotion and the Hub-or-bundled decision.

The copy must hold exactly the rows of ../shared/data/emotion (read when that folder is beside the clone,
else its recorded fingerprints), match its own recorded fingerprints, and be rebuilt byte for byte by its
script.
`dair-ai/emotion` must lead to the bundled copy in under 2 s when the Hub cannot be reached, however it
fails (HF_HUB_OFFLINE, a refused connection, a server that never answers), remember that, say so, and
fall back when the Hub answered but the download failed. The CLI prints the decision and its time.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA

from gemma_emotion import sources
from gemma_emotion.data import fingerprint, label_counts, load_split, read_split, resolve_source
from gemma_emotion.paths import BUNDLED_DATA

REPO = Path(__file__).resolve().parents[1]
CARD_COUNTS = {  # the dataset card's table (../shared/data/emotion/README.md)
    "train": {"sadness": 4666, "joy": 5362, "love": 1304, "anger": 2159, "fear": 1937, "surprise": 572},
    "validation": {"sadness": 550, "joy": 704, "love": 178, "anger": 275, "fear": 212, "surprise": 81},
    "test": {"sadness": 581, "joy": 695, "love": 159, "anger": 275, "fear": 224, "surprise": 66},
}


@pytest.fixture(autouse=True)
def fresh_decision(monkeypatch):
    """Every test decides anew, with HF_HUB_OFFLINE unset unless it sets it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    sources.forget_hub_decision()
    yield
    sources.forget_hub_decision()


# -- the copy -------------------------------------------------------------------------------------------
# The rows of ../shared/data/emotion (dair-ai/emotion's split), read with `fingerprint` on 2026-12-02.
SHARED_ROWS = {
    "train": (16000, "11b9972eee334292"),
    "validation": (2000, "08209696bacc9a57"),
    "test": (2000, "13b36536800fad76"),
}


def test_bundled_rows_equal_the_shared_folder():
    """The bundled copy holds the shared folder's rows. Where ../shared is beside the clone it is read and
    must still give the recorded fingerprints; where it is not, the recorded ones stand in for it."""
    for split in sources.BUNDLED_SPLITS:
        bundled = load_split(BUNDLED_DATA, split)
        assert (len(bundled), fingerprint(bundled)) == SHARED_ROWS[split], split
        if (SHARED_DATA / f"{split}.jsonl").is_file():
            shared = load_split(SHARED_DATA, split)
            assert (len(shared), fingerprint(shared)) == SHARED_ROWS[split], split


def test_bundled_copy_has_the_card_counts_and_its_recorded_fingerprints():
    recorded = json.loads((BUNDLED_DATA / sources.FINGERPRINTS_FILE).read_text())
    for split, counts in CARD_COUNTS.items():
        ds = load_split(BUNDLED_DATA, split)
        assert label_counts(ds) == counts, split
        assert recorded[split] == {"rows": len(ds), "fingerprint": fingerprint(ds)}, split
    size = sum(f.stat().st_size for f in BUNDLED_DATA.glob("*.parquet"))
    assert size < 1.5 * 1024 * 1024  # compact: about 0.6 MB for 20,000 rows
    assert pq.read_metadata(BUNDLED_DATA / "train.parquet").row_group(0).column(0).compression == "ZSTD"
    card = (BUNDLED_DATA / "README.md").read_text()
    assert "Saravia" in card and "CARER" in card and "research" in card


def test_the_bundle_script_rebuilds_the_same_bytes(shared_data, tmp_path):
    """shared_data is the bundled copy written out as JSONL: building from it must give the shipped files."""
    out = tmp_path / "emotion"
    proc = subprocess.run(
        [sys.executable, "scripts/bundle_emotion.py", str(shared_data), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "16000 rows" in proc.stdout
    for name in [*(f"{s}.parquet" for s in sources.BUNDLED_SPLITS), sources.FINGERPRINTS_FILE]:
        assert (out / name).read_bytes() == (BUNDLED_DATA / name).read_bytes(), name


# -- the decision ---------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def black_hole():
    """A server that accepts connections and never answers: the worst network for a probe."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def _use_endpoint(monkeypatch, url: str) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", url)


def test_offline_flag_picks_the_bundled_copy_at_once(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was asked although HF_HUB_OFFLINE is set")

    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    choice = sources.choose_source("dair-ai/emotion")
    assert choice.origin == "bundled" and Path(choice.ref) == BUNDLED_DATA
    assert choice.seconds < 0.1
    assert "bundled copy" in choice.note and "HF_HUB_OFFLINE" in choice.note


@pytest.mark.parametrize("network", ["refused", "silent"])
def test_an_unreachable_hub_is_decided_in_under_two_seconds_and_remembered(monkeypatch, black_hole, network):
    _use_endpoint(monkeypatch, black_hole if network == "silent" else f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    first = sources.choose_source("dair-ai/emotion")
    elapsed = time.monotonic() - start
    assert first.origin == "bundled"
    assert elapsed < 2.0 and first.seconds < 2.0
    assert re.search(r"decided in \d\.\d\d s", first.note)
    if network == "silent":
        assert "did not answer within 1.5 s" in first.note
    start = time.monotonic()
    second = sources.choose_source("DAIR-AI/emotion")  # any case
    assert time.monotonic() - start < 0.1  # remembered: no second wait
    assert second.origin == "bundled" and "remembered" in second.note
    table = read_split("dair-ai/emotion", "test")
    assert len(table.ds) == 2000 and "bundled copy" in table.note


def test_a_hub_that_answers_is_used_and_a_failed_download_falls_back(monkeypatch):
    import datasets

    asked: list[str] = []
    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", lambda self, repo, **kw: asked.append(repo))
    assert sources.choose_source("dair-ai/emotion").origin == "hub"
    assert resolve_source("dair-ai/emotion", "test").kind == "hub"

    def failing(*args, **kwargs):
        raise ConnectionError("the download broke off")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    table = read_split("dair-ai/emotion", "validation")
    assert len(table.ds) == 2000  # the bundled rows
    assert "the bundled copy" in table.note and "the Hub failed: ConnectionError" in table.note
    after = sources.choose_source("dair-ai/emotion")
    assert after.origin == "bundled" and "the Hub failed: ConnectionError" in after.note
    assert asked == ["dair-ai/emotion"]  # probed once; the failure is remembered


def test_other_names_are_not_probed(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", lambda *a, **k: pytest.fail("probed"))
    assert sources.choose_source("someone/other-dataset").origin == "hub"
    assert sources.choose_source(str(tmp_path)).origin == "local"
    (tmp_path / "dair-ai").mkdir()
    (tmp_path / "dair-ai" / "emotion").mkdir()
    monkeypatch.chdir(tmp_path)
    assert sources.choose_source("dair-ai/emotion").origin == "local"  # a folder of that name wins


# -- the CLI, offline -----------------------------------------------------------------------------------
@pytest.mark.timeout(600)
@pytest.mark.parametrize("network", ["HF_HUB_OFFLINE=1", "silent Hub"])
def test_eval_on_the_default_data_finishes_offline_and_reports_the_decision_time(
    tiny_gemma3, black_hole, tmp_path, network
):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "GEMMA_EMOTION_DATA")}
    if network == "HF_HUB_OFFLINE=1":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = black_hole  # a network where the Hub never answers
    cmd = [sys.executable, "-m", "gemma_emotion", "eval", "--data", "dair-ai/emotion", "--limit", "50",
           "--model", str(tiny_gemma3), "--out", str(tmp_path / "eval")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"data: dair-ai/emotion: the bundled copy .*decided in (\d+\.\d+) s", proc.stderr)
    assert found, proc.stderr[-3000:]
    assert float(found.group(1)) < 2.0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 50
    assert "bundled copy" in metrics["data_note"]
