"""Training runs on tiny models (CPU): the loss falls, adapters reload, stop/kill/crash end runs properly,
the trainer sees the classifier's tokens, LoRA stays off the towers, and the CLI drives it all."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import pytest

from gemma_emotion import runs as runs_mod
from gemma_emotion.data import load_split
from gemma_emotion.labels import LABELS
from gemma_emotion.plan import choose_4bit, plan_training
from gemma_emotion.records import TokenisationError, verify_tokenisation
from gemma_emotion.runs import (
    ENDED_UNEXPECTEDLY,
    RunFile,
    Runner,
    RunnerBusy,
    RunNotFound,
    RunRegistry,
)
from gemma_emotion.stopping import StopSignal
from gemma_emotion.train import (
    ENV_FAULT,
    TrainConfig,
    build_trainer,
    prepare_data,
    run_training,
    train,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 180  # generous: the suite shares 2 CPU cores with whatever else runs


def _wait_for(predicate, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "gemma_emotion", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=WAIT_S)


def _long_config(model: Path, data: Path) -> TrainConfig:
    """A run that cannot finish before the test stops or kills it."""
    return TrainConfig(model=str(model), data=str(data), train_size=16, epochs=500, test_size=4)


# -- config and plan ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -1}, "epochs"),
        ({"epochs": math.nan}, "epochs"),
        ({"learning_rate": 0}, "learning rate"),
        ({"learning_rate": -1e-4}, "learning rate"),
        ({"learning_rate": 2.0}, "learning rate"),
        ({"batch_size": 0}, "batch size"),
        ({"grad_accum": 0}, "gradient accumulation"),
        ({"train_size": 0}, "train size"),
        ({"max_length": 8}, "max length"),
        ({"eval_steps": 0}, "eval steps"),
        ({"test_size": -5}, "test size"),
        ({"lora_r": 0}, "LoRA r"),
        ({"lora_dropout": 1.0}, "LoRA dropout"),
        ({"corrections_oversample": 0}, "oversample"),
        ({"name": "../escape"}, "run name"),
        ({"model": " "}, "model is empty"),
        ({"batch_size": 2.5}, "batch size"),
    ],
)
def test_validate_rejects_nonsense(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change).validate()


def test_validate_accepts_defaults_and_refuses_4bit_without_cuda():
    TrainConfig().validate()
    TrainConfig(epochs=0.5, test_size=0, name="my-run_1.2").validate()
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            TrainConfig(load_in_4bit=True).validate()


def test_config_round_trips_through_run_json_and_ignores_unknown_keys():
    config = TrainConfig(model="m", data="d", epochs=2.5, name="x")
    assert TrainConfig.from_dict({**config.to_dict(), "from_the_future": 1}) == config


def test_cpu_plan_is_fp32_batch_8_without_4bit():
    plan = plan_training(TrainConfig(), device_type="cpu")
    assert (plan.batch_size, plan.grad_accum, plan.bf16, plan.load_in_4bit) == (8, 1, False, False)
    assert not plan.gradient_checkpointing
    assert plan_training(TrainConfig(batch_size=3, grad_accum=2), device_type="cpu").batch_size == 3


def test_gpu_plan_fits_the_card():
    small_model = dict(hidden_size=640, num_layers=18)  # Gemma 3 270M
    big = plan_training(TrainConfig(), device_type="cuda", free_memory_gb=78, **small_model)
    assert big.batch_size == 128 and big.grad_accum == 1 and big.bf16 and big.optim == "adamw_torch_fused"
    # The learning rate follows the batch unless given: 2e-4 up to 16, 4e-4 at 32, at most 1e-3.
    assert big.learning_rate == pytest.approx(1e-3)
    assert plan_training(TrainConfig(batch_size=32), device_type="cuda").learning_rate == pytest.approx(4e-4)
    assert plan_training(TrainConfig(learning_rate=1e-4), device_type="cuda").learning_rate == 1e-4
    assert plan_training(TrainConfig(), device_type="cpu").learning_rate == pytest.approx(2e-4)
    e4b = dict(hidden_size=2560, num_layers=42)
    tight = plan_training(TrainConfig(), device_type="cuda", free_memory_gb=12, **e4b)
    assert tight.batch_size * tight.grad_accum >= 16 and tight.batch_size < big.batch_size
    qlora = plan_training(TrainConfig(), device_type="cuda", load_in_4bit=True, free_memory_gb=6, **e4b)
    assert qlora.gradient_checkpointing and qlora.optim == "paged_adamw_8bit" and qlora.load_in_4bit
    mine = plan_training(
        TrainConfig(batch_size=2, grad_accum=3), device_type="cuda", free_memory_gb=78, **e4b
    )
    assert (mine.batch_size, mine.grad_accum) == (2, 3)
    no_bf16 = plan_training(TrainConfig(), device_type="cuda", free_memory_gb=78, bf16_supported=False, **e4b)
    assert no_bf16.fp16 and not no_bf16.bf16


def test_4bit_is_chosen_for_big_models_on_small_cards_only():
    auto = TrainConfig()
    assert choose_4bit(auto, "cuda", 16, 8_000_000_000)[0]  # E4B on a T4
    assert not choose_4bit(auto, "cuda", 16, 270_000_000)[0]  # the embedded model fits as is
    assert not choose_4bit(auto, "cuda", 80, 8_000_000_000)[0]  # an H100 takes bf16
    assert not choose_4bit(auto, "cpu", None, 8_000_000_000)[0]
    assert choose_4bit(TrainConfig(load_in_4bit=True), "cuda", 80, 1)[0]
    assert not choose_4bit(TrainConfig(load_in_4bit=False), "cuda", 16, 8_000_000_000)[0]


def test_parameters_are_counted_from_the_checkpoint_without_the_towers(tiny_gemma4_mm):
    from gemma_emotion.models import load_model
    from gemma_emotion.plan import estimate_parameters

    text_only = sum(p.numel() for p in load_model(str(tiny_gemma4_mm)).model.parameters())
    estimate = estimate_parameters(str(tiny_gemma4_mm))
    assert abs(estimate - text_only) <= 0.001 * text_only  # saved buffers (layer scalars) count too
    assert estimate_parameters("embedded") is None  # small: never worth 4-bit


# -- data ---------------------------------------------------------------------------------------------
def _write_jsonl(path: Path, rows: list[tuple[str, int]]) -> None:
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))


@pytest.fixture
def small_data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", [(f"i feel thing number {i}", i % 6) for i in range(30)])
    _write_jsonl(
        folder / "test.jsonl", [(f"test text {i}", i % 6) for i in range(12)] + [("fixed by hand", 0)]
    )
    return folder


def test_train_size_beyond_the_data_is_clamped_with_a_note(small_data, tmp_path):
    data = prepare_data(TrainConfig(data=str(small_data), train_size=1000, test_size=None), tmp_path / "runs")
    assert len(data.train) == 30
    assert any("1000" in note and "using all" in note for note in data.notes)
    assert data.validation is None  # the folder has no validation split
    assert len(data.test) == 13


def test_corrections_join_the_training_rows_and_leave_the_test(small_data, tmp_path):
    from gemma_emotion.corrections import CorrectionStore

    runs_dir = tmp_path / "runs"
    store = CorrectionStore(runs_dir)
    store.add("fixed by hand", "anger")
    store.add("i feel thing number 0", "fear")  # a training row whose label a human changed
    config = TrainConfig(data=str(small_data), use_corrections=True, corrections_oversample=3, test_size=None)
    data = prepare_data(config, runs_dir)
    assert data.n_corrections == 2
    assert len(data.train) == 30 - 1 + 2 * 3
    rows = list(zip(data.train["text"], data.train["label"]))
    assert rows.count(("i feel thing number 0", 4)) == 3 and ("i feel thing number 0", 0) not in rows
    assert rows.count(("fixed by hand", 3)) == 3
    assert "fixed by hand" not in data.test["text"]


def test_a_single_file_is_split_so_the_test_rows_are_not_trained_on(small_data, tmp_path):
    data = prepare_data(TrainConfig(data=str(small_data / "train.jsonl"), test_size=None), tmp_path)
    assert len(data.test) == 3 and len(data.train) == 27
    assert not set(data.test["text"]) & set(data.train["text"])


def _write_csv(path: Path, header: list[str], rows: list) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def test_one_user_file_is_cleaned_split_and_listed(tmp_path):
    rows = [[f"i feel thing number {i}", LABELS[i % 6].upper()] for i in range(40)]
    rows += [[rows[0][0], rows[0][1]], ["  ", "JOY"], ["no label", ""]]
    path = _write_csv(tmp_path / "mine.csv", ["sentence", "emotion"], rows)
    data = prepare_data(TrainConfig(data=str(path), test_size=None), tmp_path / "runs")
    assert data.labels.is_default
    assert (len(data.train), len(data.test)) == (36, 4)
    assert data.validation is data.test
    assert not set(data.test["text"]) & set(data.train["text"])
    assert sorted(data.test["label"]) == sorted(set(data.test["label"]))  # stratified: 4 different labels
    assert "mine.csv: 3 of 43 rows dropped: 1 duplicate text, 1 empty text, 1 missing label" in data.notes
    assert "mine.csv is one file: 4 rows held out for validation and test" in data.notes
    assert data.files == [{"role": "train", "path": str(path), "rows_read": 43, "rows": 40,
                           "text_column": "sentence", "label_column": "emotion"}]  # fmt: skip


def test_second_files_replace_the_held_out_slices(tmp_path):
    train = _write_csv(tmp_path / "t.csv", ["text", "label"], [[f"row {i}", i % 6] for i in range(30)])
    val = _write_csv(tmp_path / "v.csv", ["text", "label"], [[f"val {i}", "joy"] for i in range(5)])
    test = _write_csv(tmp_path / "x.csv", ["text", "label"], [["row 3", 3], ["fresh", "fear"]])
    config = TrainConfig(data=str(train), validation_data=str(val), test_data=str(test), test_size=None)
    data = prepare_data(config, tmp_path)
    assert len(data.train) == 30 and len(data.validation) == 5
    assert data.test["text"] == ["fresh"]  # "row 3" is a training row
    assert "1 test rows left out: they are in the training data" in data.notes
    assert [f["role"] for f in data.files] == ["train", "validation", "test"]
    only_val = prepare_data(TrainConfig(data=str(train), validation_data=str(val), test_size=None), tmp_path)
    assert (len(only_val.train), len(only_val.test), len(only_val.validation)) == (27, 3, 5)
    assert "t.csv is one file: 3 rows held out for test" in only_val.notes


def test_a_six_emotion_file_can_be_tested_on_the_bundled_test_split(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    first = load_split(shared_data, "test", limit=3, seed=0)
    rows = [[t, LABELS[y]] for t, y in zip(first["text"], first["label"])]
    rows += [[f"i feel thing number {i}", LABELS[i % 6]] for i in range(30)]
    path = _write_csv(tmp_path / "six.csv", ["text", "label"], rows)
    data = prepare_data(TrainConfig(data=str(path), test_data="dair-ai/emotion", test_size=None), tmp_path)
    assert len(data.test) == 2000 - 3  # the bundled test split, less the rows trained on
    assert any("the bundled copy" in note for note in data.notes)
    assert "3 test rows left out: they are in the training data" in data.notes


def test_a_file_of_other_labels_trains_its_own_label_set(tmp_path):
    rows = [[f"text number {i}", "Positive" if i % 2 else "negative"] for i in range(30)]
    path = _write_csv(tmp_path / "valence.csv", ["review", "sentiment"], rows)
    data = prepare_data(TrainConfig(data=str(path), test_size=None), tmp_path)
    assert data.labels.names == ("negative", "Positive")
    assert sorted(set(data.train["label"])) == [0, 1] and len(data.test) == 3
    given = prepare_data(TrainConfig(data=str(path), labels="negative,positive,surprise"), tmp_path)
    assert given.labels.names == ("negative", "positive", "surprise")


# -- tokens and LoRA targets --------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["tiny_gemma3", "tiny_gemma4"])
def test_trainer_tokens_equal_the_classifiers_and_end_with_the_end_of_turn(
    fixture, request, shared_data, tmp_path
):
    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import load_split
    from gemma_emotion.models import load_model

    lm = load_model(str(request.getfixturevalue(fixture)))
    ds = load_split(shared_data, "validation", limit=12, seed=1)
    config = TrainConfig(model="x", epochs=1)
    plan = plan_training(config, device_type="cpu")
    trainer = build_trainer(lm, ds, config, plan, tmp_path / "out")
    classifier = Classifier(lm)
    verify_tokenisation(trainer.train_dataset, ds["text"], ds["label"], classifier, n=len(ds))

    eot = "<end_of_turn>" if fixture == "tiny_gemma3" else "<turn|>"
    tok = lm.tokenizer
    for i, text in enumerate(ds["text"]):
        ids, targets = trainer.train_dataset[i]["input_ids"], trainer.train_dataset[i]["labels"]
        start = next(k for k, t in enumerate(targets) if t != -100)
        assert ids[:start] == classifier.prompt_ids(text)
        trained = tok.convert_ids_to_tokens(ids[start:])
        label_tokens = tok.tokenize(["sadness", "joy", "love", "anger", "fear", "surprise"][ds["label"][i]])
        assert trained[: len(label_tokens) + 1] == [*label_tokens, eot]

    shuffled = ds["text"][1:] + ds["text"][:1]
    with pytest.raises(TokenisationError, match="prompt tokens differ"):
        verify_tokenisation(trainer.train_dataset, shuffled, ds["label"], classifier)


@pytest.mark.parametrize("fixture", ["tiny_gemma3", "tiny_gemma4"])
def test_our_token_ids_equal_trls_tokenisation_of_the_chat_records(fixture, request, shared_data, tmp_path):
    from trl import SFTConfig, SFTTrainer

    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import load_split
    from gemma_emotion.models import load_model
    from gemma_emotion.records import tokenised_records, training_records

    lm = load_model(str(request.getfixturevalue(fixture)))
    ds = load_split(shared_data, "validation", limit=12, seed=3)
    texts, labels = list(ds["text"]), list(ds["label"])
    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to="none", max_length=256, use_cpu=True)
    trl_side = SFTTrainer(
        model=lm.model,
        args=args,
        train_dataset=training_records(texts, labels),
        processing_class=lm.tokenizer,
    ).train_dataset
    ours = tokenised_records(texts, labels, Classifier(lm))
    assert ours["input_ids"] == trl_side["input_ids"]
    assert ours["labels"] == trl_side["labels"]


def test_lean_loss_step_equals_trls(tiny_gemma3, shared_data, tmp_path):
    import torch

    import gemma_emotion.trainer as trainer_mod
    from gemma_emotion.data import load_split
    from gemma_emotion.models import load_model

    lm = load_model(str(tiny_gemma3))
    ds = load_split(shared_data, "validation", limit=8, seed=4)
    config = TrainConfig(model="x", lora_dropout=0.0)
    trainer = build_trainer(lm, ds, config, plan_training(config, device_type="cpu"), tmp_path / "out")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ds))])
    trainer.model.train()
    lean = trainer.compute_loss(trainer.model, dict(batch))
    trainer_mod.LEAN_LOSS = False
    try:
        reference = trainer.compute_loss(trainer.model, dict(batch))
    finally:
        trainer_mod.LEAN_LOSS = True
    assert torch.allclose(lean, reference, atol=1e-6)
    # What TRL logs per step, the lean step hands over at logging time: token accuracy and the token count.
    trl_accuracy = trainer._metrics["train"]["mean_token_accuracy"][-1]
    trainer._total_train_tokens = 0  # TRL's own step counted the batch too
    logs = {"loss": lean.detach().item()}
    trainer.log(logs)
    assert logs["num_tokens"] == int(batch["attention_mask"].sum())
    assert logs["mean_token_accuracy"] == pytest.approx(trl_accuracy, abs=1e-6)


def test_scoring_only_the_answer_positions_changes_neither_loss_nor_gradients(
    tiny_gemma3, shared_data, tmp_path
):
    import torch
    import trl.trainer.utils as trl_utils

    from gemma_emotion.data import load_split
    from gemma_emotion.models import load_model
    from gemma_emotion.train import answer_positions_only

    lm = load_model(str(tiny_gemma3))
    ds = load_split(shared_data, "validation", limit=8, seed=2)
    config = TrainConfig(model="x", lora_dropout=0.0)
    trainer = build_trainer(lm, ds, config, plan_training(config, device_type="cpu"), tmp_path / "out")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ds))])
    model = trainer.model

    def loss_and_grads():
        model.zero_grad()
        loss = model(**batch, fused_lm_head=True).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    original = trl_utils._use_triton
    full = loss_and_grads()
    with answer_positions_only():
        assert trl_utils._use_triton(torch.device("cpu"))  # the compact branch is taken on a CPU
        compact = loss_and_grads()
    assert trl_utils._use_triton is original
    assert torch.allclose(full[0], compact[0], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full[1], compact[1]))


def test_lora_on_multimodal_gemma4_touches_no_tower(tiny_gemma4_mm, shared_data, tmp_path):
    from peft import get_peft_model
    from transformers import Gemma4ForConditionalGeneration

    from gemma_emotion.models import load_model
    from gemma_emotion.trainer import lora_config

    # The full multimodal model: the target list names decoder projections only, and PEFT accepts it
    # (a plain q_proj... list fails on Gemma4ClippableLinear in the vision tower).
    full = Gemma4ForConditionalGeneration.from_pretrained(tiny_gemma4_mm)
    cfg = lora_config(full, TrainConfig())
    assert cfg.modules_to_save is None
    assert all("language_model" in name for name in cfg.target_modules)
    peft_model = get_peft_model(full, cfg)
    lora_names = [n for n, _ in peft_model.named_modules() if n.endswith(".lora_A")]
    assert lora_names and not any("vision" in n or "audio" in n or "embed" in n for n in lora_names)

    # Our path: text-only load, trained end to end for a few steps.
    info = train(
        TrainConfig(
            model=str(tiny_gemma4_mm),
            data=str(shared_data),
            train_size=16,
            epochs=1,
            test_size=6,
            eval_generate=True,
        ),
        tmp_path / "runs",
    )
    assert info.status == "completed", info.error
    reports = RunRegistry(tmp_path / "runs").reports(info.name)
    assert list(reports) == ["base", "finetuned", "base_generate", "finetuned_generate"]
    assert reports["finetuned_generate"].metrics["mode"] == "generate"
    adapter_cfg = json.loads((info.adapter_dir / "adapter_config.json").read_text())
    assert adapter_cfg["modules_to_save"] is None
    assert not any("vision" in t or "audio" in t for t in adapter_cfg["target_modules"])
    lm = load_model(str(tiny_gemma4_mm))
    trainable = [n for n, p in lm.model.named_parameters()]
    assert not any("vision" in n for n in trainable)


# -- a real run, in this process ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_gemma3, shared_data):
    """A small easy run on the tiny Gemma 3 through the `train` command (in this process): a few epochs,
    eval during training, corrections folded in. Returns the run and what the command printed."""
    from gemma_emotion.cli import main
    from gemma_emotion.corrections import CorrectionStore

    runs_dir = tmp_path_factory.mktemp("runs")
    CorrectionStore(runs_dir).add("a sentence a human labelled", "joy")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([
            "train", "--model", str(tiny_gemma3), "--data", str(shared_data), "--train-size", "24",
            "--epochs", "5", "--lr", "2e-2", "--eval-steps", "5", "--eval-size", "12", "--test-size", "24",
            "--name", "tiny", "--runs-dir", str(runs_dir), "--use-corrections", "--oversample", "2",
            "--balance", "--lora-r", "8", "--lora-alpha", "24", "--lora-dropout", "0.1",
        ])  # fmt: skip
    info = RunRegistry(runs_dir).get("tiny")
    assert code == 0 and info.status == "completed", (info.error, err.getvalue())
    return info, out.getvalue(), err.getvalue()


def test_train_command_prints_progress_and_the_before_after_table(trained_run):
    _, out, err = trained_run
    assert "run tiny: completed" in out and "adapter:" in out
    table = out[out.index("base") :]
    for row in ("accuracy", "macro_f1", "invalid", "sadness", "surprise"):
        assert row in table
    assert "predictions changed" in table
    assert "training" in err and "eval finetuned (score)" in err  # progress bars


def test_train_balance_flag_evens_out_the_labels(trained_run):
    info = trained_run[0]
    record = json.loads((info.path / "run.json").read_text())
    assert record["config"]["balance"] is True
    assert any(note.startswith("labels balanced: 24 rows became") for note in record["notes"])
    counts = record["label_counts"]  # after balancing, plus the one correction repeated twice
    assert len({n for name, n in counts.items() if name != "joy"}) == 1


def test_train_lora_flags_reach_the_adapter(trained_run):
    info = trained_run[0]
    adapter_cfg = json.loads((info.adapter_dir / "adapter_config.json").read_text())
    assert (adapter_cfg["r"], adapter_cfg["lora_alpha"], adapter_cfg["lora_dropout"]) == (8, 24, 0.1)


def test_the_loss_falls_and_the_log_has_every_field(trained_run):
    trained_run = trained_run[0]
    log = RunRegistry(trained_run.path.parent).log("tiny")
    train_records = [r for r in log if r["kind"] == "train"]
    eval_records = [r for r in log if r["kind"] == "eval"]
    assert [r["step"] for r in train_records] == list(range(1, len(train_records) + 1))  # every step
    assert train_records[-1]["loss"] < train_records[0]["loss"]
    for r in train_records:
        assert {
            "step",
            "epoch",
            "loss",
            "learning_rate",
            "grad_norm",
            "examples_per_s",
            "eta_s",
            "time",
        } <= set(r)
    assert eval_records and all("eval_loss" in r and 0 <= r["eval_accuracy"] <= 1 for r in eval_records)
    assert train_records[-1]["eta_s"] == 0


def test_run_json_records_the_run(trained_run):
    trained_run = trained_run[0]
    record = json.loads((trained_run.path / "run.json").read_text())
    assert record["status"] == "completed" and record["finished_at"] and record["pid"] == os.getpid()
    # 24 rows balanced to 8 a label (joy has 8 of them), then the one correction oversampled twice
    assert record["n_corrections"] == 1 and record["n_train"] == 6 * 8 + 2
    assert len(record["data_fingerprint"]) == 16 and record["config"]["name"] == "tiny"
    m = record["metrics"]
    assert m["n_test"] == 24 and m["train_loss"] > 0
    for which in ("base", "finetuned"):
        assert m[f"{which}_accuracy"] == m[which]["accuracy"]
        assert 0 <= m[which]["accuracy"] <= 1 and m[which]["invalid"] == 0
    assert trained_run.adapter_dir == trained_run.path / "adapter"
    assert {p.name for p in trained_run.path.iterdir()} == {"run.json", "log.jsonl", "adapter", "reports"}
    # the foreground command shares the CPU with nothing: every core, normal priority
    assert not any("beside the app" in note for note in record["notes"])


def test_the_adapter_reloads_and_changes_predictions(trained_run, tiny_gemma3):
    trained_run = trained_run[0]
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadOptions, load_model

    reports = RunRegistry(trained_run.path.parent).reports("tiny")
    assert set(reports) == {"base", "finetuned"}
    texts = [row["text"] for row in reports["finetuned"].predictions]
    clf = Classifier(load_model(str(tiny_gemma3), LoadOptions(adapter=str(trained_run.adapter_dir))))
    tuned = clf.predict(texts, adapter=True)
    base = clf.predict(texts, adapter=False)
    diff = max(
        abs(t.probabilities[k] - b.probabilities[k]) for t, b in zip(tuned, base) for k in t.probabilities
    )
    assert diff > 1e-3
    # The reloaded adapter predicts what the run's own evaluation recorded, base and fine-tuned alike.
    for which, preds in (("finetuned", tuned), ("base", base)):
        for row, pred in zip(reports[which].predictions, preds):
            assert row["predicted"] == pred.label
            assert abs(float(row["prob_joy"]) - pred.probabilities["joy"]) < 1e-4


def test_merge_bakes_the_adapter_into_the_weights(trained_run, tiny_gemma3, tmp_path):
    trained_run = trained_run[0]
    from gemma_emotion.classify import Classifier
    from gemma_emotion.cli import main
    from gemma_emotion.models import LoadOptions, load_model

    out = tmp_path / "merged"
    assert (
        main(["merge", "--adapter", str(trained_run.adapter_dir), "--out", str(out), "--dtype", "float32"])
        == 0
    )
    texts = ["i feel so happy today", "i am scared of the dark"]
    merged = Classifier(load_model(str(out))).predict(texts)
    with_adapter = Classifier(load_model(str(tiny_gemma3), LoadOptions(adapter=str(trained_run.adapter_dir))))
    for a, b in zip(merged, with_adapter.predict(texts)):
        assert all(abs(a.probabilities[k] - b.probabilities[k]) < 1e-4 for k in a.probabilities)


def test_push_uploads_with_the_token_from_the_env_and_never_prints_it(trained_run, monkeypatch, capsys):
    trained_run = trained_run[0]
    from huggingface_hub import HfApi

    from gemma_emotion.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", "--adapter", str(trained_run.adapter_dir), "--repo", "me/emotion"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err

    monkeypatch.setenv("HF_TOKEN", "hf_secret123")
    with (
        mock.patch.object(HfApi, "create_repo", return_value="https://huggingface.co/me/emotion") as create,
        mock.patch.object(HfApi, "upload_folder") as upload,
    ):
        assert main(["push", "--adapter", str(trained_run.adapter_dir), "--repo", "me/emotion"]) == 0
    create.assert_called_once()
    assert create.call_args.args[0] == "me/emotion" and create.call_args.kwargs["private"] is True
    assert upload.call_args.kwargs["folder_path"] == str(trained_run.adapter_dir)
    assert upload.call_args.kwargs["repo_id"] == "me/emotion"

    with mock.patch.object(HfApi, "create_repo", side_effect=OSError("401 for token hf_secret123")):
        assert main(["push", "--adapter", str(trained_run.adapter_dir), "--repo", "me/emotion"]) != 0
    out = capsys.readouterr()
    assert "hf_secret123" not in out.out + out.err and "push to me/emotion failed" in out.err


# -- failures and stops in this process ---------------------------------------------------------------
def test_a_crash_inside_training_ends_the_run_as_failed(tiny_gemma3, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_FAULT, "oom_at_step:2")
    config = TrainConfig(model=str(tiny_gemma3), data=str(shared_data), train_size=32, epochs=3, test_size=4)
    info = train(config, tmp_path)
    assert info.status == "failed"
    assert "out of memory" in info.error and "batch size" in info.error
    record = json.loads((info.path / "run.json").read_text())
    assert any("OutOfMemoryError" in line for line in record["traceback"])
    assert record["finished_at"] and record["phase"] == "done"
    steps = [r["step"] for r in RunRegistry(tmp_path).log(info.name)]
    assert steps and max(steps) <= 2
    assert Runner(tmp_path).active() is None  # a failed run does not block the next one


def test_a_stop_before_training_ends_the_run_without_loading(tmp_path, small_data):
    run = RunRegistry(tmp_path).create(
        TrainConfig(model="/no/such/model", data=str(small_data)), pid=os.getpid()
    )
    (run.dir / "STOP").touch()
    info = run_training(run.dir)
    assert info.status == "stopped" and info.adapter_dir is None and info.error is None


def test_a_stop_landing_just_after_the_last_step_keeps_the_adapter_and_the_metrics(
    tiny_gemma3, shared_data, tmp_path, monkeypatch
):
    """The runner's SIGTERM can arrive after the callback's last look at the stop request (a fast machine,
    a short run): the run ends stopped before its evaluation, with the trained adapter and its figures."""
    import gemma_emotion.train as train_mod

    config = TrainConfig(model=str(tiny_gemma3), data=str(shared_data), train_size=16, epochs=1, test_size=4)
    run = RunRegistry(tmp_path).create(config, pid=os.getpid())
    stop = StopSignal(run.dir)
    end_of_training = train_mod._end_of_training

    def signal_then_end(*args, **kwargs):
        stop._handle(signal.SIGTERM, None)  # what the installed handler does when SIGTERM lands here
        return end_of_training(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_end_of_training", signal_then_end)
    info = run_training(run.dir, stop=stop)
    assert info.status == "stopped" and info.error is None, (info.status, info.error)
    steps = info.metrics["steps"]
    assert steps > 0 and info.ended == {"reason": "stopped", "step": steps}
    assert (info.adapter_dir / "adapter_config.json").is_file()
    assert "n_test" not in info.metrics  # the evaluation it skipped
    # Resumed, it has no step left to train: it evaluates and completes, every step logged once.
    monkeypatch.setattr(train_mod, "_end_of_training", end_of_training)
    done = train_mod.resume(run.dir.name, tmp_path)
    assert done.status == "completed" and done.ended == {"reason": "completed", "step": steps}, done.error
    assert done.metrics["steps"] == steps and done.metrics["n_test"] == 4
    logged = [r["step"] for r in RunRegistry(tmp_path).log(run.dir.name) if r.get("kind") == "train"]
    assert logged == sorted(set(logged)) and logged[-1] == steps


# -- the registry -------------------------------------------------------------------------------------
def test_registry_lists_newest_first_and_survives_bad_folders(tmp_path):
    registry = RunRegistry(tmp_path)
    first = registry.create(TrainConfig(name="first"), pid=os.getpid())
    first.update(status="completed", created_at="2026-01-01T00:00:00+00:00")
    registry.create(TrainConfig(name="second"), pid=os.getpid())
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    (tmp_path / "not-a-run").mkdir()
    names = [r.name for r in registry.list()]
    assert names.index("second") < names.index("first") and set(names) == {"first", "second", "broken"}
    broken = registry.get("broken")
    assert broken.status == "failed" and "unreadable" in broken.error
    assert registry.get("second").status == "running"  # this very process holds it
    with pytest.raises(RunNotFound, match="no run named 'nope'"):
        registry.get("nope")
    with pytest.raises(ValueError, match="not allowed"):
        registry.get("../first")
    with pytest.raises(ValueError, match="already exists"):
        registry.create(TrainConfig(name="first"))


def test_the_log_reader_skips_a_half_written_line(tmp_path):
    registry = RunRegistry(tmp_path)
    run = registry.create(TrainConfig(name="r"), pid=os.getpid())
    (run.dir / "log.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert [r["step"] for r in registry.log("r")] == [1, 2]
    assert [r["step"] for r in registry.log("r", since=1)] == [2]
    assert registry.read_log("r", 0)[1] == 2


def test_a_running_run_without_a_live_process_reads_as_failed(tmp_path):
    registry = RunRegistry(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = registry.create(TrainConfig(name="gone"), pid=proc.pid)
    info = registry.get("gone")
    assert info.status == "failed" and info.error == ENDED_UNEXPECTEDLY
    # A reused pid (another process now) is not mistaken for the training.
    run.update(pid=os.getpid(), pid_started=1.0)
    assert registry.get("gone").status == "failed"
    # A process that died before training started left its reason in process.log.
    (run.dir / "process.log").write_text("Traceback ...\nImportError: no module named torch\n\n")
    assert registry.get("gone").error == ENDED_UNEXPECTEDLY + ": ImportError: no module named torch"


# -- the runner: subprocesses -------------------------------------------------------------------------
def test_runner_streams_the_log_refuses_a_second_start_and_stops(tiny_gemma3, shared_data, tmp_path):
    runner = Runner(tmp_path)
    info = runner.start(_long_config(tiny_gemma3, shared_data))
    assert info.status == "running" and info.pid
    with pytest.raises(RunnerBusy, match=f"already training: {info.name}"):
        runner.start(_long_config(tiny_gemma3, shared_data))
    # Found again by a runner that did not start it (the app after a restart).
    assert Runner(tmp_path).active().name == info.name
    with pytest.raises(RunnerBusy):
        Runner(tmp_path).start(_long_config(tiny_gemma3, shared_data))

    seen: list[dict] = []
    stopper = None
    for record in runner.follow(info.name, poll=0.1):  # ends by itself once the run has ended
        seen.append(record)
        if len(seen) == 3 and stopper is None:  # the log grows while the training runs
            stopper = threading.Thread(target=runner.stop, kwargs={"timeout": 60})
            stopper.start()
    stopper.join()
    assert [r["step"] for r in seen] == sorted(r["step"] for r in seen) and len(seen) >= 3
    stopped = runner.registry.get(info.name)
    assert stopped.status == "stopped" and stopped.error is None
    assert (stopped.adapter_dir / "adapter_config.json").is_file()
    assert stopped.metrics["steps"] >= 3
    assert runner.active() is None and runner.stop() is None
    assert not runs_mod.process_alive(info.pid)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("phase", ["at once", "starting", "loading"])
def test_a_stop_at_any_moment_of_the_start_up_ends_the_run_stopped_and_the_next_start_works(
    tiny_gemma3, shared_data, tmp_path, phase
):
    """At once: the process is still starting Python (SIGTERM kills it before it handles signals). Then
    with the training process past its start ("loading": data, model, tokenising) it stops itself."""
    runner = Runner(tmp_path)
    info = runner.start(_long_config(tiny_gemma3, shared_data))
    if phase == "starting":
        time.sleep(0.3)
    elif phase == "loading":
        _wait_for(lambda: RunFile(info.path).record.get("phase") == "loading", "the loading phase")
    stopped = runner.stop(timeout=60)
    assert stopped.name == info.name
    assert stopped.status == "stopped", (stopped.status, stopped.error)
    assert stopped.error is None and stopped.adapter_dir is None
    assert stopped.phase == "done" and stopped.finished_at
    assert runner.active() is None and not runs_mod.process_alive(info.pid)
    # the next start works: it trains (a log line) and stops with its adapter
    again = runner.start(_long_config(tiny_gemma3, shared_data))
    _wait_for(lambda: runner.registry.log(again.name), "the second run's first log line")
    _assert_yields_the_cpu(again.pid, runner.registry.get(again.name).notes)
    assert runner.stop(timeout=60).status == "stopped"


def _assert_yields_the_cpu(pid: int, notes: list[str]) -> None:
    """A training the app started on a CPU runs at a lower priority with a core left to the app."""
    import psutil

    from gemma_emotion.sharing import NICENESS, available_cores, training_threads

    assert psutil.Process(pid).nice() == psutil.Process().nice() + NICENESS
    cores = available_cores()
    assert training_threads(cores) == max(1, cores - 1)
    assert f"beside the app on a CPU: {max(1, cores - 1)} thread(s) of {cores} core(s)" in " ".join(notes)


def test_a_killed_training_process_reads_as_failed(tiny_gemma3, shared_data, tmp_path):
    runner = Runner(tmp_path)
    info = runner.start(_long_config(tiny_gemma3, shared_data))
    _wait_for(lambda: runner.registry.log(info.name), "the first log line")
    os.kill(info.pid, signal.SIGKILL)
    _wait_for(
        lambda: not runs_mod.process_alive(info.pid, None) or runner.active() is None, "the process to die"
    )
    dead = RunRegistry(tmp_path).get(info.name)
    assert dead.status == "failed" and dead.error == ENDED_UNEXPECTEDLY
    assert runner.active() is None
    assert json.loads((dead.path / "run.json").read_text())["status"] == "running"  # only the reading changed


# -- the CLI ------------------------------------------------------------------------------------------
def test_cli_train_ctrl_c_stops_cleanly_and_keeps_the_adapter(tiny_gemma3, shared_data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [
        sys.executable, "-m", "gemma_emotion", "train", "--model", str(tiny_gemma3),
        "--data", str(shared_data), "--train-size", "16", "--epochs", "500",
        "--runs-dir", str(tmp_path), "--name", "interrupted",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        registry = RunRegistry(tmp_path)
        _wait_for(
            lambda: (tmp_path / "interrupted" / "log.jsonl").exists() and registry.log("interrupted"),
            "a step",
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    info = registry.get("interrupted")
    assert info.status == "stopped" and info.adapter_dir is not None
    assert "stopping after this step" in err and "run interrupted: stopped" in out

    listing = _cli("runs", "--runs-dir", str(tmp_path))
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^interrupted +stopped +16 ", listing.stdout, re.M), listing.stdout


def test_runs_command_lists_metrics(trained_run, capsys):
    from gemma_emotion.cli import main

    info = trained_run[0]
    assert main(["runs", "--runs-dir", str(info.path.parent)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny "))
    assert "completed" in line and "%" in line and "→" in line
    assert main(["runs", "--runs-dir", str(info.path.parent), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "tiny" and listed[0]["metrics"]["n_test"] == 24


def test_cli_train_rejects_bad_settings_with_one_line(tmp_path, capsys):
    from gemma_emotion.cli import main

    assert main(["train", "--epochs", "0", "--runs-dir", str(tmp_path)]) == 2
    assert main(["train", "--lr", "-1", "--runs-dir", str(tmp_path)]) == 2
    capsys.readouterr()
    for flag, value, message in (
        ("--lora-r", "0", "LoRA r must be a whole number >= 1"),
        ("--lora-alpha", "-4", "LoRA alpha must be positive"),
        ("--lora-dropout", "1.5", "LoRA dropout must be in [0, 1)"),
    ):
        assert main(["train", flag, value, "--runs-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert not any(tmp_path.iterdir())  # no run folder for a config that never started


def test_cli_train_refuses_while_a_run_is_training(tmp_path, capsys):
    from gemma_emotion.cli import main

    RunFile(RunRegistry(tmp_path).create(TrainConfig(name="busy"), pid=os.getpid()).dir)
    assert main(["train", "--runs-dir", str(tmp_path), "--model", "x"]) == 2
    assert "already training: busy" in capsys.readouterr().err


def test_two_processes_train_one_run(tiny_gemma3, shared_data, tmp_path):
    """The `train` command under a distributed launcher (torchrun here, as `accelerate launch` sets the same
    environment): one run folder, written by the main process, trained by both."""
    import subprocess
    import sys

    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "gemma_emotion", "train", "--model", str(tiny_gemma3), "--data", str(shared_data),
        "--train-size", "64", "--test-size", "10", "--runs-dir", str(tmp_path), "--name", "ddp",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("run ddp: completed") == 1  # the other rank prints nothing
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["ddp"]
    record = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert record["status"] == "completed" and record["world_size"] == 2
    # 64 rows in batches of 8 per process and 2 processes: 4 optimizer steps, not 8.
    assert record["total_steps"] == record["metrics"]["steps"] == 4
    lines = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "train"] == [1, 2, 3, 4]  # one writer, no duplicates
    assert (tmp_path / "ddp" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "ddp" / "reports" / "finetuned" / "metrics.json").is_file()


def test_balance_repeats_the_rarer_labels_until_every_label_is_as_frequent(shared_data, tmp_path):
    from collections import Counter

    from gemma_emotion.cli.train import config_from_args
    from gemma_emotion.data import load_split
    from gemma_emotion.train_data import balanced, prepare_data

    ds = load_split(shared_data, "train", limit=300, seed=5)
    counts = Counter(ds["label"])
    out = balanced(ds, seed=1)
    assert set(Counter(out["label"]).values()) == {max(counts.values())}
    assert set(out["text"]) == set(ds["text"])  # every row kept, none invented
    assert out["text"] == balanced(ds, seed=1)["text"]  # seeded
    assert out["text"] != balanced(ds, seed=2)["text"]

    data = prepare_data(TrainConfig(data=str(shared_data), train_size=300, balance=True), tmp_path)
    assert len(set(Counter(data.train["label"]).values())) == 1
    assert any("labels balanced" in note for note in data.notes)

    import argparse

    from gemma_emotion.cli.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--balance", "--data", str(shared_data)])
    assert config_from_args(args).balance is True


def test_adapter_input_cast_is_a_no_op_under_autocast(tiny_gemma3):
    """The lean step turns PEFT's fp32 cast of adapter inputs off under autocast (CUDA in training; CPU
    autocast stands in here): the same loss and adapter gradients, without the copies."""
    import torch
    from peft import LoraConfig, get_peft_model
    from peft.helpers import disable_input_dtype_casting

    from gemma_emotion.models import LoadOptions, load_model, lora_target_modules

    lm = load_model(str(tiny_gemma3), LoadOptions(dtype="bfloat16"))
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=lora_target_modules(lm.model))
    model = get_peft_model(lm.model, cfg)  # adapter weights fp32 over the bf16 model, as in training
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    ids = torch.tensor([[2, 10, 20, 30, 40, 50, 60]])

    def loss_and_grads(cast_off: bool):
        model.zero_grad()
        ctx = disable_input_dtype_casting(model) if cast_off else contextlib.nullcontext()
        with torch.autocast("cpu", dtype=torch.bfloat16), ctx:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_on, grads_on = loss_and_grads(False)
    loss_off, grads_off = loss_and_grads(True)
    assert loss_off == pytest.approx(loss_on, rel=1e-3)
    assert grads_on.keys() == grads_off.keys() and grads_on
    for name, g in grads_on.items():
        assert torch.allclose(g, grads_off[name], rtol=2e-2, atol=1e-3 * float(g.abs().max()) + 1e-8), name


# -- the config from the command line -------------------------------------------------------------------
def _train_args(*argv: str):
    import argparse

    from gemma_emotion.cli.train import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["train", *argv])


def test_the_train_command_takes_the_device_plans_defaults_and_can_turn_4bit_off(tmp_path, monkeypatch):
    import torch

    from gemma_emotion import plan
    from gemma_emotion.cli.train import config_from_args

    config = config_from_args(_train_args("--runs-dir", str(tmp_path)))
    expected = None if torch.cuda.is_available() else plan.CPU_TRAIN_ROWS
    assert config.train_size == expected and config.load_in_4bit is None  # as the Train tab's form
    monkeypatch.setattr(plan, "_device_type", lambda: "cpu")
    assert config_from_args(_train_args()).train_size == 1000
    assert config_from_args(_train_args("--train-size", "all")).train_size is None
    assert config_from_args(_train_args("--no-load-in-4bit")).load_in_4bit is False
    assert config_from_args(_train_args("--load-in-4bit")).load_in_4bit is True


def test_train_config_repeats_a_recorded_run_and_flags_override_it(tmp_path):
    from gemma_emotion.cli.train import config_from_args
    from gemma_emotion.config import ConfigError

    original = TrainConfig(name="first", data="d", train_size=50, epochs=3, lora_r=4, balance=True)
    run = RunRegistry(tmp_path).create(original, pid=os.getpid())
    for ref in ("first", str(run.dir), str(run.dir / "run.json")):
        repeat = config_from_args(_train_args("--config", ref, "--runs-dir", str(tmp_path)))
        assert repeat == dataclasses.replace(original, name=None)  # a fresh name: "first" is taken
    changed = config_from_args(_train_args("--config", "first", "--runs-dir", str(tmp_path), "--epochs", "1",
                                           "--no-balance", "--name", "second"))  # fmt: skip
    assert (changed.epochs, changed.balance, changed.name, changed.lora_r) == (1.0, False, "second", 4)
    with pytest.raises(ConfigError, match="no run.json there"):
        config_from_args(_train_args("--config", "nope", "--runs-dir", str(tmp_path)))


def test_the_run_folder_records_have_the_stated_shape(trained_run):
    from gemma_emotion.runfolder import LOG_KEYS, PHASES, RUN_KEYS, STATUSES, RunFile

    info = trained_run[0]
    record = json.loads((info.path / "run.json").read_text())
    assert set(record) <= RUN_KEYS and record["status"] in STATUSES and record["phase"] in PHASES
    lines = [json.loads(line) for line in (info.path / "log.jsonl").read_text().splitlines()]
    assert lines and all(set(line) <= LOG_KEYS and line["kind"] in ("train", "eval") for line in lines)
    with pytest.raises(KeyError, match="no field"):
        RunFile(info.path).update(statsu="completed")  # a typo never reaches run.json


def test_the_runner_refuses_a_start_whose_process_could_not_import_the_package(tmp_path, monkeypatch):
    import importlib.metadata

    from gemma_emotion.runs import RunsError

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.chdir(tmp_path)  # not the clone, and the package is not installed
    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(RunsError, match="pip install -e"):
        Runner(tmp_path / "runs").start(TrainConfig(model="x", train_size=8))
    assert not (tmp_path / "runs").exists()  # refused before any run folder
