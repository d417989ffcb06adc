"""The adapter we trained and ship in assets/: it loads by default for `embedded` and does its job."""

import json

import pytest

from gemma_emotion import paths
from gemma_emotion.models import resolve_adapter, shipped_adapter


def test_shipped_adapter_is_small_bf16_and_the_default():
    from safetensors import safe_open

    adapter = shipped_adapter()
    assert adapter is not None
    weights = adapter / "adapter_model.safetensors"
    assert weights.stat().st_size <= 10 * 2**20
    with safe_open(weights, "pt") as fh:
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} == {"torch.bfloat16"}
    assert resolve_adapter("embedded", None) == str(adapter)
    assert resolve_adapter("embedded", None, no_adapter=True) is None
    assert resolve_adapter("google/gemma-4-E4B-it", None) is None


def test_shipped_reports_tell_the_story():
    run = json.loads((paths.ASSETS / "run.json").read_text())
    # One epoch over all 16,000 training rows, the rarer labels repeated up to the commonest's count.
    assert run["status"] == "completed" and run["config"]["train_size"] is None
    assert run["config"]["epochs"] == 1
    assert run["config"]["balance"] is True and "labels balanced: 16000 rows became" in run["notes"][0]
    assert run["n_train"] == sum(run["label_counts"].values()) == 6 * max(run["label_counts"].values())
    assert run["metrics"]["finetuned_accuracy"] >= 0.93 and run["metrics"]["finetuned_macro_f1"] >= 0.89
    assert run["metrics"]["finetuned_generate_invalid"] == 0
    for name in ("base", "finetuned", "base_generate", "finetuned_generate"):
        metrics = json.loads((paths.ASSETS / "reports" / name / "metrics.json").read_text())
        assert metrics["n"] == 2000
        assert sum(map(sum, metrics["confusion"])) == 2000


@pytest.mark.embedded
def test_shipped_adapter_accuracy_on_300_test_rows(shared_data):
    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import load_split
    from gemma_emotion.evaluate import evaluate
    from gemma_emotion.models import LoadOptions, load_model

    ds = load_split(shared_data, "test", limit=300, seed=0)
    lm = load_model("embedded", LoadOptions(adapter=resolve_adapter("embedded", None)))
    clf = Classifier(lm)
    score = evaluate(clf, ds["text"], ds["label"], mode="score")
    assert score.accuracy > 0.90, score.metrics
    generate = evaluate(clf, ds["text"], ds["label"], mode="generate")
    assert generate.invalid == 0, [p["raw"] for p in generate.predictions if p["valid"] is False][:5]
    assert generate.accuracy > 0.88
