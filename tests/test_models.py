"""Model loading (the Gemma 4 text-only trap included), classification in both modes, adapters, CLI."""

import csv
import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from safetensors.torch import load_file

from gemma_emotion.classify import Classifier
from gemma_emotion.labels import LABELS
from gemma_emotion.models import (
    LoadOptions,
    ModelLoadError,
    load_model,
    lora_target_modules,
    resolve_spec,
)

TEXTS = ["i feel so happy today", "i am angry at the world and everyone in it", "i feel scared", "i miss her"]


def _checkpoint_tensors(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def test_gemma4_multimodal_loads_text_only_with_the_checkpoints_weights(tiny_gemma4_mm):
    lm = load_model(str(tiny_gemma4_mm))
    assert type(lm.model).__name__ == "Gemma4ForCausalLM"
    assert not any("vision" in n or "audio" in n for n, _ in lm.model.named_parameters())
    saved = _checkpoint_tensors(tiny_gemma4_mm)
    loaded = lm.model.state_dict()
    compared = 0
    for key, value in saved.items():
        if not key.startswith("model.language_model."):
            continue
        mine = loaded[key.replace("model.language_model.", "model.", 1)]
        assert torch.equal(mine, value.to(mine.dtype)), key
        compared += 1
    assert compared == len([k for k in loaded if not k.startswith("lm_head")])


def test_the_random_weights_trap_is_real_and_refused(tiny_gemma4_mm, monkeypatch):
    """A naive Gemma4ForCausalLM load of a multimodal checkpoint leaves weights random; ours refuses it."""
    from transformers import Gemma4ForCausalLM

    naive = Gemma4ForCausalLM.from_pretrained(tiny_gemma4_mm)
    saved = _checkpoint_tensors(tiny_gemma4_mm)
    emb = saved["model.language_model.embed_tokens.weight"]
    assert not torch.equal(naive.model.embed_tokens.weight.detach(), emb)  # the trap: random init

    import gemma_emotion.models as models

    monkeypatch.setattr(models, "GEMMA4_TEXT_KEY_MAPPING", {r"^nothing$": "x"})
    with pytest.raises(ModelLoadError, match="not found in the checkpoint"):
        load_model(str(tiny_gemma4_mm))


def test_lora_targets_skip_the_clippable_tower(tiny_gemma4_mm):
    from transformers import AutoConfig, Gemma4ForConditionalGeneration

    full = Gemma4ForConditionalGeneration.from_pretrained(
        tiny_gemma4_mm, config=AutoConfig.from_pretrained(tiny_gemma4_mm)
    )
    targets = lora_target_modules(full)
    assert targets and all("language_model" in t for t in targets)
    assert not any("vision" in t for t in targets)
    # KV-shared layers have no k_proj/v_proj of their own: 4 layers, 2 shared → 2 k_proj
    assert sum(t.endswith("k_proj") for t in targets) == 2


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("fixture", ["tiny_gemma3", "tiny_gemma4"])
def test_score_mode_matches_an_uncached_forward(fixture, softcap, request):
    lm = load_model(str(request.getfixturevalue(fixture)))
    # Gemma 4 E4B caps its logits (30.0); the six-row head must cap them the same way.
    lm.model.config.get_text_config().final_logit_softcapping = softcap
    clf = Classifier(lm)
    preds = clf.predict(TEXTS, "score", batch_size=3)
    # The fast path (six LM-head rows) is what ran, not the full-vocabulary fallback.
    assert clf._label_head(lm.inference_model()) is not None
    # The prefix cache is shared by the rows as views, not copied (Gemma 4's KV-shared layers included).
    from gemma_emotion.classify import expand_cache

    stored = next(v[1] for k, v in clf._cache_store.items() if k[0] != "head" and k[0] != "prior")
    rows = expand_cache(stored, 3)
    kept = [(a, b) for a, b in zip(stored.layers, rows.layers) if a.keys is not None]
    assert kept and all(b.keys.shape[0] == 3 and b.keys.data_ptr() == a.keys.data_ptr() for a, b in kept)
    for text, pred in zip(TEXTS, preds):
        assert pred.valid and pred.label in LABELS
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([clf.prompt_ids(text)])).logits[0, -1]
        ref = torch.softmax(logits[clf._label_ids], -1)
        for i, name in enumerate(LABELS):
            assert pred.probabilities[name] == pytest.approx(ref[i].item(), abs=1e-4)


