"""The LabelSet object: validation of user names, ids, the prompt, the parser and its file."""

import pytest

from gemma_emotion.labels import EMOTIONS, LABELS, SYSTEM_PROMPT, LabelSet, LabelSetError


def test_default_set_is_the_six_with_the_prompt_the_shipped_adapter_learned():
    assert EMOTIONS.names == LABELS == ("sadness", "joy", "love", "anger", "fear", "surprise")
    assert SYSTEM_PROMPT == (
        "Read the text and name the emotion it expresses. The answer is one word: "
        "sadness, joy, love, anger, fear or surprise. Write only that word."
    )


def test_user_names_are_trimmed_and_compared_without_case():
    s = LabelSet.parse(" Negative , positive,Surprise ")
    assert s.names == ("Negative", "positive", "Surprise")
    assert s.id_of("NEGATIVE") == 0 and s.id_of(" surprise ") == 2 and s.id_of("1") == 1
    assert s.name_of("negative") == "Negative"
    assert "POSITIVE" in s and "neutral" not in s
    assert s.unknown(["negative", "neutral", "NEUTRAL", 7, "positive"]) == ["neutral", "NEUTRAL", "7"]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("only", "2 to 30"),
        (",".join(f"l{i}" for i in range(31)), "2 to 30"),
        ("joy,JOY", "twice"),
        ("x" * 41 + ",b", "at most 40"),
        ("invalid,b", "reserved"),
    ],
)
def test_bad_label_sets_get_one_clear_message(spec, message):
    with pytest.raises(LabelSetError, match=message):
        LabelSet.parse(spec)


def test_multi_word_labels_change_the_prompt_and_parse_as_whole_names():
    s = LabelSet.parse("very happy,happy,sad")
    assert "one of: very happy, happy or sad" in s.system_prompt
    assert s.parse_answer("Very Happy.").label == "very happy"
    assert s.parse_answer("I'd say very happy").lenient == "very happy"
    assert s.parse_answer("happy").label == "happy"
    assert s.parse_answer("happy or sad").lenient is None
    assert s.parse_answer("unhappy").lenient is None


def test_labels_from_data_first_seen_or_sorted():
    values = ["pos", "Neg", "pos", None, "neg", "neutral"]
    assert LabelSet.from_data(values).names == ("pos", "Neg", "neutral")
    assert LabelSet.from_data(values, order="sorted").names == ("Neg", "neutral", "pos")
    with pytest.raises(LabelSetError, match="numbers"):
        LabelSet.from_data([0, 1, 2])


def test_saved_beside_an_adapter_and_loaded_back(tmp_path):
    s = LabelSet.parse("negative,positive,surprise")
    s.save(tmp_path)
    assert LabelSet.load(tmp_path) == s
    assert LabelSet.load(tmp_path / "nothing-here") == EMOTIONS  # adapters made before label sets


def test_records_use_the_sets_names_and_prompt():
    s = LabelSet.parse("negative,positive")
    rec = s.to_prompt_completion("what a day", 1)
    assert rec["prompt"][0]["content"] == s.system_prompt
    assert rec["completion"] == [{"role": "assistant", "content": "positive"}]
    with pytest.raises(LabelSetError, match="unknown label"):
        s.to_prompt_completion("x", "joy")
