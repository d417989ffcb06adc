"""Training with the shared prompt prefix computed once per batch instead of once per row.

Every training row begins with the same tokens: the chat template up to where the text starts (`<bos>`,
the system prompt, the user turn's opening), about 40 of the 270M's 68 tokens a row. The loss step here
runs that prefix once per batch, as a one-row forward pass whose key/value cache stays in the autograd
graph (`classify.prefix_cache`, the cache score mode reuses), sees it as `batch` rows without copying
(`classify.expand_cache`), and runs only the rows' suffixes on top of it. Autograd sums the rows'
gradients through the broadcast cache back into the one prefix pass, so loss and LoRA gradients equal
those of the whole rows (tests/test_shared_prefix.py); only the work on the prefix is done once.

The suffixes keep the collator's right padding: the prefix is fully visible to every row and the causal
and sliding-window masks over prefix + suffix are the model's own (built from the cache's length, as when
generating), so the positions and masks are those of the unshared rows. Answers are scored by TRL's fused
LM head exactly as in the plain lean step, on the suffix positions, where every trained token lies.

Under gradient checkpointing the suffix layers are recomputed in the backward pass; the cache they read
never changes (`_read_only`), which is what transformers asks of a layer that keeps its cache under
checkpointing. The one-row prefix pass is not checkpointed: its activations are one short row.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import torch

MIN_PREFIX_TOKENS = 4  # a shorter shared prefix saves less than its extra forward pass costs
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")  # where the padded suffix mask over a cache is tested


def common_prefix_length(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, cut so that each row's trained tokens are predicted from positions
    after the prefix: the LM head scores the suffixes only. 0 for no rows."""
    if not input_ids:
        return 0
    first = list(input_ids[0])
    n = len(first)
    for ids, targets in zip(input_ids, labels):
        k = 0
        limit = min(n, len(ids))
        while k < limit and ids[k] == first[k]:
            k += 1
        n = k
        # The token at position t is predicted from position t - 1, which must lie in the suffix.
        trained = next((t for t, y in enumerate(targets) if y != -100), len(targets))
        n = min(n, trained - 1, len(ids) - 1)
        if n <= 0:
            return 0
    return n


def prefix_length(
    model: torch.nn.Module, input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]
) -> tuple[int, str]:
    """The shared prefix length to train with (0: the plain loss step) and a note saying why."""
    n = common_prefix_length(input_ids, labels)
    if n < MIN_PREFIX_TOKENS:
        return 0, f"shared prefix off: the rows share only {n} leading tokens"
    config = model.config.get_text_config()
    attention = getattr(config, "_attn_implementation", None) or "eager"
    if attention not in ATTENTION_IMPLEMENTATIONS:
        return 0, f"shared prefix off: not tested with {attention} attention"
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or []
    if window and "sliding_attention" in layer_types and n >= window - 1:
        # A sliding layer's cache keeps only window - 1 tokens; the prefix must be held whole.
        return 0, f"shared prefix off: the {n}-token prefix does not fit the {window}-token sliding window"
    return n, f"shared prefix: the {n} tokens every row starts with are computed once per batch"


def fused_outputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor], n_prefix: int) -> Any:
    """What `model(**inputs, fused_lm_head=True)` returns (TRL's per-token answer log-probabilities), with
    the first `n_prefix` tokens of the rows, the same in every row, run once for the whole batch.

    `inputs` is a right-padded collated batch (input_ids, attention_mask, labels) whose rows all begin
    with the same `n_prefix` tokens (checked once for the whole dataset, `prefix_length`)."""
    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    if "position_ids" in inputs or mask is None:
        raise ValueError(
            "the shared prefix needs padded rows with an attention mask (not padding-free batches)"
        )
    unknown = set(inputs) - {"input_ids", "attention_mask", "labels", "use_cache"}
    if unknown:
        raise ValueError(f"the shared prefix does not know what to do with {sorted(unknown)} in the batch")
    from gemma_emotion.classify import expand_cache, prefix_cache

    # Under DDP the prefix pass runs the module inside it: DDP expects one forward per backward, and the
    # gradients of both passes add up in the same parameters before its hooks reduce them.
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    layers = _checkpointed_layers(core)
    # The decoder alone: the prefix's logits are never used, and on a CPU one more pass over a 262k-row LM
    # head is not free. PEFT's LoRA layers sit inside the decoder, so it runs the adapter too.
    base = core.get_base_model() if hasattr(core, "get_base_model") else core
    with _set_on(_checkpointing_modules(core), gradient_checkpointing=False):
        cache = prefix_cache(base.base_model, ids[:1, :n_prefix], lm_head=False)
    shared = _read_only(expand_cache(cache, ids.shape[0]))
    positions = torch.arange(n_prefix, ids.shape[1], device=ids.device).unsqueeze(0)
    # The mask covers prefix + suffix (the prefix columns are all ones): the model builds the causal and
    # sliding-window masks of the suffix over the cache from it.
    with _set_on(layers, _can_checkpoint_with_cache=True):
        return model(
            input_ids=ids[:, n_prefix:],
            attention_mask=mask,
            position_ids=positions,
            cache=shared,
            labels=labels[:, n_prefix:],
            fused_lm_head=True,
        )


def _read_only(cache: Any) -> Any:
    """The cache with every stored layer answering an update with cached + new keys and values, storing
    nothing: a layer recomputed under gradient checkpointing then reads exactly what it read the first
    time. Layers that store nothing (Gemma 4's KV-shared layers) are left as they are."""
    for layer in cache.layers:
        if isinstance(getattr(layer, "keys", None), torch.Tensor):
            # expand_cache made `layer` a copy for this batch alone, so its own method can be replaced.
            layer.update = functools.partial(_concatenated, layer)
    return cache


def _concatenated(layer: Any, keys: torch.Tensor, values: torch.Tensor, *args: Any, **kwargs: Any) -> tuple:
    return torch.cat([layer.keys, keys], dim=-2), torch.cat([layer.values, values], dim=-2)


def _checkpointed_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers gradient checkpointing wraps now; refused when it is the reentrant kind, whose
    recompute would not carry gradients back into the prefix cache it reads."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [
        m for m in model.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing
    ]
    for layer in layers:
        func = getattr(layer, "_gradient_checkpointing_func", None)
        if getattr(func, "keywords", {}).get("use_reentrant", False):
            raise ValueError(
                "the shared prefix needs non-reentrant gradient checkpointing (use_reentrant=False)"
            )
    return layers


def _checkpointing_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every module with gradient checkpointing on: the layers, and the decoder that would otherwise turn
    `use_cache` off (with a warning) for the prefix pass."""
    return [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]


@contextlib.contextmanager
def _set_on(modules: list[torch.nn.Module], **values: Any) -> Iterator[None]:
    """Set attributes on each module for the duration of the block (their class defaults come back)."""
    missing = object()
    saved = [(m, {k: m.__dict__.get(k, missing) for k in values}) for m in modules]
    for m in modules:
        for k, v in values.items():
            setattr(m, k, v)
    try:
        yield
    finally:
        for m, old in saved:
            for k, v in old.items():
                if v is missing:
                    delattr(m, k)
                else:
                    setattr(m, k, v)
