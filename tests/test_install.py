"""The package installs: the wheel builds, installs into a fresh virtual environment, and its
`gemma-emotion` console script works from a folder outside the clone, the shipped adapter found as package
data. Slow (a wheel build and the embedded model on a CPU: minutes), and run with the suite all the same.

The venv sees this machine's packages (`--system-site-packages`) for the heavy dependencies, and the wheel
goes in with `--no-deps`; the embedded model's converted checkpoint is the user's cache, shared with every
other run on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gemma_emotion.labels import LABELS

REPO = Path(__file__).resolve().parents[1]
# What a clone holds that is not source: left out of the copy the wheel is built from.
NOT_SOURCE = (
    ".git",
    "runs",
    "out",
    "build",
    "*.egg-info",
    "__pycache__",
    "test-artifacts",
    ".venv",
    ".gpu",
    ".whl",
)


def _run(*args: str | Path, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_wheel_installs_and_its_console_script_classifies_from_outside_the_clone(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Built from a copy, so that the clone gets no build/ or egg-info of setuptools'.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    dist = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        source,
        "-w",
        dist,
        cwd=tmp_path,
        env=env,
        timeout=900,
    )
    (wheel,) = dist.glob("gemma_emotion-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=tmp_path, env=env, timeout=300)
    python, script = venv / "bin" / "python", venv / "bin" / "gemma-emotion"
    _run(python, "-m", "pip", "install", "--no-deps", wheel, cwd=tmp_path, env=env, timeout=600)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(
        python, "-c", "import gemma_emotion.paths as p; print(p.ASSETS)", cwd=elsewhere, env=env, timeout=120
    )
    assets = Path(where.stdout.strip())
    assert assets.is_relative_to(venv) and (assets / "adapter" / "adapter_model.safetensors").is_file()

    shown = _run(script, "--help", cwd=elsewhere, env=env, timeout=120)
    assert "classify" in shown.stdout and "train" in shown.stdout

    answer = _run(script, "classify", "i am so happy", "--json", cwd=elsewhere, env=env, timeout=900)
    prediction = json.loads(answer.stdout.strip().splitlines()[-1])
    assert prediction["label"] in LABELS and prediction["valid"] is True
    assert set(prediction["probabilities"]) == set(LABELS)
    assert not any(elsewhere.iterdir())  # nothing written where it ran
