"""The answer parser and the metrics, against cases computed by hand."""

import pytest

from gemma_emotion.evaluate import Report, compare_reports, compute_metrics
from gemma_emotion.labels import LABELS, build_messages, label_id, parse_answer, to_prompt_completion


@pytest.mark.parametrize(
    "raw,strict,lenient",
    [
        ("joy", "joy", "joy"),
        ("  Joy.\n", "joy", "joy"),
        ('"ANGER"', "anger", "anger"),
        ("**fear**", "fear", "fear"),
        ("The emotion is joy.", None, "joy"),
        ("sadness or anger", None, None),
        ("joyful", None, None),
        ("", None, None),
        ("love love", None, "love"),
        ("surprise!", "surprise", "surprise"),
    ],
)
def test_parse_answer(raw, strict, lenient):
    parsed = parse_answer(raw)
    assert parsed.label == strict
    assert parsed.valid == (strict is not None)
    assert parsed.lenient == lenient
    assert parsed.predicted == (strict or "invalid")


def test_label_order_is_the_datasets():
    assert LABELS == ("sadness", "joy", "love", "anger", "fear", "surprise")


@pytest.mark.parametrize("value,expected", [(0, 0), ("5", 5), ("Love", 2), (3.0, 3), (" fear ", 4)])
def test_label_id_accepts_ints_and_names(value, expected):
    assert label_id(value) == expected


@pytest.mark.parametrize("value", [6, -1, "happy", "", True, 2.5, None])
def test_label_id_rejects_the_rest(value):
    with pytest.raises(ValueError):
        label_id(value)


def test_prompt_completion_record():
    rec = to_prompt_completion("i feel great", 1)
    assert rec["prompt"] == build_messages("i feel great")
    assert rec["prompt"][0]["role"] == "system" and all(
        name in rec["prompt"][0]["content"] for name in LABELS
    )
    assert rec["completion"] == [{"role": "assistant", "content": "joy"}]
    with pytest.raises(ValueError):
        to_prompt_completion("x", "happy")


def test_metrics_by_hand():
    # gold:      sadness sadness joy  joy     love    anger
    # predicted: sadness joy     joy  invalid love    sadness
    gold = [0, 0, 1, 1, 2, 3]
    pred = ["sadness", "joy", "joy", "invalid", "love", "sadness"]
    m = compute_metrics(gold, pred)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["invalid"] == 1
    # sadness: tp1 fp1 fn1 → P .5 R .5 F .5; joy: tp1 fp1 fn1 → .5; love: 1; anger: 0
    # fear/surprise: 0 (no support)
    assert m["per_class"]["sadness"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["joy"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["love"]["f1"] == pytest.approx(1.0)
    assert m["per_class"]["anger"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 1 + 0 + 0 + 0) / 6)
    # rows are gold labels, the seventh column counts invalid answers
    assert m["confusion"][1] == [0, 1, 0, 0, 0, 0, 1]
    assert m["confusion"][3] == [1, 0, 0, 0, 0, 0, 0]
    assert m["confusion_columns"][-1] == "invalid"
    assert sum(map(sum, m["confusion"])) == 6


def test_lenient_accuracy_recovers_wordy_answers():
    m = compute_metrics([1, 3], ["invalid", "anger"], lenient=["joy", "anger"])
    assert m["accuracy"] == 0.5 and m["lenient_accuracy"] == 1.0


def test_compare_reports():
    base = Report(compute_metrics([0, 1, 2], ["sadness", "invalid", "joy"]))
    tuned = Report(compute_metrics([0, 1, 2], ["sadness", "joy", "love"]))
    cmp = compare_reports(base, tuned)
    assert cmp["metrics"]["accuracy"]["delta"] == pytest.approx(2 / 3)
    assert cmp["metrics"]["invalid"] == {"base": 1, "finetuned": 0, "delta": -1}
    assert cmp["per_class_f1"]["love"] == {"base": 0.0, "finetuned": 1.0}
