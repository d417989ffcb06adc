"""Score mode with any label names: whole-answer probabilities against an uncached reference."""

import pytest
import torch

from gemma_emotion import classify
from gemma_emotion.classify import Classifier
from gemma_emotion.labels import EMOTIONS, LabelSet, LabelSetError
from gemma_emotion.models import load_model

TEXTS = [
    "i feel so happy today",
    "i am sad and alone",
    "this is a much longer text about the day i felt that nothing would ever go right again",
    "ok",
]


def reference(clf: Classifier, text: str) -> list[float]:
    """The label distribution the slow way: one full forward per label answer, no cache, no batching."""
    prompt = clf.prompt_ids(text)
    logps = []
    for answer in clf._scored:
        ids = torch.tensor([prompt + list(answer)])
        with torch.no_grad():
            logp = torch.log_softmax(clf.lm.model(input_ids=ids).logits[0].float(), -1)
        logps.append(sum(logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(answer)))
    return torch.softmax(torch.tensor(logps), -1).tolist()


@pytest.mark.parametrize("fixture", ["tiny_words3", "tiny_words4"])
@pytest.mark.parametrize(
    "spec",
    [
        "very happy,very sad,neutral",  # two labels share their first token
        "Very Happy,Sad,negative",  # capitals and spaces; several tokens for one label
        "happy,very happy,positive,surprise",  # one label's tokens begin another's
    ],
)
def test_whole_answers_match_a_slow_reference(fixture, spec, request):
    lm = load_model(str(request.getfixturevalue(fixture)))
    labels = LabelSet.parse(spec)
    clf = Classifier(lm, labels, whole_answers=True)
    assert not clf._one_token  # the whole-answer path is what runs
    preds = clf.predict(TEXTS, "score", batch_size=3)
    for text, pred in zip(TEXTS, preds):
        assert list(pred.probabilities) == list(labels.names)
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        ref = reference(clf, text)
        assert list(pred.probabilities.values()) == pytest.approx(ref, abs=1e-4)
        assert pred.label == labels.names[max(range(len(ref)), key=ref.__getitem__)]
    # Labels that share a first token are two labels, not one: their probabilities differ.
    if spec.startswith("very happy"):
        assert all(p.probabilities["very happy"] != p.probabilities["very sad"] for p in preds)


def test_continuations_split_over_calls_give_the_same_scores(tiny_words3, monkeypatch):
    lm = load_model(str(tiny_words3))
    clf = Classifier(lm, LabelSet.parse("very happy,very sad,neutral"))
    whole = clf.predict(TEXTS, "score", batch_size=4)
    monkeypatch.setattr(classify, "MAX_CONTINUATION_LOGITS", 1)  # one text's continuations a call
    clf.invalidate_cache()
    split = clf.predict(TEXTS, "score", batch_size=4)
    for a, b in zip(whole, split):
        assert list(a.probabilities.values()) == pytest.approx(list(b.probabilities.values()), abs=1e-5)


def test_one_token_labels_keep_the_fast_path(tiny_words3):
    lm = load_model(str(tiny_words3))
    six = Classifier(lm)
    assert six.labels == EMOTIONS and six._one_token
    assert six.system_prompt == EMOTIONS.system_prompt
    three = Classifier(lm, LabelSet.parse("negative,positive,surprise"))
    assert three._one_token and len(three._label_ids) == 3
    # Several tokens for a label, first tokens distinct: the fast path unless whole answers are asked for;
    # first tokens shared: whole answers, always.
    assert Classifier(lm, LabelSet.parse("Very Happy,Sad,negative"))._one_token
    assert not Classifier(lm, LabelSet.parse("Very Happy,Sad,negative"), whole_answers=True)._one_token
    assert not Classifier(lm, LabelSet.parse("very happy,very sad,neutral"))._one_token
    pred = three.classify("i feel so happy today")
    prompt = three.prompt_ids("i feel so happy today")
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([prompt])).logits[0, -1]
    ref = torch.softmax(logits[three._label_ids], -1).tolist()
    assert list(pred.probabilities) == ["negative", "positive", "surprise"]
    assert list(pred.probabilities.values()) == pytest.approx(ref, abs=1e-4)


def test_calibrated_and_generated_answers_use_the_set(tiny_words3):
    lm = load_model(str(tiny_words3))
    labels = LabelSet.parse("very happy,very sad,neutral")
    calibrated = Classifier(lm, labels, calibrate=True).predict(TEXTS[:2], "score")
    for pred in calibrated:
        assert set(pred.probabilities) == set(labels.names)
        assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    for pred in Classifier(lm, labels).predict(TEXTS[:2], "generate"):
        assert pred.label in (*labels.names, "invalid")
        assert pred.valid == (pred.label in labels.names)


def test_labels_the_tokenizer_cannot_tell_apart_are_refused(tiny_words3):
    lm = load_model(str(tiny_words3))
    # Neither word is in the tiny vocabulary: both are the unknown token, so they would merge.
    with pytest.raises(LabelSetError, match="'qwzx' and 'zxqw' are the same tokens"):
        Classifier(lm, LabelSet.parse("qwzx,zxqw,happy"))
