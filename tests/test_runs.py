"""Runs you can resume, compare and repeat (CPU, tiny model): a run killed hard after a checkpoint resumes
to the losses of an uninterrupted one, refusals say why, early stopping ends a run whose validation loss
stopped improving and says so, `runs --compare` sets runs side by side, the command a config amounts to
reads back as the same config, and the pieces under them (checkpoint plan, log rewind, training order,
smoothing, tracker plumbing)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemma_emotion.config import ConfigError, TrainConfig, command_line
from gemma_emotion.runfolder import CHECKPOINT_STATE, CHECKPOINTS_DIR, LOG_FILE
from gemma_emotion.runs import Runner, RunRegistry

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 600  # the suite shares 2 CPU cores with whatever else runs


def _wait_for(predicate, what: str, timeout: float = WAIT_S, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "gemma_emotion", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=WAIT_S)


def _main(*argv: str) -> tuple[int, str, str]:
    """The CLI in this process: exit code, stdout, stderr."""
    from gemma_emotion.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _train_steps(run_dir: Path) -> list[int]:
    from gemma_emotion.runfolder import read_log

    return [r["step"] for r in read_log(run_dir / LOG_FILE)[0] if r.get("kind") == "train"]


def _adapter_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


# -- the config's new options --------------------------------------------------------------------------------
def test_early_stopping_needs_evaluations_and_checkpoints_at_them():
    with pytest.raises(ConfigError, match="early stopping watches the validation loss: set eval steps"):
        TrainConfig(early_stopping_patience=2).validate()
    with pytest.raises(ConfigError, match=r"save steps \(3\) must be a multiple of eval steps \(2\)"):
        TrainConfig(early_stopping_patience=2, eval_steps=2, save_steps=3).validate()
    TrainConfig(early_stopping_patience=2, eval_steps=2, save_steps=4).validate()
    with pytest.raises(ConfigError, match="save steps must be a whole number >= 1"):
        TrainConfig(save_steps=0).validate()


def test_a_tracker_that_is_not_installed_is_named_with_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trackio" else real(name)
    )
    with pytest.raises(ConfigError, match=r"the trackio package is not installed \(pip install trackio\)"):
        TrainConfig(report_to="trackio").validate()
    with pytest.raises(ConfigError, match="report to must be one of none, trackio, tensorboard, got 'wandb'"):
        TrainConfig(report_to="wandb").validate()
    code, _, err = _main("train", "--report-to", "trackio", "--runs-dir", "/nonexistent-runs")
    assert code == 2 and "pip install trackio" in err and "Traceback" not in err


def test_the_tracker_and_the_checkpoints_reach_the_trainer_arguments():
    from gemma_emotion.plan import TrainPlan
    from gemma_emotion.trainer import training_arguments

    plan = TrainPlan("cpu", 8, 1, False, False, False, False, "adamw_torch", save_steps=3)
    config = TrainConfig(report_to="trackio", eval_steps=3, early_stopping_patience=2)
    args = training_arguments(config, plan, 80, "/tmp/out", evaluate=True, run_name="r1")
    assert args.report_to == ["trackio"] and (args.project, args.run_name) == ("gemma-emotion", "r1")
    assert (args.save_strategy, args.save_steps, args.save_total_limit) == ("steps", 3, 2)
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss"
    assert args.greater_is_better is False and args.restore_callback_states_from_checkpoint
    plain = training_arguments(TrainConfig(), plan, 80, "/tmp/out")
    assert plain.report_to == []  # "none": no tracker callback
    assert not plain.load_best_model_at_end and plain.eval_strategy == "no"


def test_the_plan_saves_about_every_tenth_of_the_run_and_on_a_gpu_every_minute():
    from gemma_emotion.plan import TrainPlan, plan_checkpoints

    def planned(device: str, config: TrainConfig, steps: int) -> TrainPlan:
        plan = TrainPlan(device, 8, 1, False, False, False, False, "adamw_torch")
        return plan_checkpoints(plan, config, steps)

    cpu = planned("cpu", TrainConfig(), 125)
    assert (cpu.save_steps, cpu.save_every_s) == (13, None) and "every 13 steps" in cpu.notes[-1]
    gpu = planned("cuda", TrainConfig(), 125)
    assert (gpu.save_steps, gpu.save_every_s) == (13, 60.0) and "at least every 60 s" in gpu.notes[-1]
    assert planned("cpu", TrainConfig(), 3).save_steps == 1
    early = planned("cuda", TrainConfig(eval_steps=5, early_stopping_patience=2), 1000)
    assert early.save_steps == 5  # every evaluation: the best one must be on disk to be kept
    given = planned("cuda", TrainConfig(save_steps=7), 1000)
    assert (given.save_steps, given.save_every_s) == (7, None)  # an explicit setting wins


# -- the command a config amounts to -------------------------------------------------------------------------
def _parse_train(*argv: str):
    import argparse

    from gemma_emotion.cli.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_command_reads_back_as_the_same_config_on_any_device(device, monkeypatch):
    from gemma_emotion import plan
    from gemma_emotion.cli.train import config_from_args

    monkeypatch.setattr(plan, "_device_type", lambda: device)
    configs = [
        TrainConfig(model="embedded", data="dair-ai/emotion"),
        TrainConfig(
            model="my model",
            data="a b.jsonl",
            train_size=None,
            epochs=2.5,
            learning_rate=3e-4,
            test_size=None,
            load_in_4bit=False,
            balance=True,
            lora_alpha=24,
            eval_steps=5,
            early_stopping_patience=3,
            save_steps=10,
            report_to="tensorboard",
            name="r-1",
        ),  # fmt: skip
        TrainConfig(model="embedded", data="d", train_size=1000, eval_generate=True, seed=7),
    ]
    for config in configs:
        command = command_line(config)
        words = shlex.split(command)
        assert words[:4] == ["python", "-m", "gemma_emotion", "train"]
        assert config_from_args(_parse_train(*words[4:])) == config, command
    assert "--train-size all" in command_line(configs[1]) and "--no-load-in-4bit" in command_line(configs[1])
    assert command_line(configs[0]).endswith("--model embedded --data dair-ai/emotion --train-size all")


# -- the run folder: the log rewound, half-written checkpoints -----------------------------------------------
def test_rewinding_a_run_drops_later_log_lines_and_checkpoints_and_half_written_ones(tmp_path):
    from gemma_emotion.resume import rewind
    from gemma_emotion.runfolder import append_log, checkpoints, last_checkpoint

    for step in range(1, 7):
        append_log(tmp_path / LOG_FILE, {"kind": "train", "step": step, "loss": 1.0 / step})
        if step % 2 == 0:
            append_log(tmp_path / LOG_FILE, {"kind": "eval", "step": step, "eval_loss": 2.0})
    with open(tmp_path / LOG_FILE, "a") as fh:
        fh.write('{"kind": "train", "step": 7, "lo')  # killed mid-line
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / CHECKPOINTS_DIR / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / CHECKPOINT_STATE).write_text(json.dumps({"step": step}))
    assert last_checkpoint(tmp_path) == (4, tmp_path / CHECKPOINTS_DIR / "checkpoint-4")

    dropped = rewind(tmp_path, 2)
    lines = (tmp_path / LOG_FILE).read_text().splitlines()
    assert [(r["kind"], r["step"]) for r in map(json.loads, lines)] == [
        ("train", 1),
        ("train", 2),
        ("eval", 2),
    ]
    assert dropped == 4 + 2 + 1  # steps 3-6, two evaluations, the half line
    assert checkpoints(tmp_path, complete=False) == [(2, tmp_path / CHECKPOINTS_DIR / "checkpoint-2")]


def test_the_training_order_is_the_seed_and_the_epochs_alone():
    import torch

    from gemma_emotion.sampling import EpochSeededLengthSampler

    lengths = [5 + (i * 7) % 23 for i in range(200)]
    a, b = EpochSeededLengthSampler(lengths, 8, seed=3), EpochSeededLengthSampler(lengths, 8, seed=3)
    torch.manual_seed(123)  # the global random state has no say
    first = list(a)
    torch.manual_seed(456)
    assert list(b) == first and sorted(first) == list(range(200))
    a.set_epoch(1)
    second = list(a)
    assert second != first and sorted(second) == list(range(200))
    b.set_epoch(1)
    assert list(b) == second
    assert list(EpochSeededLengthSampler(lengths, 8, seed=4)) != first


# -- plots ---------------------------------------------------------------------------------------------------
def test_smoothing_is_tensorboards_debiased_moving_average():
    from gemma_emotion.ui.plots import smooth

    values = [4.0, 2.0, 3.0, 1.0, 0.5, 0.7]
    for weight in (0.0, 0.3, 0.6, 0.95):
        last, expected = 0.0, []
        for n, v in enumerate(values, 1):  # TensorBoard's scalar smoothing, as its dashboard computes it
            last = last * weight + (1 - weight) * v
            expected.append(last / (1 - weight**n))
        assert smooth(values, weight) == pytest.approx(expected)
    assert smooth(values, 0.6)[0] == values[0]  # no pull towards 0 at the start


def test_compared_curves_share_one_log_scaled_axis_a_colour_a_run():
    from gemma_emotion.ui.plots import compare_curves, loss_curve

    runs = {
        "a": [{"step": s, "loss": 10 / s} for s in range(1, 6)] + [{"step": 5, "eval_loss": 2.5}],
        "b": [{"step": s, "loss": 8 / s} for s in range(1, 4)],
    }
    fig = compare_curves(runs, smoothing=0.5)
    shown = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in shown] == ["a", "a (validation)", "b"]
    assert fig.layout.yaxis.type == "log"
    raw = [t for t in fig.data if t.showlegend is False]
    assert len(raw) == 2 and list(raw[0].y) == [10 / s for s in range(1, 6)]  # the raw points faint behind
    assert shown[0].line.color == shown[1].line.color != shown[2].line.color
    assert len(compare_curves(runs, smoothing=0.0).data) == 3
    assert loss_curve(runs["a"]).layout.yaxis.type == "log"


def test_the_errors_of_resume_and_compare_are_user_errors():
    from gemma_emotion.compare import CompareError
    from gemma_emotion.errors import UserError
    from gemma_emotion.resume import ResumeError

    assert issubclass(ResumeError, UserError) and issubclass(CompareError, UserError)


# -- a run killed hard, then resumed -------------------------------------------------------------------------
def _config(model: Path, data: Path, name: str, **kw) -> TrainConfig:
    """24 rows in batches of 8: 3 steps an epoch, 9 in all, a checkpoint every 2 steps (mid-epoch ones)."""
    values = dict(model=str(model), data=str(data), train_size=24, epochs=3, save_steps=2, test_size=8,
                  name=name)  # fmt: skip
    return TrainConfig(**{**values, **kw})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_gemma3, shared_data):
    """One runs folder for the module and a copy of the data (the refusal test changes it)."""
    root = tmp_path_factory.mktemp("resume")
    data = root / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        shutil.copy(shared_data / f"{split}.jsonl", data / f"{split}.jsonl")
    return {"dir": root / "runs", "data": data, "model": tiny_gemma3}


@pytest.fixture(scope="module")
def straight(runs):
    """The uninterrupted run, through the `train` command in this process."""
    c = _config(runs["model"], runs["data"], "straight")
    code, out, err = _main(*shlex.split(command_line(c))[3:], "--runs-dir", str(runs["dir"]))
    assert code == 0, (out, err)
    return RunRegistry(runs["dir"]).get("straight")


@pytest.fixture(scope="module")
def killed(runs, straight):
    """The same run started by the Runner and killed with SIGKILL once its first checkpoint is on disk
    and a later step is logged: a killed process, with log lines past its last checkpoint."""
    registry = RunRegistry(runs["dir"])
    info = Runner(runs["dir"]).start(_config(runs["model"], runs["data"], "killed"))
    run_dir = info.path
    _wait_for(
        lambda: (run_dir / CHECKPOINTS_DIR / "checkpoint-2" / CHECKPOINT_STATE).is_file(), "checkpoint 2"
    )
    _wait_for(lambda: max(_train_steps(run_dir), default=0) >= 3, "step 3")
    os.kill(info.pid, signal.SIGKILL)
    _wait_for(lambda: registry.get("killed").status != "running", "the process to die")
    dead = registry.get("killed")
    return {"info": dead, "steps_logged": _train_steps(run_dir)}


def test_a_killed_run_reads_as_failed_and_resumable(killed):
    info = killed["info"]
    assert info.status == "failed" and info.resumable and info.checkpoint_step >= 2
    assert info.adapter_dir is None  # no adapter yet: only checkpoints
    assert killed["steps_logged"][: info.checkpoint_step] == list(range(1, info.checkpoint_step + 1))
    assert max(killed["steps_logged"]) >= 3 > 2  # logged past the first checkpoint before it was killed


def test_a_resume_that_would_change_the_run_is_refused_with_the_reason(runs, killed):
    run_dir = killed["info"].path
    before = (run_dir / "run.json").read_text()
    # A setting given beside --resume.
    code, _, err = _main("train", "--resume", "killed", "--runs-dir", str(runs["dir"]), "--epochs", "5")
    assert code == 2 and "a resumed run keeps its settings, and --epochs (3 in the run)" in err
    # The record's settings edited by hand since the checkpoint.
    record = json.loads(before)
    record["config"]["lora_r"] = 4
    (run_dir / "run.json").write_text(json.dumps(record))
    code, _, err = _main("train", "--resume", "killed", "--runs-dir", str(runs["dir"]))
    assert code == 2 and "its settings changed since the checkpoint" in err and "LoRA r 16 → 4" in err
    (run_dir / "run.json").write_text(before)
    # The training rows changed: other rows in the data file.
    train_file = runs["data"] / "train.jsonl"
    original = train_file.read_bytes()
    shutil.copy(runs["data"] / "validation.jsonl", train_file)
    try:
        code, _, err = _main("train", "--resume", "killed", "--runs-dir", str(runs["dir"]))
    finally:
        train_file.write_bytes(original)
    assert code == 2 and "its training rows changed since it started" in err
    # Through the runner (the app's way) too, and nothing was touched by the refusals.
    from gemma_emotion.resume import ResumeError

    shutil.copy(runs["data"] / "validation.jsonl", train_file)
    try:
        with pytest.raises(ResumeError, match="training rows changed"):
            Runner(runs["dir"]).resume("killed")
    finally:
        train_file.write_bytes(original)
    assert (run_dir / "run.json").read_text() == before
    # A completed run has nothing to resume.
    code, _, err = _main("train", "--resume", "straight", "--runs-dir", str(runs["dir"]))
    assert code == 2 and "run straight completed: there is nothing to resume" in err


@pytest.fixture(scope="module")
def resumed(runs, killed):
    proc = _cli("train", "--resume", "killed", "--runs-dir", str(runs["dir"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RunRegistry(runs["dir"]).get("killed"), proc


def test_train_resume_completes_the_killed_run_as_if_never_interrupted(straight, killed, resumed):
    info, proc = resumed
    assert "run killed: completed" in proc.stdout
    assert info.status == "completed" and info.ended == {"reason": "completed", "step": 9}
    # The log's steps are 1..9, none twice; the evaluations are the same as the uninterrupted run's.
    assert _train_steps(info.path) == list(range(1, 10)) == _train_steps(straight.path)
    record = json.loads((info.path / "run.json").read_text())
    assert [r["from_step"] for r in record["resumed"]] == [killed["info"].checkpoint_step]

    # Same seed, same data order, RNG restored: the same losses step by step, the same adapter.
    def losses(run_dir):
        return [r["loss"] for r in map(json.loads, (run_dir / LOG_FILE).read_text().splitlines())]

    assert losses(info.path) == pytest.approx(losses(straight.path), rel=1e-4)
    m, s = info.metrics, straight.metrics
    assert m["final_loss"] == pytest.approx(s["final_loss"], rel=1e-4)
    assert m["train_loss"] == pytest.approx(s["train_loss"], rel=1e-4)  # the whole run's mean, not the tail's
    assert (m["steps"], m["train_tokens"]) == (s["steps"], s["train_tokens"])
    mine, theirs = _adapter_weights(info.path), _adapter_weights(straight.path)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert (mine[key] - theirs[key]).abs().max().item() < 1e-5, key
    # The reports as for the uninterrupted run; the checkpoints went with the completion.
    for key in ("base_accuracy", "finetuned_accuracy", "finetuned_macro_f1", "n_test"):
        assert m[key] == s[key], key
    assert not (info.path / CHECKPOINTS_DIR).exists() and not (straight.path / CHECKPOINTS_DIR).exists()
    assert (info.path / "reports" / "finetuned" / "metrics.json").is_file()


# -- early stopping ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def early(runs, straight):
    """A learning rate far too high: the validation loss soon stops improving, and two evaluations later
    the run stops."""
    code, out, err = _main(
        "train", "--model", str(runs["model"]), "--data", str(runs["data"]), "--train-size", "16",
        "--epochs", "10", "--lr", "0.5", "--eval-steps", "1", "--eval-size", "8", "--test-size", "0",
        "--early-stopping-patience", "2", "--name", "early", "--runs-dir", str(runs["dir"]),
    )  # fmt: skip
    assert code == 0, (out, err)
    return RunRegistry(runs["dir"]).get("early")


def test_early_stopping_ends_a_run_whose_validation_loss_stopped_improving(early):
    record = json.loads((early.path / "run.json").read_text())
    ended = record["ended"]
    assert early.status == "completed" and ended["reason"] == "early_stopped" and ended["patience"] == 2
    assert ended["step"] == early.metrics["steps"] < record["total_steps"] == 20
    lines = [json.loads(line) for line in (early.path / LOG_FILE).read_text().splitlines()]
    evals = [(r["step"], r["eval_loss"]) for r in lines if r["kind"] == "eval"]
    best_step, best = min(evals, key=lambda e: e[1])
    assert (ended["best_step"], ended["best_eval_loss"]) == (best_step, pytest.approx(best, abs=1e-6))
    after = [loss for step, loss in evals if step > best_step]
    assert len(after) == 2 and all(loss >= best for loss in after)  # two evaluations without improving
    assert evals[-1][0] == ended["step"]  # it stopped at the evaluation that used up the patience
    assert any("a checkpoint at every evaluation" in note for note in record["notes"])


# -- comparing runs ------------------------------------------------------------------------------------------
def test_runs_compare_prints_the_differing_settings_and_the_figures(runs, straight, early):
    proc = _cli("runs", "--compare", "straight", "early", "--runs-dir", str(runs["dir"]))
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("  ")[0].strip(): line.split() for line in proc.stdout.splitlines()[1:]}
    header = proc.stdout.splitlines()[0].split()
    assert header == ["straight", "early"]
    assert rows["epochs"][-2:] == ["3", "10"] and rows["learning rate"][-2:] == ["auto", "0.5"]
    assert rows["early stopping patience"][-2:] == ["off", "2"] and rows["train size"][-2:] == ["24", "16"]
    for same in ("lora r", "LoRA r", "seed", "model", "data", "max length"):
        assert same not in rows  # the settings they share are left out
    assert "early-stopped at step" in proc.stdout and "completed at step 9" in proc.stdout
    assert rows["steps"][-2:] == ["9", str(early.metrics["steps"])]
    assert rows["train loss (mean)"][-2:] == [
        f"{straight.metrics['train_loss']:.4f}".rstrip("0"),
        f"{early.metrics['train_loss']:.4f}".rstrip("0"),
    ]
    assert rows["validation loss (best)"][-2:][0] == "-"  # straight never evaluated during training

    as_json = json.loads(_cli("runs", "--compare", "straight", "early", "--json", "--runs-dir",
                              str(runs["dir"])).stdout)  # fmt: skip
    assert as_json["runs"] == ["straight", "early"]
    assert ["epochs", [3.0, 10.0]] in as_json["settings"]
    refused = _cli("runs", "--compare", "straight", "--runs-dir", str(runs["dir"]))
    assert refused.returncode == 2 and "pick at least two runs" in refused.stderr


def test_repeating_a_run_by_name_gives_its_config_with_a_fresh_name(runs, early):
    from gemma_emotion.cli.train import config_from_args

    again = config_from_args(_parse_train("--config", "early", "--runs-dir", str(runs["dir"])))
    assert again == dataclasses.replace(TrainConfig.from_dict(early.config), name=None)
    assert again.early_stopping_patience == 2 and math.isclose(again.learning_rate, 0.5)


def test_runs_of_a_folder_that_does_not_exist_says_where_it_looked(tmp_path):
    code, out, err = _main("runs", "--runs-dir", str(tmp_path / "typo"))
    assert code == 0 and out.strip() == "no runs"
    assert err.strip() == f"(looked in {tmp_path / 'typo'}, which does not exist)"
    code, out, err = _main("runs", "--runs-dir", str(tmp_path))
    assert code == 0 and out.strip() == "no runs" and err.strip() == f"(looked in {tmp_path})"
