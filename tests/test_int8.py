"""Score mode on a CPU through int8 copies of the decoder's projections (gemma_emotion/int8.py)."""

from __future__ import annotations

import json
from unittest.mock import patch

import pytest
import torch

from gemma_emotion import int8
from gemma_emotion.classify import Classifier
from gemma_emotion.int8 import Int8Linear, int8_copy
from gemma_emotion.labels import LABELS
from gemma_emotion.models import LoadOptions, load_model

TEXTS = ["i feel so happy today", "i am scared of the dark", "this makes me furious", "what a surprise"]


def test_int8_linear_is_close_to_the_float_layer_and_each_row_is_its_own() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(640, 256)
    q = Int8Linear(linear)
    x = torch.randn(3, 40, 640) * torch.linspace(0.1, 10, 40)[None, :, None]  # rows of very different size
    want, got = linear(x), q(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    rel = (got - want).norm(dim=-1) / want.norm(dim=-1)
    assert float(rel.max()) < 0.02
    # A row's answer is the same alone as among others (its own input scale), to the bit.
    assert torch.equal(q(x[1:2, 7:8]), got[1:2, 7:8])
    assert q.weight_t.dtype == torch.int8 and q.weight_t.shape == (640, 256)


def test_int8_copy_shares_the_float_tensors_and_leaves_the_model_as_it_was(tiny_gemma3) -> None:
    lm = load_model(str(tiny_gemma3))
    model = lm.model
    ids = torch.tensor([[2, 10, 20, 30, 40]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        copy = int8_copy(model)
        after = model(input_ids=ids).logits
        quantised = copy(input_ids=ids).logits
    assert torch.equal(before, after)  # the original is untouched
    replaced = [m for m in copy.modules() if isinstance(m, Int8Linear)]
    assert len(replaced) == sum(1 for n, m in model.named_modules() if int8._replaceable(n, m)) > 0
    assert type(copy.lm_head) is torch.nn.Linear  # score mode reads its label rows in floating point
    originals = {id(p) for p in model.parameters()}
    assert all(id(p) in originals for p in copy.parameters())  # no float weight copied
    assert (quantised - before).abs().max() < 0.1 * before.abs().max()


def test_small_models_stay_in_float_and_large_ones_get_an_int8_copy(tiny_gemma3) -> None:
    lm = load_model(str(tiny_gemma3))
    assert not int8.worth_it(lm.model) and lm.inference_model() is lm.model
    lm = load_model(str(tiny_gemma3))  # the choice is made once per model state: a fresh load
    with patch.object(int8, "MIN_LINEAR_WEIGHTS", 0):
        copy = lm.inference_model()
        assert copy is not lm.model and any(isinstance(m, Int8Linear) for m in copy.modules())
        assert lm.inference_model() is copy  # made once per state
        preds = Classifier(lm).predict(TEXTS)
        assert all(p.valid and p.label in LABELS for p in preds)
    off = load_model(str(tiny_gemma3), LoadOptions(cpu_int8=False))
    with patch.object(int8, "MIN_LINEAR_WEIGHTS", 0):
        assert off.inference_model() is off.model


@pytest.mark.embedded
@pytest.mark.timeout(900)
def test_embedded_model_in_int8_gives_the_labels_of_fp32(shared_data) -> None:
    """The embedded 270M + shipped adapter on 64 test rows: int8 (the CPU default) against fp32, fine-tuned
    and base; the int8 copies are the base's and the merged adapter's."""
    with open(shared_data / "test.jsonl", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh][:64]
    from gemma_emotion.models import shipped_adapter

    lm = load_model("embedded", LoadOptions(adapter=str(shipped_adapter())))
    fp32 = load_model("embedded", LoadOptions(adapter=str(shipped_adapter()), cpu_int8=False))
    for adapter in (True, False):
        quick = Classifier(lm).predict(texts, adapter=adapter)
        slow = Classifier(fp32).predict(texts, adapter=adapter)
        assert sum(a.label == b.label for a, b in zip(quick, slow)) >= 62
    assert len(lm._int8) == 2 and all(m is not lm.model for m in lm._int8.values())
    tuned, base = (Classifier(lm).predict(texts[:4], adapter=a) for a in (True, False))
    assert [p.probabilities for p in tuned] != [p.probabilities for p in base]
    lm.detach_adapter()
    assert lm._int8 == {}


def test_a_frozen_int8_base_layer_passes_gradients_close_to_the_float_layers() -> None:
    from gemma_emotion.int8 import FrozenInt8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(640, 256).requires_grad_(False)
    layer = FrozenInt8Linear(linear)
    x = torch.randn(4, 30, 640, requires_grad=True)
    g = torch.randn(4, 30, 256)
    (linear(x) * g).sum().backward()
    want, x.grad = x.grad.clone(), None
    (layer(x) * g).sum().backward()
    assert float((x.grad - want).norm() / want.norm()) < 0.02
    assert layer(x.detach()).requires_grad is False  # no graph where none is asked for


def test_training_with_int8_base_layers_completes_and_its_adapter_serves(tiny_gemma3, shared_data, tmp_path):
    """`--int8` (off by default): every LoRA layer's base in int8, the run completes with a falling loss,
    the note says so, and the adapter (LoRA weights only) loads and labels."""
    from gemma_emotion.config import TrainConfig
    from gemma_emotion.models import lora_target_modules
    from gemma_emotion.runfolder import LOG_FILE, read_log
    from gemma_emotion.train import train

    config = TrainConfig(model=str(tiny_gemma3), data=str(shared_data), train_size=64, epochs=2, test_size=0,
                         int8=True, name="int8")  # fmt: skip
    info = train(config, tmp_path)
    assert info.status == "completed", info.error
    record = json.loads((info.path / "run.json").read_text())
    n = len(lora_target_modules(load_model(str(tiny_gemma3)).model))
    assert f"frozen base layers in int8: {n} (--int8)" in record["notes"]
    losses = [r["loss"] for r in read_log(info.path / LOG_FILE)[0] if r.get("kind") == "train"]
    assert losses and losses[-1] < losses[0]
    lm = load_model(str(tiny_gemma3), LoadOptions(adapter=str(info.adapter_dir)))
    assert all(p.valid for p in Classifier(lm).predict(TEXTS))
    default = train(TrainConfig(model=str(tiny_gemma3), data=str(shared_data), train_size=16, test_size=0,
                             name="default"), tmp_path)  # fmt: skip
    notes = json.loads((default.path / "run.json").read_text())["notes"]
    assert default.status == "completed" and not any("int8" in note for note in notes)
