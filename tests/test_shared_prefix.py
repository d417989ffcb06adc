"""The shared prompt prefix in training (gemma_emotion.shared_prefix): the loss and every LoRA gradient
equal those of the whole rows on tiny Gemma 3 and Gemma 4 models, with rows of different lengths, with
sliding-window layers whose window the rows outgrow, and under gradient checkpointing; a real run gives
the same loss curve with it as without; and it is off, with a note, where it cannot be used."""

from __future__ import annotations

import json
import re

import pytest
import torch

from gemma_emotion.config import TrainConfig
from gemma_emotion.plan import plan_training
from gemma_emotion.shared_prefix import common_prefix_length, prefix_length
from gemma_emotion.train import train
from gemma_emotion.trainer import answer_positions_only, build_trainer

WINDOW = 44  # longer than either tiny template's prefix (36 / 39 tokens), shorter than every row (46+)


@pytest.fixture(scope="module")
def windowed(tmp_path_factory, shared_data):
    """Tiny Gemma 3 / Gemma 4 with the fixtures' weights and a sliding window the rows outgrow."""
    from tiny import make_gemma3, make_gemma4

    train_file = shared_data / "train.jsonl"
    return {
        "gemma3": make_gemma3(tmp_path_factory.mktemp("g3-window"), train_file, sliding_window=WINDOW),
        "gemma4": make_gemma4(tmp_path_factory.mktemp("g4-window"), train_file, sliding_window=WINDOW),
    }


def _trainer(model_dir, shared_data, tmp_path):
    """A lean trainer on 6 validation rows, LoRA B drawn at random (at its zero init every A gradient
    would be zero and the comparison would hold trivially), and the rows collated into one batch."""
    from gemma_emotion.data import load_split
    from gemma_emotion.models import load_model

    lm = load_model(str(model_dir))
    ds = load_split(shared_data, "validation", limit=6, seed=2)
    config = TrainConfig(model="x", lora_dropout=0.0)
    trainer = build_trainer(lm, ds, config, plan_training(config, device_type="cpu"), tmp_path / "out")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ds))])
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 2  # right padding of several lengths
    return lm, trainer, batch


def _loss_and_grads(trainer, batch, n_prefix: int) -> tuple[torch.Tensor, dict, list]:
    """The lean loss step's loss and LoRA gradients, and the shapes the embedding layer was given."""
    model = trainer.model
    model.train()
    model.zero_grad()
    shapes: list[tuple[int, ...]] = []
    hook = model.get_input_embeddings().register_forward_hook(
        lambda m, a, o: shapes.append(tuple(a[0].shape))
    )
    trainer.shared_prefix = n_prefix
    try:
        with answer_positions_only():  # as in training: the LM head on the answer positions
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
    finally:
        hook.remove()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, shapes


def _assert_equal_grads(shared: dict, plain: dict) -> None:
    assert shared.keys() == plain.keys() and any("lora_A" in n for n in plain)
    for name, g in plain.items():
        assert float(g.abs().max()) > 0, f"{name}: a zero gradient compares nothing"
        torch.testing.assert_close(shared[name], g, rtol=1e-4, atol=1e-5 * float(g.abs().max()), msg=name)


