"""Tiny random Gemma 3 / Gemma 4 checkpoints with a word-level tokenizer, saved like real ones.

Seconds to build on CPU; they go through exactly the loading, classification and training code that
real checkpoints do. The vocabulary holds the label words, the system prompt and the most frequent
words of the shared data, so texts tokenise into real words rather than unknowns.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from gemma_emotion.labels import LABELS, SYSTEM_PROMPT

VOCAB = 512
GEMMA3_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
GEMMA4_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<|turn>", "<turn|>", "<|think|>"]


def _words(data_file: Path | None, extra_words: tuple[str, ...] = ()) -> list[str]:
    words = list(LABELS) + list(extra_words) + re.findall(r"\w+|[^\w\s]", SYSTEM_PROMPT.lower())
    words += ["user", "model", "system", "i", "feel", "am", "so", "the", "a"]
    if data_file and data_file.is_file():
        counts: collections.Counter = collections.Counter()
        with open(data_file) as fh:
            for line in fh:
                counts.update(re.findall(r"\w+|[^\w\s]", json.loads(line)["text"].lower()))
        words += [w for w, _ in counts.most_common(VOCAB)]
    return list(dict.fromkeys(words))


def build_tokenizer(
    specials: list[str], chat_template: str, data_file: Path | None, extra_words: tuple[str, ...] = ()
) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in _words(data_file, extra_words):
        if len(vocab) >= VOCAB:
            break
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=specials[4:],
    )
    fast.chat_template = chat_template
    fast.padding_side = "left"
    return fast


def gemma3_template() -> str:
    from trl.chat_template_utils import gemma3_chat_template

    return gemma3_chat_template


def gemma4_template() -> str:
    from trl.chat_template_utils import gemma4_v5_chat_template

    return gemma4_v5_chat_template


def gemma4_text_config(**overrides):
    from transformers import Gemma4TextConfig

    kwargs = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, global_head_dim=64,
        layer_types=["sliding_attention", "full_attention"] * 2, num_kv_shared_layers=2, sliding_window=128,
        max_position_embeddings=512, vocab_size_per_layer_input=VOCAB, hidden_size_per_layer_input=16,
        final_logit_softcapping=30.0, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )  # fmt: skip
    kwargs.update(overrides)
    return Gemma4TextConfig(**kwargs)


def make_gemma3(
    out: Path,
    data_file: Path | None = None,
    seed: int = 0,
    sliding_window: int = 128,
    extra_words: tuple[str, ...] = (),
) -> Path:
    """A tiny Gemma 3; `extra_words` join the vocabulary (label names of other label sets, say)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
        pad_token_id=0, bos_token_id=2, eos_token_id=1,
    )  # fmt: skip
    model = Gemma3ForCausalLM(cfg)
    model.save_pretrained(out)
    build_tokenizer(GEMMA3_SPECIALS, gemma3_template(), data_file, extra_words).save_pretrained(out)
    return out


def make_gemma4(
    out: Path,
    data_file: Path | None = None,
    multimodal: bool = False,
    seed: int = 0,
    sliding_window: int = 128,
    extra_words: tuple[str, ...] = (),
) -> Path:
    """A text-only Gemma4ForCausalLM, or a Gemma4ForConditionalGeneration with a clippable-linear tower."""
    from transformers import Gemma4Config, Gemma4ForCausalLM, Gemma4ForConditionalGeneration

    torch.manual_seed(seed)
    text = gemma4_text_config(sliding_window=sliding_window)
    if multimodal:
        cfg = Gemma4Config(
            text_config=text.to_dict(),
            vision_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=2, head_dim=16, use_clipped_linears=True,
            ),
            audio_config=None,
        )  # fmt: skip
        model = Gemma4ForConditionalGeneration(cfg)
    else:
        model = Gemma4ForCausalLM(text)
    model.save_pretrained(out)
    build_tokenizer(GEMMA4_SPECIALS, gemma4_template(), data_file, extra_words).save_pretrained(out)
    return out
