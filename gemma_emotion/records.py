"""Training records: the chat prompt/completion rows, their token ids, and the check that training sees
the tokens inference sees.

The prompt's ids are the classifier's own encoding (`Classifier.prompt_ids`) and the completion is the
label and its end-of-turn token as the chat template writes them, so only the answer is trained and
generate mode stops cleanly after the label. Texts are cut as the classifier cuts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gemma_emotion.labels import EMOTIONS, LabelSet, LabelSetError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

    from gemma_emotion.classify import Classifier
    from gemma_emotion.config import TrainConfig

VERIFY_EXAMPLES = 8  # training examples whose tokens are checked against the classifier's at start


def fit_text(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> list[str]:
    """Texts cut the way the classifier cuts them (strip, then at most `max_tokens` tokens)."""
    from gemma_emotion.classify import MAX_TEXT_TOKENS

    stripped = [t.strip()[: MAX_TEXT_TOKENS * 16] for t in texts]
    ids = tokenizer(stripped, add_special_tokens=False)["input_ids"] if stripped else []
    return [tokenizer.decode(i[:max_tokens]) if len(i) > max_tokens else t for t, i in zip(stripped, ids)]


def prompt_overhead(tokenizer: PreTrainedTokenizerBase, label_set: LabelSet = EMOTIONS) -> int:
    """Tokens of a training sequence that are not the text: template, system prompt, longest answer."""
    longest = 0
    for label in label_set.names:
        record = label_set.to_prompt_completion("x", label)
        ids = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        longest = max(longest, len(ids) - 1)
    return longest


def text_budget(
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase, label_set: LabelSet = EMOTIONS
) -> int:
    """Text tokens that fit max_length, so the answer is never cut off."""
    from gemma_emotion.classify import MAX_TEXT_TOKENS

    overhead = prompt_overhead(tokenizer, label_set)
    budget = min(MAX_TEXT_TOKENS, config.max_length - overhead)
    if budget < 4:
        raise ValueError(
            f"max length {config.max_length} is too short: the prompt and answer alone take {overhead} tokens"
        )
    return budget


def training_records(texts: list[str], labels: list[int], label_set: LabelSet = EMOTIONS) -> datasets.Dataset:
    """Prompt/completion chat records: only the answer and its end-of-turn token are trained."""
    import datasets

    rows = []
    for text, label in zip(texts, labels):
        record = label_set.to_prompt_completion(text, label)
        # The classifier renders prompts with thinking off; the trainer must render the same tokens.
        record["chat_template_kwargs"] = {"enable_thinking": False}
        rows.append(record)
    return datasets.Dataset.from_list(rows)


def answer_ids(classifier: Classifier) -> list[list[int]]:
    """Per label of the classifier's set, the tokens the chat template writes after the prompt: the label
    and its end-of-turn."""
    try:
        return classifier.labels.answer_ids(
            classifier.lm.tokenizer,
            system_prompt=classifier.system_prompt,
            enable_thinking=classifier.enable_thinking,
        )
    except LabelSetError as exc:
        raise TokenisationError(str(exc)) from exc


def tokenised_records(texts: list[str], labels: list[int], classifier: Classifier) -> datasets.Dataset:
    """The token ids of the prompt/completion chat records, with labels -100 on the prompt.

    The prompt is the classifier's own encoding and the completion the template's answer tokens, which is
    what TRL's tokenisation of `training_records` gives (tested). Handing TRL ids skips its per-example
    chat rendering and its cache fingerprint, which pickles the 262k-entry tokenizer: 15-30 s per run on
    a CPU before the first step.
    """
    import datasets

    answers = answer_ids(classifier)
    prompts = classifier._encode_many(texts).rows()
    return datasets.Dataset.from_dict(
        {
            "input_ids": [p + answers[y] for p, y in zip(prompts, labels)],
            "labels": [[-100] * len(p) + answers[y] for p, y in zip(prompts, labels)],
        }
    )


class TokenisationError(RuntimeError):
    """Training would see other tokens than inference does."""


def verify_tokenisation(
    processed: datasets.Dataset,
    texts: list[str],
    labels: list[int],
    classifier: Classifier,
    n: int = VERIFY_EXAMPLES,
) -> None:
    """The trainer's tokens for the first `n` examples: prompt == Classifier.prompt_ids(text), and the
    trained part is exactly the label followed by the end-of-turn token (plus whitespace)."""
    from gemma_emotion.models import END_OF_TURN_TOKENS

    tok = classifier.lm.tokenizer
    vocab = tok.get_vocab()
    eot = {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}
    if len(processed) != len(texts):
        raise TokenisationError(
            f"the trainer kept {len(processed)} of {len(texts)} examples: some were cut before their answer"
        )
    for i in range(min(n, len(texts))):
        ids, targets = processed[i]["input_ids"], processed[i]["labels"]
        start = next((k for k, t in enumerate(targets) if t != -100), len(targets))
        prompt, completion = ids[:start], ids[start:]
        if prompt != classifier.prompt_ids(texts[i]):
            raise TokenisationError(
                f"example {i}: the trainer's prompt tokens differ from the classifier's for {texts[i]!r}"
            )
        if list(targets[start:]) != list(completion):
            raise TokenisationError(f"example {i}: the trained tokens are not the completion")
        end = next((k for k, t in enumerate(completion) if t in eot), None)
        if end is None:
            raise TokenisationError(f"example {i}: the completion has no end-of-turn token ({completion})")
        answer, rest = tok.decode(completion[:end]).strip(), tok.decode(completion[end + 1 :]).strip()
        name = classifier.labels.names[labels[i]]
        if answer != name or rest:
            raise TokenisationError(
                f"example {i}: trained on {tok.decode(completion)!r}, expected {name!r} + end of turn"
            )