@pytest.mark.parametrize("window", [False, True], ids=["window-128", f"window-{WINDOW}"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
@pytest.mark.parametrize("family", ["gemma3", "gemma4"])
def test_shared_prefix_loss_and_lora_gradients_equal_the_whole_rows(
    family, checkpointing, window, request, windowed, shared_data, tmp_path
):
    from gemma_emotion.classify import Classifier

    model_dir = windowed[family] if window else request.getfixturevalue(f"tiny_{family}")
    lm, trainer, batch = _trainer(model_dir, shared_data, tmp_path)
    rows = trainer.train_dataset
    n, note = prefix_length(trainer.model, rows["input_ids"], rows["labels"])
    assert n == trainer.shared_prefix == len(Classifier(lm)._prefix_ids)  # the template up to the text
    assert note.startswith(f"shared prefix: the {n} tokens")
    if window:
        assert n < WINDOW - 1 < int(batch["attention_mask"].sum(1).min())  # the window cuts every row
    if checkpointing:
        trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainer.model.enable_input_require_grads()

    plain_loss, plain_grads, plain_shapes = _loss_and_grads(trainer, batch, 0)
    shared_loss, shared_grads, shared_shapes = _loss_and_grads(trainer, batch, n)

    width = batch["input_ids"].shape[1]
    assert plain_shapes == [(6, width)]
    assert shared_shapes == [(1, n), (6, width - n)]  # the prefix once, then the suffixes only
    torch.testing.assert_close(shared_loss, plain_loss, rtol=1e-6, atol=1e-6)
    _assert_equal_grads(shared_grads, plain_grads)


def test_the_sliding_window_shapes_the_loss_the_shared_prefix_reproduces(
    tiny_gemma4, windowed, shared_data, tmp_path
):
    """The windowed model differs from the fixture only in its window: if the window did not reach into
    these rows, the equality above would not show that the suffixes' sliding masks are right."""
    _, wide, batch = _trainer(tiny_gemma4, shared_data, tmp_path / "wide")
    _, narrow, narrow_batch = _trainer(windowed["gemma4"], shared_data, tmp_path / "narrow")
    assert torch.equal(batch["input_ids"], narrow_batch["input_ids"])
    wide_loss = _loss_and_grads(wide, batch, 0)[0]
    narrow_loss = _loss_and_grads(narrow, batch, 0)[0]
    assert abs(float(wide_loss - narrow_loss)) > 1e-4


def test_common_prefix_stops_where_the_rows_differ_and_before_the_first_trained_token():
    ignore = -100
    rows = [[2, 4, 9, 9, 5, 6], [2, 4, 9, 9, 7, 6, 1], [2, 4, 9, 9, 5, 8]]
    labels = [[ignore] * 5 + [6], [ignore] * 5 + [6, 1], [ignore] * 5 + [8]]
    assert common_prefix_length(rows, labels) == 4
    # Two identical rows share everything, but the token before the first trained one must be run
    # with the suffix, where the LM head scores it.
    same = [[2, 4, 9, 5, 6]] * 2
    assert common_prefix_length(same, [[ignore] * 3 + [5, 6]] * 2) == 2
    assert common_prefix_length([], []) == 0
    assert common_prefix_length([[2, 4], [3, 4]], [[ignore, 4], [ignore, 4]]) == 0


def test_the_shared_prefix_is_off_with_a_note_where_it_cannot_be_used(tiny_gemma3):
    from gemma_emotion.models import load_model

    model = load_model(str(tiny_gemma3)).model
    ignore = -100
    short = [[2, 4, 5, 6, 7], [2, 4, 8, 6, 7]]
    assert prefix_length(model, short, [[ignore] * 3 + [6, 7]] * 2) == (
        0,
        "shared prefix off: the rows share only 2 leading tokens",
    )
    long_prefix = list(range(10, 140))  # 130 shared tokens: more than the 128-token sliding window holds
    rows = [long_prefix + [5, 6, 7], long_prefix + [8, 6, 7]]
    n, note = prefix_length(model, rows, [[ignore] * 131 + [6, 7]] * 2)
    assert n == 0 and "does not fit the 128-token sliding window" in note
    model.config._attn_implementation = "flash_attention_2"
    n, note = prefix_length(model, short * 2, [[ignore] * 3 + [6, 7]] * 4)
    assert n == 0 and "shared prefix off" in note


def test_reentrant_checkpointing_is_refused(tiny_gemma3, shared_data, tmp_path):
    _, trainer, batch = _trainer(tiny_gemma3, shared_data, tmp_path)
    trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    trainer.model.train()
    trainer.shared_prefix = 30
    with pytest.raises(ValueError, match="non-reentrant"):
        trainer.compute_loss(trainer.model, dict(batch))


def test_a_real_run_has_the_same_loss_curve_with_and_without_the_shared_prefix(
    tiny_gemma3, shared_data, tmp_path
):
    """Through the project's entry point (`train`): 16 rows, batches of 4, 3 epochs, no dropout (dropout
    draws its masks per row, which no two computations share)."""
    curves, notes = {}, {}
    for shared in (True, False):
        config = TrainConfig(
            model=str(tiny_gemma3), data=str(shared_data), train_size=16, epochs=3, batch_size=4,
            learning_rate=2e-2, lora_dropout=0.0, test_size=0, shared_prefix=shared,
            name=f"shared-{shared}".lower(),
        )  # fmt: skip
        info = train(config, tmp_path)
        assert info.status == "completed", info.error
        log = [json.loads(line) for line in (info.path / "log.jsonl").read_text().splitlines()]
        curves[shared] = [r["loss"] for r in log if r["kind"] == "train"]
        notes[shared] = json.loads((info.path / "run.json").read_text())["notes"]
    assert len(curves[True]) == 12 and curves[True][-1] < curves[True][0]  # it learns
    assert curves[True] == pytest.approx(curves[False], rel=1e-4, abs=1e-5)
    # The template's 36 tokens up to the text, and more where these 16 texts happen to start alike.
    shared_notes = [
        re.match(r"shared prefix: the (\d+) tokens every row starts with", n) for n in notes[True]
    ]
    assert [int(m[1]) >= 36 for m in shared_notes if m] == [True], notes[True]
    assert "shared prefix off (--no-shared-prefix)" in notes[False]


def test_the_cli_flag_turns_it_off_and_the_default_is_on():
    import argparse

    from gemma_emotion.cli.train import config_from_args, register
    from gemma_emotion.config import ConfigError

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert config_from_args(parser.parse_args(["train"])).shared_prefix is None  # auto: on a CPU only
    assert config_from_args(parser.parse_args(["train", "--shared-prefix"])).shared_prefix is True
    assert config_from_args(parser.parse_args(["train", "--no-shared-prefix"])).shared_prefix is False
    with pytest.raises(ConfigError, match="shared_prefix must be true, false or unset"):
        TrainConfig(shared_prefix="yes").validate()


def test_two_processes_have_the_same_loss_curve_with_and_without_the_shared_prefix(
    tiny_gemma3, shared_data, tmp_path
):
    """Under DDP (torchrun, as `accelerate launch`): the prefix pass runs the module inside DDP, and its
    gradients must reach the all-reduce with the suffixes' (a lost share would change the updates)."""
    import subprocess
    import sys

    curves = {}
    for flags in ([], ["--no-shared-prefix"]):
        name = "whole" if flags else "shared"
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "gemma_emotion", "train", "--model", str(tiny_gemma3), "--data", str(shared_data),
            "--train-size", "32", "--epochs", "3", "--lr", "2e-2", "--lora-dropout", "0", "--test-size", "0",
            "--runs-dir", str(tmp_path), "--name", name, *flags,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        log = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        curves[name] = [r["loss"] for r in log if r["kind"] == "train"]
    assert len(curves["shared"]) == 6  # 32 rows, 8 a process, 2 processes: 2 steps an epoch
    assert curves["shared"] == pytest.approx(curves["whole"], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("n_prefix", [0, None], ids=["whole-rows", "shared-prefix"])
def test_the_backward_recomputes_attention_under_the_forwards_kernel_order(
    n_prefix, tiny_gemma4, shared_data, tmp_path, monkeypatch
):
    """Checkpointed layers recompute attention in the backward pass; a kernel order set only around the
    forward let CUDA pick another kernel there (torch's CheckpointError on an H200). Every attention call
    of a training step, the recompute's included, runs inside `attention_kernels`."""
    import contextlib

    from gemma_emotion import models

    depth = [0]

    @contextlib.contextmanager
    def counting_kernels(device):
        depth[0] += 1
        try:
            yield
        finally:
            depth[0] -= 1

    monkeypatch.setattr(models, "attention_kernels", counting_kernels)
    lm, trainer, batch = _trainer(tiny_gemma4, shared_data, tmp_path)
    trainer.shared_prefix = trainer.shared_prefix if n_prefix is None else n_prefix
    model = trainer.model
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    trainer.create_optimizer_and_scheduler(num_training_steps=1)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop
    model.train()

    calls: list[tuple[bool, bool]] = []  # (in the backward pass, inside attention_kernels)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        calls.append((torch._C._current_graph_task_id() != -1, depth[0] > 0))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    with answer_positions_only():
        loss = trainer.training_step(model, dict(batch))
    assert torch.isfinite(loss)
    layers = lm.model.config.get_text_config().num_hidden_layers
    assert sum(not backward for backward, _ in calls) >= layers
    assert sum(backward for backward, _ in calls) >= layers  # the recompute ran
    assert all(inside for _, inside in calls), calls
