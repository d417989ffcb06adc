"""Classification in two modes, batched, over a loaded model.

- `score`: the probability of each label of the label set as the model's answer, renormalised over the
  set. Never invalid. When no two labels start with the same token (the six emotions, and most sets of
  words), one forward pass per text gives the probability of each label's first token right after the
  model's turn opens, with logits at the last position only: the token training teaches the label to
  start with, so labels are never merged. When first tokens collide ("very happy" / "very sad"), or
  with `whole_answers=True`, each label is scored by its whole answer, its end of turn included
  (`_sequence_scores`): log P(answer tokens | prompt) summed over its tokens, with the label
  continuations of every text run as one batch on top of the text's cache.
  The system-prompt prefix is identical for every text, so its key/value cache is computed once and
  reused.
- `generate`: the chat prompt, greedy decoding until the end of the turn, and the answer parsed
  strictly (what the published recipe measured; invalid answers possible).

Batches are grouped by length so little work is spent on padding (`plan_batches`).
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache

from gemma_emotion.labels import EMOTIONS, INVALID, LabelSet
from gemma_emotion.models import LoadedModel, attention_kernels

MODES = ("score", "generate")
MAX_TEXT_TOKENS = 256  # longer texts are cut: the dataset's longest is ~90 tokens
MAX_NEW_TOKENS = 12
PAD_MULTIPLE = 8  # CUDA batches are padded to a multiple of this many tokens
# A CUDA batch ends where the padded width grows once it holds this many tokens: large enough to keep
# the matrix units busy, so long texts do not pad hundreds of short ones (`plan_batches`).
MIN_BATCH_TOKENS = 4096
# Score mode with whole label answers: the continuation rows of one model call hold at most this many
# logits (rows x positions x vocabulary), e.g. 256 rows of two positions over Gemma's 262k vocabulary.
MAX_CONTINUATION_LOGITS = 2**27
LARGE_CARD_BYTES = 48 * 2**30  # cards with this much memory score large models 1,024 rows at a time
HUGE_CARD_BYTES = 64 * 2**30  # and these (80 GB and up) 2,048 rows
PINNED_COPIES = True  # CUDA batches built in pinned memory and copied without blocking; benchmarks switch it
_MARK = "\u2063TEXT\u2063"  # a placeholder that no tokenizer merges with its neighbours
_CONTENT_FREE = ("N/A", "[MASK]", "...")
_PROBES = ("i feel fine", "Hello, World! 123", "émoji 😀 text", "\u05e9\u05dc\u05d5\u05dd (rtl)", "a\nb")

BatchProgress = Callable[[int, int], None]


@dataclass
class Prediction:
    """One text's result. `label` is a label of the set or "invalid"; `probabilities` only in score mode."""

    text: str
    label: str
    valid: bool
    raw: str
    mode: str
    probabilities: dict[str, float] | None = None
    lenient: str | None = None
    latency_ms: float = 0.0
    truncated: bool = False

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "valid": self.valid,
            "probabilities": self.probabilities,
            "raw": self.raw,
            "lenient": self.lenient,
            "mode": self.mode,
            "latency_ms": round(self.latency_ms, 2),
            "truncated": self.truncated,
        }