def test_batches_follow_lengths_so_long_texts_do_not_pad_short_ones():
    from gemma_emotion.classify import plan_batches

    lengths = [5] * 100 + [60] * 3 + [9, 12, 17]
    fixed = plan_batches(lengths, 512)
    assert len(fixed) == 1  # one batch of 106 rows, all padded to 60 tokens
    planned = plan_batches(lengths, 512, multiple=8, min_tokens=256)
    # 100 rows of 5 (8 wide) hold 800 tokens, so the width growing to 16 starts a batch; three short rows
    # are too few to stand alone, so they ride with the 60s (64 wide)
    assert [[lengths[i] for i in b] for b in planned] == [[5] * 100, [9, 12, 17] + [60] * 3]
    for plan in (fixed, planned, plan_batches(lengths, 7, multiple=8, min_tokens=256)):
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 512 for b in plan)
    assert all(len(b) <= 7 for b in plan_batches(lengths, 7, multiple=8, min_tokens=256))

    def computed(plan):
        return sum(len(b) * -(-max(lengths[i] for i in b) // 8) * 8 for b in plan)

    assert computed(planned) < computed(fixed) / 2
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(lengths, 0)


@pytest.mark.parametrize("fast", [True, False], ids=["spliced", "rendered"])
def test_prompts_kept_as_flat_arrays_give_each_texts_own_prompt(tiny_gemma3, fast):
    """`encode` keeps many prompts in flat arrays (the prefix once); every way of reading a prompt back
    (row, a slice, indices in any order, with the prefix put back) gives the ids of that text's own chat
    prompt, rendered through the template one text at a time; a text over the limit is cut and flagged."""
    from gemma_emotion.classify import MAX_TEXT_TOKENS

    clf = Classifier(load_model(str(tiny_gemma3)))
    texts = [*TEXTS, "  padded with spaces  ", "word " * (MAX_TEXT_TOKENS + 50)]
    enc = clf._encode_many(texts, fast=fast)
    rendered = [clf._encode_slow(t) for t in texts[:-1]]
    assert enc.rows()[:-1] == rendered and len(enc) == len(texts)
    assert enc.prefix == tuple(clf._prefix_ids) and len(enc.prefix) > 10  # stored once, not per text
    assert enc.truncated.tolist() == [False] * (len(texts) - 1) + [True]
    assert len(enc.row(len(texts) - 1)) == len(enc.prefix) + MAX_TEXT_TOKENS + len(clf._tail_ids)
    assert enc.take(slice(1, 4)).rows() == enc.rows()[1:4]
    assert enc.take([5, 0, 2]).rows() == [enc.row(5), enc.row(0), enc.row(2)]
    assert enc.take(slice(3, 3)).rows() == [] and enc.take(slice(0, 6, 2)).rows() == enc.rows()[0:6:2]
    ids, lengths = enc.take([2, 1]).whole()
    assert lengths.tolist() == [len(enc.row(2)), len(enc.row(1))]
    assert ids.tolist() == enc.row(2) + enc.row(1)


@pytest.mark.parametrize("fixture", ["tiny_gemma3", "tiny_gemma4"])
@pytest.mark.parametrize("mode", ["score", "generate"])
def test_length_planned_batches_give_the_same_predictions(fixture, mode, monkeypatch, request):
    """What a GPU runs (batches cut where the width grows, padded to 8), here on a CPU: same answers as one
    text at a time, Gemma 4's KV-shared layers over the shared prefix's cache included."""
    from gemma_emotion import classify

    texts = [*TEXTS, "a much longer text that goes on and on about how the day went and what happened"]
    clf = Classifier(load_model(str(request.getfixturevalue(fixture))))
    ref = clf.predict(texts, mode, batch_size=1)
    seen = []
    plan = classify.plan_batches

    def gpu_plan(lengths, max_rows, **_):
        seen.append(plan(lengths, max_rows, multiple=8, min_tokens=8))
        return seen[-1]

    monkeypatch.setattr(classify, "plan_batches", gpu_plan)
    got = clf.predict(texts, mode, batch_size=4)
    assert len(seen[0]) > 1 and sorted(len(b) for b in seen[0]) != [1] * len(texts)
    assert [p.label for p in got] == [p.label for p in ref] and [p.raw for p in got] == [p.raw for p in ref]
    if mode == "score":
        for a, b in zip(got, ref):
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_gemma3", "tiny_gemma4"])
def test_batched_generate_equals_one_at_a_time(fixture, request):
    lm = load_model(str(request.getfixturevalue(fixture)))
    clf = Classifier(lm)
    batched = clf.predict(TEXTS, "generate", batch_size=4)
    single = [clf.predict([t], "generate", batch_size=1)[0] for t in TEXTS]
    assert [p.raw for p in batched] == [p.raw for p in single]
    for p in batched:  # a random model rambles: its answers are invalid, and said so
        assert p.valid == (p.label in LABELS) and (p.valid or p.label == "invalid")


def _random_adapter(model_dir: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    lm = load_model(str(model_dir))
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_modules(lm.model), init_lora_weights=False)
    peft_model = get_peft_model(lm.model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    return out


def test_adapter_switches_off_and_on_in_one_model(tiny_gemma3, tmp_path):
    adapter = _random_adapter(tiny_gemma3, tmp_path / "adapter")
    base_only = Classifier(load_model(str(tiny_gemma3))).predict(TEXTS)
    lm = load_model(str(tiny_gemma3), LoadOptions(adapter=str(adapter)))
    clf = Classifier(lm)
    off = clf.predict(TEXTS, adapter=False)
    on = clf.predict(TEXTS, adapter=True)
    for a, b in zip(base_only, off):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
    assert any(a.probabilities != pytest.approx(b.probabilities, abs=1e-3) for a, b in zip(off, on))
    assert clf.predict(TEXTS, adapter=False)[0].probabilities == pytest.approx(off[0].probabilities, abs=1e-6)


@pytest.mark.parametrize("fixture", ["tiny_gemma3", "tiny_gemma4"])
def test_merged_adapter_predicts_as_unmerged_and_leaves_the_base_untouched(fixture, request, tmp_path):
    model_dir = request.getfixturevalue(fixture)
    adapter = _random_adapter(model_dir, tmp_path / "adapter")
    lm = load_model(str(model_dir), LoadOptions(adapter=str(adapter)))
    clf = Classifier(lm)
    base_weights = {n: p.detach().clone() for n, p in lm.model.named_parameters() if "base_layer" in n}
    merged = clf.predict(TEXTS, "score")
    merged_gen = clf.predict(TEXTS, "generate")
    assert lm._merged is not None and lm.adapter_active  # merged copies made and kept
    with lm.use(adapter=False):
        assert not lm.adapter_active
    for n, p in lm.model.named_parameters():
        if "base_layer" in n:
            assert torch.equal(p, base_weights[n]), n
    lm._merged = None
    with patch("gemma_emotion.models._merge_budget", return_value=0):  # no room: the adapter runs as it is
        clf.invalidate_cache()
        unmerged = clf.predict(TEXTS, "score")
        unmerged_gen = clf.predict(TEXTS, "generate")
    assert lm._merged is None
    for a, b in zip(merged, unmerged):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
    assert [p.raw for p in merged_gen] == [p.raw for p in unmerged_gen]
    base = clf.predict(TEXTS, adapter=False)
    assert any(a.probabilities != pytest.approx(b.probabilities, abs=1e-3) for a, b in zip(base, merged))

    # The adapter's weights move (an optimizer step, a reload): the merged copies follow.
    with torch.no_grad():
        for n, p in lm.model.named_parameters():
            if "lora_B" in n:
                p.mul_(-1)
    clf.invalidate_cache()
    moved = clf.predict(TEXTS, "score")
    lm._merged = None
    with patch("gemma_emotion.models._merge_budget", return_value=0):
        clf.invalidate_cache()
        moved_unmerged = clf.predict(TEXTS, "score")
    for a, b in zip(moved, moved_unmerged):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-4)
    assert any(a.probabilities != pytest.approx(b.probabilities, abs=1e-3) for a, b in zip(moved, merged))


def test_adapter_for_another_model_is_refused(tiny_gemma3, tiny_gemma4, tmp_path):
    adapter = _random_adapter(tiny_gemma4, tmp_path / "g4-adapter")
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_model(str(tiny_gemma3), LoadOptions(adapter=str(adapter)))
    with pytest.raises(ModelLoadError, match="not a LoRA adapter"):
        load_model(str(tiny_gemma3), LoadOptions(adapter=str(tmp_path)))


def test_model_specs(tmp_path):
    assert resolve_spec("embedded").kind == "embedded"
    assert resolve_spec("google/gemma-4-E4B-it").kind == "hub"
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_spec(str(tmp_path))
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_spec(str(tmp_path / "x.gguf"))
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model("google/gemma-4-E4B-it", LoadOptions(device="cpu", load_in_4bit=True))


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "gemma_emotion", *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def test_cli_classify_json(tiny_gemma4):
    out = _cli("classify", "i feel so happy today", "--model", str(tiny_gemma4), "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"label", "valid", "probabilities", "raw", "latency_ms"}
    assert result["label"] in LABELS and result["valid"] is True
    assert set(result["probabilities"]) == set(LABELS)
    gen = json.loads(
        _cli(
            "classify", "i feel so happy", "--model", str(tiny_gemma4), "--json", "--mode", "generate"
        ).stdout
    )
    assert gen["probabilities"] is None and isinstance(gen["raw"], str)


def test_cli_classify_says_when_the_text_was_cut(tiny_gemma3):
    out = _cli("classify", "i feel fine " * 400, "--model", str(tiny_gemma3))
    assert out.returncode == 0, out.stderr
    assert "note: the text was cut to the model's limit" in out.stderr
    short = _cli("classify", "i feel fine", "--model", str(tiny_gemma3))
    assert short.returncode == 0 and "was cut" not in short.stderr


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_cli_eval_writes_a_report(tiny_gemma3, shared_data, tmp_path, mode):
    out = _cli("eval", "--model", str(tiny_gemma3), "--data", str(shared_data), "--limit", "24",
               "--mode", mode, "--out", str(tmp_path / "r"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "per_class", "invalid", "n", "confusion", "mode", "model", "adapter"):
        assert key in metrics
    assert metrics["n"] == 24 and metrics["mode"] == mode
    assert sum(map(sum, metrics["confusion"])) == 24
    with open(tmp_path / "r" / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 25 and rows[0][:3] == ["text", "gold", "predicted"]
    assert "accuracy" in out.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["classify", "hi", "--model", "no-such-org/no-such-model"],
            "could not load model 'no-such-org/no-such-model'",
        ),
        (["eval", "--data", "/nonexistent/folder/x.jsonl"], "no such file or folder"),
        (["classify", "   "], "empty text"),
        # cuda:99 exists nowhere: on a CPU machine there is no CUDA at all, on a GPU host not that index.
        (["classify", "i am sad", "--device", "cuda:99"], "error: device 'cuda:99': this machine has "),
        (["classify", "i am sad", "--device", "warp9"], "error: unknown device 'warp9': use cpu, cuda"),
        (["classify", "i am sad", "--model", __file__], "this is a file; give a model folder"),
    ],
)
def test_cli_errors_are_one_clear_line(args, message):
    out = _cli(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2, out.stderr  # the error, and at most the data line


def test_cli_malformed_file(tmp_path, tiny_gemma3):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": 1}\n{"text": "x", "label": "happy"}\n')
    out = _cli("eval", "--model", str(tiny_gemma3), "--data", str(bad))
    assert out.returncode != 0 and "bad.jsonl, line 2" in out.stderr and "Traceback" not in out.stderr


def test_every_command_has_help():
    from gemma_emotion.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"classify", "eval"} <= set(sub.choices)
    for name, p in sub.choices.items():
        text = p.format_help()
        assert text.startswith("usage:"), name
        assert p.description and " ".join(p.description.split()).startswith(
            " ".join(text.split("\n\n")[1].split())[:60]
        ), name  # the help opens with what the command does
        for action in p._actions:  # every option says what it does
            assert action.help or action.dest == "help", (name, action.dest)
        assert any("-v" in action.option_strings for action in p._actions), name  # -v after the command too
    # -v before or after the command, and neither.
    assert parser.parse_args(["corrections", "-v"]).verbose is True
    assert parser.parse_args(["-v", "corrections"]).verbose is True
    assert parser.parse_args(["corrections"]).verbose is False


@pytest.mark.parametrize("fixture", ["tiny_gemma3", "tiny_gemma4"])
def test_fused_rms_norms_give_the_models_own_outputs(fixture, request):
    from gemma_emotion.fused import fuse_rms_norms

    lm = load_model(str(request.getfixturevalue(fixture)))
    with torch.no_grad():  # norms that are not at their initial values, so each formula is told apart
        for name, p in lm.model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    norms = [m for m in lm.model.modules() if type(m).__name__.endswith("RMSNorm")]
    ids = torch.tensor([[2, 100, 200, 300, 400, 500]])
    with torch.no_grad():
        before = lm.model(input_ids=ids).logits
        assert fuse_rms_norms(lm.model) == len(norms) > 0
        assert fuse_rms_norms(lm.model) == 0  # once only
        after = lm.model(input_ids=ids).logits
    assert torch.allclose(before, after, atol=1e-4, rtol=1e-4)
    formulas = {m._fused_formula for m in norms}
    assert formulas == ({"one_plus_weight"} if fixture == "tiny_gemma3" else {"weight", "none"})


def _bf16_with_moved_norms(model_dir) -> tuple[torch.nn.Module, torch.Tensor]:
    """A tiny model in bf16 with its norm weights moved off their init (so `1 + w` and `w` differ from
    constants), and one row of token ids."""
    model = load_model(str(model_dir)).model.to(torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model, torch.tensor([[2, 100, 200, 300, 400, 500]])


def test_gemma4_norms_run_on_bf16_with_the_models_own_outputs_and_gradients(tiny_gemma4, monkeypatch):
    """In bf16, Gemma 4's norms skip the fp32 copies (one rounding either way): same logits and gradients,
    under autocast too, which must not hand the kernel fp32 copies or change the output's dtype."""
    from gemma_emotion import fused

    model, ids = _bf16_with_moved_norms(tiny_gemma4)

    def run(autocast: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            logits = model(input_ids=ids).logits
        logits.float().square().mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    own = {a: run(a) for a in (False, True)}
    calls = []
    orig = fused._apply_native
    monkeypatch.setattr(fused, "_apply_native", lambda m, h, *w: calls.append(h.dtype) or orig(m, h, *w))
    fused.fuse_rms_norms(model)
    for autocast in (False, True):
        logits, grads = run(autocast)
        assert logits.dtype == own[autocast][0].dtype
        # bit-identical on a CPU today; a little room for another reduction order
        assert torch.allclose(logits.float(), own[autocast][0].float(), atol=1e-3, rtol=1e-3)
        for g, ref in zip(grads, own[autocast][1], strict=True):
            assert g.dtype == ref.dtype
            assert torch.allclose(g.float(), ref.float(), atol=1e-3 * float(ref.abs().max()) + 1e-6)
    assert calls and set(calls) == {torch.bfloat16}


def test_gemma3_norms_run_on_bf16_in_inference_and_exactly_in_training(tiny_gemma3, monkeypatch):
    """Gemma 3's `1 + w` is not a bf16 number: inference runs the norm on the bf16 activation with `1 + w`
    rounded to bf16 (one kernel, labels unchanged on the real model: benchmarks/README.md), training keeps
    the exact fp32 path, bit for bit the model's own."""
    from gemma_emotion import fused

    model, ids = _bf16_with_moved_norms(tiny_gemma3)
    with torch.inference_mode():
        own_inference = model(input_ids=ids).logits.float()
    own_training = model(input_ids=ids).logits.float()
    native = []
    orig = fused._apply_native
    monkeypatch.setattr(fused, "_apply_native", lambda m, h, *w: native.append(bool(w)) or orig(m, h, *w))
    assert fused.fuse_rms_norms(model) > 0
    native.clear()  # recognising each norm tried the candidates
    training = model(input_ids=ids).logits.float()
    assert native == [] and torch.equal(training, own_training)
    with torch.inference_mode():
        inference = model(input_ids=ids).logits.float()
    assert native and all(native)  # every norm on bf16, with the rounded `1 + w`
    assert not torch.equal(inference, own_inference)  # the rounding is real...
    scale = float(own_inference.abs().max())
    assert float((inference - own_inference).abs().max()) < 0.05 * scale  # ...and small
    monkeypatch.setattr(fused, "ONE_PLUS_IN_BF16", False)
    native.clear()
    with torch.inference_mode():
        exact = model(input_ids=ids).logits.float()
    assert native == [] and torch.equal(exact, own_inference)


def test_a_norm_with_an_unknown_formula_keeps_its_own_forward():
    from gemma_emotion.fused import fuse_rms_norms

    class OddRMSNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.eps, self.weight = 1e-6, torch.nn.Parameter(torch.randn(8))

        def forward(self, x):
            return x * self.weight  # not a root-mean-square norm at all

    odd = OddRMSNorm()
    assert fuse_rms_norms(odd) == 0 and "forward" not in odd.__dict__


@pytest.mark.parametrize(
    ("hidden", "card_gib", "expected"),
    [
        (640, 16, 4096),
        (640, 141, 4096),
        (2560, 141, 2048),
        (2560, 79.2, 2048),
        (2560, 48, 1024),
        (2560, 24, 512),
        (0, 80, 2048),
    ],  # fmt: skip
)
def test_score_batches_on_a_gpu_follow_the_model_and_the_cards_memory(hidden, card_gib, expected):
    """The rows a CUDA score batch holds: small models 4,096 whatever the card; larger ones 2,048 on an
    80 GB card (79.2 GiB: an H100) or more, 1,024 from 48 GiB (each measured faster on an H200), 512 below.
    Generate mode and the CPU keep theirs."""
    from types import SimpleNamespace

    from gemma_emotion.classify import default_batch_size

    config = SimpleNamespace(get_text_config=lambda: SimpleNamespace(hidden_size=hidden))
    lm = SimpleNamespace(device=torch.device("cuda", 0), model=SimpleNamespace(config=config))
    card = SimpleNamespace(total_memory=card_gib * 2**30)
    with patch("torch.cuda.get_device_properties", return_value=card):
        assert default_batch_size(lm, "score") == expected
        assert default_batch_size(lm, "generate") == 256
    assert default_batch_size(SimpleNamespace(device=torch.device("cpu")), "score") == 16
