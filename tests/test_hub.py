"""Adapters and corrections as the Hub takes them: base models named by Hub id, model cards that
huggingface_hub's own parser reads with `model-index` results equal to the run's metrics.json, pushes of
adapter + card + reports (only the network calls replaced: tests/hubfake.py), a merged model's card, the
Train tab's push, and corrections as a dataset folder that `datasets.load_dataset` reads with its label
names."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from hubfake import FakeHub
from huggingface_hub import DatasetCard, ModelCard
from huggingface_hub.repocard import metadata_load

from gemma_emotion import paths
from gemma_emotion.cards import EMBEDDED_HUB_ID, base_model_id
from gemma_emotion.labels import LABELS

SECRET = "hf_NotARealTokenButSecret42"


def model_index(card_path: Path) -> dict[tuple[str, str], float]:
    """{(metric type, config): value} of a card's model-index, read by huggingface_hub's parser."""
    meta = metadata_load(card_path)
    out = {}
    for entry in meta["model-index"]:
        for result in entry["results"]:
            assert result["task"]["type"] == "text-classification"
            for metric in result["metrics"]:
                out[(metric["type"], metric["config"])] = metric["value"]
    return out


def expected_index(reports: Path) -> dict[tuple[str, str], float]:
    out = {}
    for folder, mode in (("finetuned", "score"), ("finetuned_generate", "generate")):
        file = reports / folder / "metrics.json"
        if file.is_file():
            metrics = json.loads(file.read_text())
            out[("accuracy", mode)] = metrics["accuracy"]
            out[("f1", mode)] = metrics["macro_f1"]
    return out


# -- names of base models ---------------------------------------------------------------------------------
def test_base_models_are_named_by_hub_id_or_folder_name(tmp_path):
    checkpoint = tmp_path / "my-checkpoint"
    checkpoint.mkdir()
    assert base_model_id("embedded") == EMBEDDED_HUB_ID == "google/gemma-3-270m"
    assert base_model_id("google/gemma-4-E4B-it") == "google/gemma-4-E4B-it"
    assert base_model_id(str(checkpoint)) == "my-checkpoint"
    assert base_model_id(str(tmp_path / "weights" / "gemma.Q4_K_M.gguf")) == "gemma.Q4_K_M.gguf"


# -- the shipped adapter ----------------------------------------------------------------------------------
def test_the_shipped_adapter_names_a_hub_id_and_its_card_its_results():
    adapter = paths.ASSETS / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == EMBEDDED_HUB_ID
    card = ModelCard.load(adapter / "README.md")
    meta = metadata_load(adapter / "README.md")
    assert meta["base_model"] == card.data.base_model == EMBEDDED_HUB_ID
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert meta["datasets"] == ["dair-ai/emotion"] and meta["license"] == "gemma"
    assert {"lora", "peft", "text-classification"} <= set(meta["tags"])
    index = model_index(adapter / "README.md")
    assert index == expected_index(paths.ASSETS / "reports")
    assert index[("accuracy", "score")] == 0.9335
    assert "dequantised" in card.text and "Q4_K_M" in card.text
    for name in LABELS:
        assert f"| {name} |" in card.text


# -- a fresh run's adapter --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_gemma3, shared_data):
    """A tiny run through the `train` command, scored in both modes after training."""
    from gemma_emotion.cli import main
    from gemma_emotion.runs import RunRegistry

    runs_dir = tmp_path_factory.mktemp("hub-runs")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([
            "train", "--model", str(tiny_gemma3), "--data", str(shared_data), "--train-size", "16",
            "--epochs", "1", "--test-size", "12", "--eval-generate", "--name", "card",
            "--runs-dir", str(runs_dir),
        ])  # fmt: skip
    info = RunRegistry(runs_dir).get("card")
    assert code == 0 and info.status == "completed", (info.error, err.getvalue()[-2000:])
    return info


@pytest.mark.timeout(600)
def test_a_runs_adapter_has_a_hub_ready_config_and_a_card_with_its_results(run, tiny_gemma3):
    adapter = run.adapter_dir
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_gemma3.name  # a local checkpoint: its folder name
    card = ModelCard.load(adapter / "README.md")
    assert card.data.library_name == "peft" and card.data.base_model is None  # not on the Hub
    assert f"`{tiny_gemma3.name}`; it is not on the Hub" in card.text
    index = model_index(adapter / "README.md")
    assert set(index) == {
        ("accuracy", "score"),
        ("f1", "score"),
        ("accuracy", "generate"),
        ("f1", "generate"),
    }
    assert index == expected_index(run.path / "reports")
    assert '"name": "card"' in card.text and '"eval_generate": true' in card.text  # the run's config


@pytest.mark.timeout(600)
def test_push_uploads_adapter_card_and_reports(run, monkeypatch, capsys, tmp_path):
    from gemma_emotion.cli import main

    monkeypatch.setenv("HF_TOKEN", SECRET)
    with FakeHub().patched() as hub:
        assert main(["push", "--adapter", str(run.adapter_dir), "--repo", "me/emotion-lora"]) == 0
    assert hub.repos == [("me/emotion-lora", {"repo_type": "model", "private": True, "exist_ok": True})]
    assert set(hub.tokens) == {SECRET}
    files = set(hub.files)
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= files
    assert {"reports/finetuned/metrics.json", "reports/base_generate/predictions.csv"} <= files
    assert hub.commits[-1]["files"] and "README.md" in hub.commits[-1]["files"]  # the adapter commit last
    pushed = hub.write_to(tmp_path / "repo")
    card = ModelCard.load(pushed / "README.md")
    assert card.data.model_name == "me/emotion-lora"
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/emotion-lora")' in card.text
    assert model_index(pushed / "README.md") == expected_index(pushed / "reports")
    out = capsys.readouterr()
    assert "pushed adapter" in out.out and SECRET not in out.out + out.err


@pytest.mark.timeout(600)
def test_merge_writes_the_card_beside_the_merged_model(run, tmp_path):
    from gemma_emotion.cli import main

    out = tmp_path / "merged"
    assert main(["merge", "--adapter", str(run.adapter_dir), "--out", str(out), "--dtype", "float32"]) == 0
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "merged-lora" in card.data.tags
    assert "AutoModelForCausalLM.from_pretrained" in card.text
    assert model_index(out / "README.md") == expected_index(run.path / "reports")


@pytest.mark.timeout(600)
def test_the_train_tab_pushes_the_shown_run_and_says_what_is_missing(run, monkeypatch, tmp_path):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.state import AppState, UserError
    from gemma_emotion.ui.train import push_run

    storage = run.path.parent
    state = AppState(load_settings(None, env={}, overrides={"storage": str(storage), "demo_mode": False}))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub().patched() as hub, pytest.raises(UserError, match="set HF_TOKEN"):
        push_run(state, "card", "me/x")
    assert hub.commits == []
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with pytest.raises(UserError, match="pick a run"):
        push_run(state, None, "me/x")
    with FakeHub().patched() as hub:
        url = push_run(state, "card", "me/x", private=False)
    assert url == "https://huggingface.co/me/x" and hub.repos[0][1]["private"] is False
    assert "adapter_model.safetensors" in hub.files
    with FakeHub().patched(), pytest.raises(UserError, match="not a Hub repo id"):
        push_run(state, "card", "not a repo")
    demo = AppState(load_settings(None, env={}, overrides={"storage": str(storage), "demo_mode": True}))
    with pytest.raises(UserError, match="switched off in this demo"):
        push_run(demo, "card", "me/x")


def test_the_push_button_is_not_in_the_demo(tmp_path):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui import AppState, build_app

    def elem_ids(demo: bool) -> set[str]:
        settings = load_settings(
            None, env={}, overrides={"storage": str(tmp_path / str(demo)), "demo_mode": demo}
        )
        app = build_app(AppState(settings))
        return {c.get("props", {}).get("elem_id") for c in app.get_config_file()["components"]}

    assert "train-push" in elem_ids(False)
    assert "train-push" not in elem_ids(True)


# -- corrections as a dataset -----------------------------------------------------------------------------
def test_corrections_export_to_a_folder_that_load_dataset_reads_with_label_names(tmp_path, capsys):
    import datasets

    from gemma_emotion.cli import main
    from gemma_emotion.corrections import CorrectionStore

    store = CorrectionStore(tmp_path / "runs")
    store.add(
        "i cannot stop smiling", "joy", annotator="ana", model="embedded", adapter="/srv/runs/r7/adapter"
    )
    store.add("the dark hallway again", "fear", annotator="ana", predicted="sadness", source="evaluation")
    store.add("the dark hallway again", "fear", annotator="bo")
    store.add("you remembered my birthday", "love")
    out = tmp_path / "export"
    args = ["export", "--runs-dir", str(tmp_path / "runs"), "--format", "hf-dataset", "--out", str(out)]
    assert main(args) == 0
    assert "wrote 3 corrections as a dataset" in capsys.readouterr().err
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.features["label"].names == list(LABELS)
    rows = {r["text"]: r for r in ds}
    joy = rows["i cannot stop smiling"]
    assert ds.features["label"].int2str(joy["label"]) == "joy"
    assert (joy["annotator"], joy["model"], joy["adapter"]) == (
        "ana",
        EMBEDDED_HUB_ID,
        "r7",
    )  # no server path
    assert rows["the dark hallway again"]["predicted"] == "sadness"
    assert {"source", "source_ref", "created_at", "updated_at", "n_edits", "gold"} <= set(ds.column_names)
    card = DatasetCard.load(out / "README.md")
    assert card.data.task_categories == ["text-classification"]
    assert (
        metadata_load(out / "README.md")["dataset_info"]["features"][1]["dtype"]["class_label"]["names"]["1"]
        == "joy"
    )
    assert "| ana / bo | 1 | 100.0 % | n/a |" in card.text  # one text in common, the same label
    # Exporting again replaces the earlier export; a folder holding anything else is refused.
    assert main(args) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    args[-1] = str(other)
    assert main(args) == 2
    assert "not an earlier corrections export" in capsys.readouterr().err and (other / "keep.txt").exists()