@dataclass
class EncodedTexts:
    """The prompts of many texts as token ids in flat arrays: the ids every prompt starts with (the chat
    template's head, the system prompt in it) stored once, then each prompt's own ids back to back.

    No Python object per text: `predict` tokenises the next chunk in a worker thread while the model thread
    launches kernels, and every bytecode the worker runs holds the GIL that thread needs. Per-text `list`
    prompts (prefix + text + tail) and their slicing per batch held the GIL 3.4-3.7 µs a text on 2 CPU
    cores, these arrays 1.8-2.0 (`benchmarks/bench_host_prep.py`); `predict` on 1,000,000 rows on an H200
    went from 20,912 to 26,300-27,075 texts/s warm (benchmarks/README.md, eleventh session).
    """

    prefix: tuple[int, ...]
    ids: np.ndarray  # int64, each prompt's ids after `prefix`, back to back
    lengths: np.ndarray  # int64 (n,): each prompt's count of ids after `prefix`
    truncated: np.ndarray  # bool (n,): the text was cut to MAX_TEXT_TOKENS

    def __post_init__(self) -> None:
        self.starts = np.cumsum(self.lengths) - self.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_lists(
        cls, prompts: Sequence[Sequence[int]], prefix: Sequence[int], truncated: Sequence[bool] | np.ndarray
    ) -> EncodedTexts:
        """From whole prompts: `prefix` is stored once when every prompt starts with it, else not at all."""
        n = len(prefix)
        if not all(list(p[:n]) == list(prefix) for p in prompts):
            prefix, n = (), 0
        lengths = np.fromiter((len(p) - n for p in prompts), dtype=np.int64, count=len(prompts))
        ids = np.fromiter(
            itertools.chain.from_iterable(p[n:] for p in prompts), dtype=np.int64, count=int(lengths.sum())
        )
        return cls(tuple(prefix), ids, lengths, np.asarray(truncated, dtype=bool).reshape(len(prompts)))

    def take(self, rows: slice | Sequence[int] | np.ndarray) -> EncodedTexts:
        """The prompts `rows` (a slice, or indices in any order) as a new EncodedTexts."""
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        before = np.cumsum(lengths) - lengths
        source = np.repeat(self.starts[rows] - before, lengths) + np.arange(int(lengths.sum()))
        return EncodedTexts(self.prefix, self.ids[source], lengths, self.truncated[rows])

    def row(self, i: int) -> list[int]:
        """The whole prompt of text `i`, prefix included."""
        start = int(self.starts[i])
        return [*self.prefix, *self.ids[start : start + int(self.lengths[i])].tolist()]

    def rows(self) -> list[list[int]]:
        return [self.row(i) for i in range(len(self))]

    def whole(self) -> tuple[np.ndarray, np.ndarray]:
        """The prompts with the prefix put back in front of each: (ids back to back, lengths)."""
        return _insert_each(self.ids, self.lengths, np.asarray(self.prefix, dtype=np.int64), before=True)


def _insert_each(
    ids: np.ndarray, lengths: np.ndarray, fixed: np.ndarray, *, before: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`fixed` put before (or after) each of the sequences stored back to back in `ids`."""
    k = len(fixed)
    if k == 0:
        return ids, lengths
    out_lengths = lengths + k
    out = np.empty(int(out_lengths.sum()), dtype=np.int64)
    firsts = np.cumsum(out_lengths) - out_lengths + (0 if before else lengths)
    slots = (firsts[:, None] + np.arange(k)).ravel()
    is_fixed = np.zeros(len(out), dtype=bool)
    is_fixed[slots] = True
    out[slots] = np.tile(fixed, len(lengths))
    out[~is_fixed] = ids
    return out, out_lengths


@dataclass
class Classifier:
    """Classifies texts with a loaded model; base or fine-tuned chosen per call when an adapter is on.

    `labels` is the label set the model is asked for: by default the loaded adapter's (`lm.labels`: the
    one it was trained on), else the six emotions. Base and fine-tuned predictions both use it, so a base
    model is prompted with the same labels its fine-tune learned. `system_prompt` defaults to the set's.
    """

    lm: LoadedModel
    labels: LabelSet | None = None
    system_prompt: str | None = None
    enable_thinking: bool = False
    # Score mode only: divide by the label probabilities the model gives a content-free text, which
    # removes a base model's bias towards one label (contextual calibration, Zhao et al. 2021).
    calibrate: bool = False
    # Score mode only: score each label by its whole answer (every token and the end of turn) even when
    # the labels' first tokens already tell them apart. Off by default: distinct first tokens are what
    # training teaches and what the shipped figures were measured with, and the whole-answer path runs a
    # continuation per label (the six emotions on the embedded tokenizer, where "sadness" is two tokens:
    # 7x the rows and a full-vocabulary softmax per row). Labels whose first tokens collide always use it.
    whole_answers: bool = False
    _prefix_ids: list[int] = field(init=False, default_factory=list)
    _tail_ids: list[int] = field(init=False, default_factory=list)
    # The distinct first tokens of the labels' answers, and which of them each label starts with.
    _label_ids: list[int] = field(init=False, default_factory=list)
    _first_index: list[int] = field(init=False, default_factory=list)
    _scored: list[tuple[int, ...]] = field(init=False, default_factory=list)  # each label's whole answer
    _one_token: bool = field(init=False, default=True)  # scored by distinct first tokens: the fast path
    _fast_encode: bool = field(init=False, default=False)
    _backend: Callable | None = field(init=False, default=None, repr=False)  # see _token_ids
    # Fast tokenizers refuse to be entered from two threads at once ("Already borrowed"); `predict`
    # tokenises the next chunk in a worker thread while this one decodes generated answers.
    _tok_lock: threading.RLock = field(init=False, default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.labels = self.labels or getattr(self.lm, "labels", None) or EMOTIONS
        self.system_prompt = self.system_prompt or self.labels.system_prompt
        tok = self.lm.tokenizer
        head, tail = self._render(_MARK).split(_MARK)
        self._prefix_ids = tok(head, add_special_tokens=False)["input_ids"]
        self._tail_ids = tok(tail, add_special_tokens=False)["input_ids"]
        # Rendering the template per text is slow; splicing the text's ids between the fixed head and
        # tail is exact when the tokenizer never merges across those borders, which we check here.
        encode = getattr(getattr(tok, "backend_tokenizer", None), "encode_batch_fast", None)
        probes = list(_PROBES)
        same = (
            encode is not None
            and [e.ids for e in encode(probes, add_special_tokens=False)]
            == (tok(probes, add_special_tokens=False)["input_ids"])
        )
        self._backend = encode if same else None
        self._fast_encode = all(
            self._encode_many([p], fast=True).row(0) == self._encode_slow(p) for p in _PROBES
        )
        self._plan_label_tokens()

    # -- public ---------------------------------------------------------------------------------
    def predict(
        self,
        texts: Sequence[str],
        mode: str = "score",
        *,
        adapter: bool = True,
        batch_size: int | None = None,
        progress: BatchProgress | None = None,
        encoded: EncodedTexts | None = None,
    ) -> list[Prediction]:
        """Predictions in input order. `adapter=False` gives the base model's answers. `encoded` (from
        `encode(texts)`) skips tokenising here, so a caller can tokenise the next texts while these run."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError("empty text: type something to classify")
        if not texts:
            return []
        texts = list(texts)  # a datasets column indexes slowly, one Arrow lookup per row
        batch_size = batch_size or default_batch_size(self.lm, mode)
        encoded = encoded if encoded is not None else self.encode(texts)
        if len(encoded) != len(texts):
            raise ValueError(f"{len(encoded)} encoded prompts for {len(texts)} texts")
        results: list[Prediction | None] = [None] * len(texts)
        if mode == "score":
            t0 = time.perf_counter()
            probs = self.score_encoded(encoded, adapter=adapter, batch_size=batch_size, progress=progress)
            per_item = (time.perf_counter() - t0) * 1000 / len(texts)
            for i, pred in enumerate(self._score_predictions(probs)):
                results[i] = self._finish(pred, texts[i], bool(encoded.truncated[i]), per_item)
            return results  # type: ignore[return-value]
        done = 0
        with torch.inference_mode(), self.lm.use(adapter), attention_kernels(self.lm.device):
            for idx in self._plan(encoded, mode, batch_size):
                t0 = time.perf_counter()
                outs = self._generate_batch(encoded.take(idx))
                per_item = (time.perf_counter() - t0) * 1000 / len(idx)
                for i, pred in zip(idx, outs):
                    results[i] = self._finish(pred, texts[i], bool(encoded.truncated[i]), per_item)
                done += len(idx)
                if progress:
                    progress(done, len(texts))
        return results  # type: ignore[return-value]

    def encode(self, texts: Sequence[str]) -> EncodedTexts:
        """The prompts of `texts` as token ids (cut to MAX_TEXT_TOKENS); safe to call from another thread
        while this classifier runs the model."""
        return self._encode_many(texts)

    def score_encoded(
        self,
        encoded: EncodedTexts,
        *,
        adapter: bool = True,
        batch_size: int | None = None,
        progress: BatchProgress | None = None,
    ) -> torch.Tensor:
        """Score mode: the label probabilities of each prompt as an (n, labels) CPU tensor, in input order."""
        if not encoded:
            return torch.empty(0, len(self.labels.names))
        batches = self._plan(encoded, "score", batch_size or default_batch_size(self.lm, "score"))
        done = 0
        with torch.inference_mode(), self.lm.use(adapter), attention_kernels(self.lm.device):
            # No read-back per batch: the GPU computes batch k while the CPU prepares batch k + 1, and
            # the probabilities of all batches come back in one transfer at the end.
            pending = []
            for idx in batches:
                pending.append(self._label_probs(encoded.take(idx)))
                done += len(idx)
                if progress:
                    progress(done, len(encoded))
            planned = torch.cat(pending).float().cpu()
        probs = torch.empty_like(planned)
        probs[torch.tensor([i for idx in batches for i in idx])] = planned
        return probs

    def _plan(self, encoded: EncodedTexts, mode: str, batch_size: int) -> list[list[int]]:
        # Score mode runs only what follows the cached prefix, so that is the width that gets padded.
        shared = mode == "score" and self._shares_prefix(encoded)
        cuda = self.lm.device.type == "cuda"
        return plan_batches(
            encoded.lengths if shared else encoded.lengths + len(encoded.prefix),
            batch_size,
            multiple=PAD_MULTIPLE if cuda else 1,
            min_tokens=MIN_BATCH_TOKENS if cuda else None,
        )

    def _shares_prefix(self, encoded: EncodedTexts) -> bool:
        """Whether the prompts start with the prefix whose cache score mode reuses."""
        return bool(self._prefix_ids) and encoded.prefix == tuple(self._prefix_ids)

    @staticmethod
    def _finish(pred: Prediction, text: str, truncated: bool, latency_ms: float) -> Prediction:
        pred.text = text
        pred.latency_ms = latency_ms
        pred.truncated = truncated
        return pred

    def classify(self, text: str, mode: str = "score", *, adapter: bool = True) -> Prediction:
        return self.predict([text], mode, adapter=adapter, batch_size=1)[0]

    def prompt_ids(self, text: str) -> list[int]:
        """The token ids the model sees for one text (the same the trainer tokenises)."""
        return self._encode_many([text]).row(0)

    # -- prompt ---------------------------------------------------------------------------------
    def _render(self, text: str) -> str:
        return self.lm.tokenizer.apply_chat_template(
            self.labels.build_messages(text, self.system_prompt),
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=self.enable_thinking,
        )

    def _encode_slow(self, text: str) -> list[int]:
        with self._tok_lock:
            return self.lm.tokenizer(self._render(text.strip()), add_special_tokens=False)["input_ids"]

    def _encode_many(self, texts: Sequence[str], fast: bool | None = None) -> EncodedTexts:
        with self._tok_lock:
            return self._encode_locked(texts, fast)

    def _encode_locked(self, texts: Sequence[str], fast: bool | None) -> EncodedTexts:
        fast = self._fast_encode if fast is None else fast
        # A megabyte of text is cut before tokenising: only MAX_TEXT_TOKENS tokens are kept anyway.
        max_chars = MAX_TEXT_TOKENS * 16
        stripped = [t.strip() for t in texts]
        truncated = np.fromiter((len(t) > max_chars for t in stripped), dtype=bool, count=len(stripped))
        for i in np.flatnonzero(truncated).tolist():
            stripped[i] = stripped[i][:max_chars]
        text_ids = self._token_ids(stripped) if stripped else []
        long = [i for i, ids in enumerate(text_ids) if len(ids) > MAX_TEXT_TOKENS]
        for i in long:  # rare: only these rows pay for a cut
            text_ids[i] = text_ids[i][:MAX_TEXT_TOKENS]
            truncated[i] = True
        if not fast:  # the template renders text, so a cut text goes back to text first
            for i in long:
                stripped[i] = self.lm.tokenizer.decode(text_ids[i])
            prompts = [self._encode_slow(t) for t in stripped]
            return EncodedTexts.from_lists(prompts, self._prefix_ids, truncated)
        lengths = np.fromiter(map(len, text_ids), dtype=np.int64, count=len(text_ids))
        flat = np.fromiter(itertools.chain.from_iterable(text_ids), dtype=np.int64, count=int(lengths.sum()))
        ids, lengths = _insert_each(flat, lengths, np.asarray(self._tail_ids, dtype=np.int64), before=False)
        return EncodedTexts(tuple(self._prefix_ids), ids, lengths, truncated)

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens. Through the fast tokenizer's backend when it gives the
        same ids: transformers' per-text conversion of the backend's answer holds the GIL for 40 % of the
        time (16,000 texts: 0.62 of 1.56 s on 2 cores), time that `predict`'s model thread needs to launch
        its kernels while the next chunk is tokenised."""
        backend = self._backend
        if backend is not None:
            return [e.ids for e in backend(texts, add_special_tokens=False)]
        return self.lm.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _plan_label_tokens(self) -> None:
        """Which tokens each label is scored by, and whether the one-token fast path applies."""
        tok = self.lm.tokenizer
        self._scored = self.labels.scored_ids(
            tok,
            self.lm.stop_token_ids,
            system_prompt=self.system_prompt,
            enable_thinking=self.enable_thinking,
        )
        ends = set(self.lm.stop_token_ids)
        words = [s[:-1] if s[-1] in ends else s for s in self._scored]  # the label without its end of turn
        firsts = [s[0] for s in self._scored]
        distinct = len(set(firsts)) == len(firsts)
        self._one_token = distinct and (not self.whole_answers or all(len(w) == 1 for w in words))
        self._label_ids = list(dict.fromkeys(firsts))
        self._first_index = [self._label_ids.index(t) for t in firsts]

    # -- score mode -----------------------------------------------------------------------------
    def _score_predictions(self, probs: torch.Tensor) -> list[Prediction]:
        names = self.labels.names
        preds = []
        for row in probs.tolist():
            best = max(range(len(names)), key=row.__getitem__)
            preds.append(
                Prediction(
                    text="",
                    label=names[best],
                    valid=True,
                    raw=names[best],
                    mode="score",
                    probabilities={name: float(p) for name, p in zip(names, row)},
                    lenient=names[best],
                )
            )
        return preds

    def _label_probs(self, batch: EncodedTexts) -> torch.Tensor:
        """The label probabilities of each prompt (one column per label of the set), on the model's device."""
        probs = torch.softmax(self._label_scores(batch).float(), dim=-1)
        if self.calibrate:
            probs = probs / self._content_free_prior()
            probs = probs / probs.sum(-1, keepdim=True)
        return probs

    def _content_free_prior(self) -> torch.Tensor:
        key = ("prior", self.lm.adapter, self.lm.adapter_active)
        store = self.__dict__.setdefault("_cache_store", {})
        if key not in store:
            scores = self._label_scores(self._encode_many(_CONTENT_FREE))
            store[key] = torch.softmax(scores.float(), dim=-1).mean(0)
        return store[key]

    def _label_scores(self, batch: EncodedTexts) -> torch.Tensor:
        """Per prompt and label, a score whose softmax over the labels is the label distribution."""
        if self._one_token:
            return self._last_logits(batch)
        return self._sequence_scores(batch)

    def _last_logits(self, batch: EncodedTexts) -> torch.Tensor:
        """The first label tokens' logits after each prompt, reusing the shared prefix's key/value cache."""
        return self._prompt_pass(batch)[0]

    def _prompt_pass(
        self, batch: EncodedTexts, keep_cache: bool = False
    ) -> tuple[torch.Tensor, _Continuation | None]:
        """The logits of `_label_ids` after each prompt; with `keep_cache`, also what a continuation of the
        prompts needs: the cache holding them, their attention mask and their last positions."""
        model = self.lm.inference_model()
        if self._shares_prefix(batch):
            n, suffixes = len(batch.prefix), (batch.ids, batch.lengths)
            cache = self._prefix_cache(model, len(batch))
        else:  # a template that does not keep the prefix intact: no sharing, still correct
            n, suffixes = 0, batch.whole()
            cache = DynamicCache(config=model.config) if keep_cache else None
        input_ids, mask = _left_pad(*suffixes, self.lm.tokenizer.pad_token_id, self.lm.device)
        full_mask = torch.cat([torch.ones(len(batch), n, dtype=mask.dtype, device=mask.device), mask], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, n:]
        inputs = dict(
            input_ids=input_ids,
            attention_mask=full_mask,
            position_ids=positions,
            cache=cache,
            use_cache=cache is not None,
        )
        head = self._label_head(model)
        if head is None:
            logits = model(**inputs, logits_to_keep=1).logits[:, -1, self._label_ids]
        else:
            logits = head(inputs)
        if not keep_cache:
            return logits, None
        return logits, _Continuation(cache, full_mask, positions[:, -1])

    def _sequence_scores(self, batch: EncodedTexts) -> torch.Tensor:
        """log P(answer | prompt) of each label's whole answer (its tokens and end of turn), per prompt.

        The prompt runs once per text (on the shared prefix cache); each label's answer then continues
        from the text's own cache, every (text, label) pair a row of one batched call: the prompt is never
        recomputed per label. The first token's log-probability is its logit less the log-normaliser of
        the prompt's last position, which is the same for every label and cancels in the softmax over
        labels; the later tokens follow different contexts, so they are full log-softmax values.
        """
        first, context = self._prompt_pass(batch, keep_cache=True)
        assert context is not None
        scores = first.float()[:, self._first_index]  # (texts, labels)
        steps = max(len(s) for s in self._scored) - 1
        if steps == 0:
            return scores
        pad = self.lm.tokenizer.pad_token_id
        device = self.lm.device
        n_labels = len(self._scored)
        # Right-padded: a shorter answer's pads come after its last real token, so nothing reads them.
        inputs = torch.tensor(
            [list(s[:-1]) + [pad] * (steps + 1 - len(s)) for s in self._scored], device=device
        )
        targets = torch.tensor(
            [list(s[1:]) + [-1] * (steps + 1 - len(s)) for s in self._scored], device=device
        )
        vocab = self.lm.model.config.get_text_config().vocab_size
        per_call = max(1, MAX_CONTINUATION_LOGITS // (n_labels * steps * vocab))
        later = []
        for start in range(0, len(batch), per_call):
            rows = torch.arange(start, min(start + per_call, len(batch)), device=device)
            later.append(self._continue(context, rows, inputs, targets))
        return scores + torch.cat(later)

    def _continue(
        self, context: _Continuation, rows: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Summed log-probabilities of the label answers' later tokens for the prompts `rows`: one row per
        (prompt, label), each continuing from its prompt's cache."""
        n_labels, steps = inputs.shape
        index = rows.repeat_interleave(n_labels)
        mask = context.mask[index]
        attention = torch.cat([mask, torch.ones(len(index), steps, dtype=mask.dtype, device=mask.device)], 1)
        positions = context.last[index, None] + 1 + torch.arange(steps, device=mask.device)
        logits = self.lm.inference_model()(
            input_ids=inputs.repeat(len(rows), 1),
            attention_mask=attention,
            position_ids=positions,
            cache=_select_rows(context.cache, index),
            use_cache=True,
            logits_to_keep=steps,
        ).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        wanted = targets.repeat(len(rows), 1)
        picked = logp.gather(-1, wanted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return picked.masked_fill(wanted < 0, 0.0).sum(-1).view(len(rows), n_labels)

    def _label_head(self, model: torch.nn.Module) -> _LabelHead | None:
        """The six-row LM head of `model`, once checked against the model's own logits (else None)."""
        store = self.__dict__.setdefault("_cache_store", {})
        key = ("head", id(model))
        if key not in store:
            head = _LabelHead.find(model, self._label_ids)
            if head is not None:
                ids = torch.tensor(
                    [self._prefix_ids or self._encode_many(["x"]).row(0)], device=self.lm.device
                )
                full = model(input_ids=ids, logits_to_keep=1).logits[:, -1, self._label_ids].float()
                mine = head({"input_ids": ids}).float()
                # Only the head's arithmetic differs (six rows instead of the whole vocabulary).
                if not torch.allclose(full, mine, rtol=2e-2, atol=2e-2 * float(full.abs().max()) + 1e-4):
                    head = None
            store[key] = (model, head)  # the model held, so its id is not reused while the key lives
        return store[key][1]

    def _prefix_cache(self, model: torch.nn.Module, batch_size: int) -> DynamicCache:
        # Base and fine-tuned prefixes differ, and so do the fp32 model's and each of its int8 copies'.
        key = (self.lm.adapter, self.lm.adapter_active, id(model))
        store = self.__dict__.setdefault("_cache_store", {})
        if key not in store:
            ids = torch.tensor([self._prefix_ids], device=self.lm.device)
            store[key] = (model, prefix_cache(model, ids))  # the model held: its id stays its own
        return expand_cache(store[key][1], batch_size)

    # -- generate mode --------------------------------------------------------------------------
    def _generate_batch(self, batch: EncodedTexts) -> list[Prediction]:
        tok = self.lm.tokenizer
        input_ids, mask = _left_pad(*batch.whole(), tok.pad_token_id, self.lm.device)
        out = self.lm.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
            eos_token_id=self.lm.stop_token_ids,
            pad_token_id=tok.pad_token_id,
            top_p=None,
            top_k=None,
            temperature=None,
        )
        with self._tok_lock:
            raws = [tok.decode(row, skip_special_tokens=True).strip() for row in out[:, input_ids.shape[1] :]]
        preds = []
        for raw in raws:
            parsed = self.labels.parse_answer(raw)
            preds.append(
                Prediction(
                    text="",
                    label=parsed.label or INVALID,
                    valid=parsed.valid,
                    raw=raw,
                    mode="generate",
                    lenient=parsed.lenient,
                )
            )
        return preds

    def invalidate_cache(self) -> None:
        """Forget cached prefixes (call after the adapter or the weights change)."""
        self._cache_store = {}


@dataclass
class _LabelHead:
    """The decoder plus only the six label rows of the output embedding.

    Renormalised over the six labels, the other 262k logits cancel out: on a CPU the full LM head took 40 %
    of score-mode time (a 640 x 262,144 product per text for six numbers).
    """

    decoder: torch.nn.Module
    rows: torch.Tensor  # (6, hidden)
    softcap: float | None

    @classmethod
    def find(cls, model: torch.nn.Module, label_ids: list[int]) -> _LabelHead | None:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        decoder, head = getattr(base, "model", None), getattr(base, "lm_head", None)
        weight = getattr(head, "weight", None)
        if (
            not isinstance(decoder, torch.nn.Module)
            or not isinstance(weight, torch.Tensor)
            or weight.dim() != 2
        ):
            return None
        if getattr(head, "bias", None) is not None:
            return None
        cap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
        return cls(decoder, weight[label_ids].detach(), cap)

    def __call__(self, inputs: dict) -> torch.Tensor:
        hidden = self.decoder(**inputs).last_hidden_state[:, -1, :]
        logits = hidden @ self.rows.to(hidden.dtype).T
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


@dataclass
class _Continuation:
    """Prompts already run: their cache (one row each), attention mask and last position ids."""

    cache: DynamicCache
    mask: torch.Tensor
    last: torch.Tensor


def _select_rows(cache: DynamicCache, index: torch.Tensor) -> DynamicCache:
    """A new cache whose row i is `cache`'s row `index[i]` (rows may repeat); `cache` is left as it is.
    Layers that store nothing (Gemma 4's KV-shared layers) are shared as they are."""
    out = copy.copy(cache)
    out.layers = []
    for layer in cache.layers:
        row = copy.copy(layer)
        if isinstance(getattr(layer, "keys", None), torch.Tensor) and layer.keys.dim() == 4:
            row.keys, row.values = layer.keys[index], layer.values[index]
        out.layers.append(row)
    return out


def prefix_cache(model: torch.nn.Module, ids: torch.Tensor, *, lm_head: bool = True) -> DynamicCache:
    """The key/value cache of one row of prompt ids after a forward pass of `model` (a causal LM, or with
    `lm_head=False` its decoder alone). Under autograd the cached keys and values stay in the graph:
    training reuses them for every row (`shared_prefix`)."""
    cache = DynamicCache(config=model.config)
    model(input_ids=ids, cache=cache, use_cache=True, **({"logits_to_keep": 1} if lm_head else {}))
    return cache


def expand_cache(cache: DynamicCache, batch_size: int) -> DynamicCache:
    """The one-row prefix cache seen as `batch_size` rows without copying: layers only ever concatenate
    new keys onto the cached ones, so broadcast views of the stored tensors are never written to.
    Layers that store nothing (Gemma 4's KV-shared layers hold `None`) are shared as they are."""

    def stored(layer: object) -> bool:
        return all(isinstance(getattr(layer, name, None), torch.Tensor) for name in ("keys", "values"))

    def empty(layer: object) -> bool:
        return getattr(layer, "keys", 0) is None and getattr(layer, "values", 0) is None

    layers = getattr(cache, "layers", None)
    if layers is None or not all(stored(layer) or empty(layer) for layer in layers):
        out = copy.deepcopy(cache)
        out.batch_repeat_interleave(batch_size)
        return out
    out = copy.copy(cache)
    out.layers = []
    for layer in layers:
        view = copy.copy(layer)
        if stored(layer):
            view.keys = layer.keys.expand(batch_size, *layer.keys.shape[1:])
            view.values = layer.values.expand(batch_size, *layer.values.shape[1:])
        out.layers.append(view)
    return out


def plan_batches(
    lengths: Sequence[int], max_rows: int, *, multiple: int = 1, min_tokens: int | None = None
) -> list[list[int]]:
    """Indices into `lengths`, shortest first, in batches of at most `max_rows`.

    A batch is padded to its longest row (rounded up to `multiple`). With `min_tokens`, a batch also ends
    where the padded width would grow once it already holds that many tokens. In score mode on the test
    split, 512-row batches cut at fixed counts computed 1.43 x the real tokens (1,024-row ones 1.93 x);
    these compute 1.18 x (1.15 x), most of it the rounding to 8 (benchmarks/padding.py).
    """
    if max_rows < 1:
        raise ValueError(f"batch size must be at least 1, got {max_rows}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable").tolist()  # ties keep input order, as sorted() does
    lengths = lengths.tolist()
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        new_width = -(-lengths[i] // multiple) * multiple
        grows = new_width > width and min_tokens is not None and len(current) * width >= min_tokens
        if current and (len(current) == max_rows or grows):
            batches.append(current)
            current = []
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def _left_pad(
    flat: np.ndarray, lengths: np.ndarray, pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences stored back to back in `flat` as one left-padded batch of ids and its attention mask."""
    n = len(lengths)
    width = int(lengths.max())
    cuda = device.type == "cuda"
    pinned = cuda and PINNED_COPIES
    if cuda:
        # A few distinct shapes instead of one per length: kernels and their setups are reused.
        width = -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
    # On CUDA the batch is built in pinned memory and copied without blocking: a copy from ordinary memory
    # waits for the GPU to finish every queued batch first, which would undo the no-read-back pipelining.
    ids = torch.full((n, width), pad_id, dtype=torch.long, pin_memory=pinned)
    mask = torch.zeros((n, width), dtype=torch.long, pin_memory=pinned)
    # Filled through numpy in one scatter: a tensor copy per row ran at 64,000 rows/s on 2 CPU cores (a
    # third of the CPU time 20,000 texts/s allows), this at 1,170,000 (512-row batches, 2026-12-02).
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + width - lengths[rows]
    ids.numpy()[rows, cols] = flat
    mask.numpy()[rows, cols] = 1
    return ids.to(device, non_blocking=pinned), mask.to(device, non_blocking=pinned)


def default_batch_size(lm: LoadedModel, mode: str) -> int:
    """Large batches on a GPU, small ones on a CPU where they stop paying off."""
    if lm.device.type == "cuda":
        if mode != "score":
            return 256
        # Score batches are forward passes of ~25 new tokens a row, so a small model's batch is launch-bound
        # until it is large: embedded shape + adapter, 65,536 texts on an H200 (profile_predict.py,
        # 2026-12-02): 15,100 texts/s at 512 rows, 21,900 at 1,024, 23,600 at 2,048, 24,200 at 4,096. In
        # `predict` on 500,000 rows, 4,096 rows ran 18,797 texts/s cold and 20,093 warm against 17,280 and
        # 19,973 at 2,048 (bench_predict.py, ninth session), at 6.9 GiB of GPU memory against 5.0.
        # Larger models fill the card sooner, but still gain from 1,024 rows where memory allows: the Gemma 4
        # E4B shape ran 2,264 texts/s at 512 and 2,397 at 1,024 on a first pass over 50,000 rows, at 18.7 and
        # 22.3 GiB peak (H200, bench_predict.py, ninth session); cards under 48 GiB keep 512. On 200,000
        # rows, first pass, one H200: 2,980 texts/s at 1,024 rows (22.3 GiB) and 3,126 at 2,048 (30.6 GiB)
        # (eleventh session), so cards of 80 GB and more take 2,048.
        hidden = getattr(lm.model.config.get_text_config(), "hidden_size", 0) or 0
        if 0 < hidden <= 1024:
            return 4096
        total = torch.cuda.get_device_properties(lm.device).total_memory
        if total >= HUGE_CARD_BYTES:
            return 2048
        return 1024 if total >= LARGE_CARD_BYTES else 512
    return 16
