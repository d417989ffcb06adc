"""The loader on good and bad files, the folder layout, and seeded sampling."""

import json

import pandas as pd
import pytest

from gemma_emotion.data import DataError, fingerprint, label_counts, load_split, read_split


def test_shared_folder_loads_like_the_hub_dataset(shared_data):
    ds = load_split(shared_data, "test")
    assert len(ds) == 2000
    assert ds.column_names == ["text", "label"]
    assert label_counts(ds) == {
        "sadness": 581,
        "joy": 695,
        "love": 159,
        "anger": 275,
        "fear": 224,
        "surprise": 66,
    }


def test_sampling_is_seeded_and_stratified(shared_data):
    a = load_split(shared_data, "test", limit=200, stratify=True, seed=1)
    b = load_split(shared_data, "test", limit=200, stratify=True, seed=1)
    c = load_split(shared_data, "test", limit=200, stratify=True, seed=2)
    assert a["text"] == b["text"] and a["text"] != c["text"]
    counts = label_counts(a)
    assert sum(counts.values()) == 200
    # proportions within one row of the full split's: 581/2000*200 = 58.1, 66/2000*200 = 6.6
    assert counts["sadness"] in (58, 59) and counts["surprise"] in (6, 7)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_formats_and_label_names(tmp_path):
    rows = [{"text": "i feel fine", "label": "joy"}, {"text": "so scared", "label": 4}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pd.DataFrame(rows).astype({"label": str}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"text": ["i feel fine", "so scared"], "label": [1, 4]}).to_parquet(tmp_path / "a.parquet")
    (tmp_path / "a.tsv").write_text("text\tlabel\ni feel fine\t1\nso scared\tfear\n")
    for name in ("a.jsonl", "a.csv", "a.parquet", "a.tsv"):
        ds = load_split(tmp_path / name)
        assert ds["text"] == ["i feel fine", "so scared"], name
        assert ds["label"] == [1, 4], name


def test_semicolon_csv_is_sniffed(tmp_path):
    (tmp_path / "x.csv").write_text("text;label\nhello there;joy\nwhy me;sadness\n")
    assert load_split(tmp_path / "x.csv")["label"] == [1, 0]


def test_unlabelled_file_when_labels_are_optional(tmp_path):
    (tmp_path / "u.csv").write_text("text\nfirst one\nsecond one\n")
    ds = load_split(tmp_path / "u.csv", require_labels=False)
    assert ds["label"] == [-1, -1]
    with pytest.raises(DataError, match="no label column"):
        load_split(tmp_path / "u.csv")


@pytest.mark.parametrize(
    "name,content,message",
    [
        (
            "bad.jsonl",
            '{"text": "ok", "label": 1}\n{"text": "x", "label": 9}\n',
            r"bad.jsonl, line 2: label 9 is outside",
        ),
        ("bad.jsonl", '{"text": "ok", "label": 1}\n{"text": "  ", "label": 1}\n', r"line 2: empty text"),
        ("bad.jsonl", '{"text": "ok", "label": 1}\n{"txt": "a", "label": 1}\n', r"line 2: 'text' is missing"),
        ("bad.jsonl", '{"text": "ok", "label": 1}\n{"text": "ok"\n', r"line 2: not valid JSON"),
        ("bad.csv", "text,label\nfine,joy\nhmm,happy\n", r"bad.csv, line 3: unknown label 'happy'"),
        ("bad.csv", "words,label\nfine,joy\n", r"no text column"),
        ("bad.csv", "text,label\nfine,joy,extra\n", r"line 2: more fields"),
        ("bad.csv", "", r"empty|no rows"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_split(tmp_path / name)


def test_undecodable_bytes_and_binary(tmp_path):
    (tmp_path / "latin.csv").write_bytes("text,label\nok,joy\ncaf\xe9,joy\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin.csv, line 3: bytes that are not UTF-8"):
        load_split(tmp_path / "latin.csv")
    (tmp_path / "blob.csv").write_bytes(bytes(range(256)) * 10)
    with pytest.raises(DataError, match="binary file"):
        load_split(tmp_path / "blob.csv")


def test_missing_paths_and_folders(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_split(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="no test.jsonl"):
        load_split(tmp_path, "test")


# -- columns, label sets, drops, preview, limits ---------------------------------------------------------
def _csv(path, header, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_columns_are_guessed_from_their_names_and_labels_read_in_any_case(tmp_path):
    rows = [[1, "i am thrilled", "JOY"], [2, "i am scared", "Fear"], [3, "so lonely", "sadness"]]
    path = _csv(tmp_path / "mine.csv", ["id", "sentence", "emotion"], rows)
    table = read_split(path)
    assert (table.text_column, table.label_column) == ("sentence", "emotion")
    assert table.ds["label"] == [1, 4, 0]
    for header, text, label in [("Tweet,Class", "Tweet", "Class"), ("review,category", "review", "category"),
                                ("content,labels", "content", "labels")]:  # fmt: skip
        (tmp_path / "g.csv").write_text(f"{header}\nhello there,joy\n")
        table = read_split(tmp_path / "g.csv")
        assert (table.text_column, table.label_column) == (text, label)


def test_columns_can_be_named_and_a_wrong_name_lists_the_columns(tmp_path):
    path = _csv(tmp_path / "odd.csv", ["words", "mood", "text"], [["i am thrilled", "joy", "ignore me"]])
    ds = load_split(path, text_column="words", label_column="mood")
    assert ds["text"] == ["i am thrilled"] and ds["label"] == [1]
    with pytest.raises(
        DataError, match=r"odd.csv: no label column named 'feeling' \(columns: words, mood, text\)"
    ):
        load_split(path, label_column="feeling")
    (tmp_path / "none.csv").write_text("words,mood\nhi,joy\n")
    with pytest.raises(DataError, match=r"no text column .*found words, mood\): name it with --text-column"):
        load_split(tmp_path / "none.csv")


def test_labels_map_through_a_given_label_set(tmp_path):
    from gemma_emotion.labels import LabelSet

    valence = LabelSet(("negative", "positive", "surprise"))
    path = _csv(
        tmp_path / "v.csv", ["text", "label"], [["bad day", "NEGATIVE"], ["great", 1], ["wow", "Surprise"]]
    )
    assert load_split(path, labels=valence)["label"] == [0, 1, 2]
    with pytest.raises(DataError, match=r"v.csv, line 2: unknown label 'NEGATIVE'"):
        load_split(path)  # the six emotions by default


def test_the_label_set_is_read_from_the_data(tmp_path):
    from gemma_emotion.data import label_set_of
    from gemma_emotion.labels import EMOTIONS

    six = _csv(tmp_path / "six.csv", ["text", "emotion"], [["a", "JOY"], ["b", "Sadness"], ["c", 4]])
    assert label_set_of(six) is EMOTIONS
    mine = _csv(
        tmp_path / "mine.csv", ["text", "label"], [["a", "positive"], ["b", "Negative"], ["c", "negative"]]
    )
    assert label_set_of(mine).names == ("positive", "Negative")
    assert label_set_of(mine, order="sorted").names == ("Negative", "positive")
    numbers = _csv(tmp_path / "n.csv", ["text", "label"], [["a", 7], ["b", 9]])
    assert label_set_of(numbers) is None  # ids name nothing: the six's, or a set given elsewhere
    assert label_set_of(_csv(tmp_path / "u.csv", ["text"], [["a"]])) is None  # no labels at all
    picked = _csv(tmp_path / "p.csv", ["text", "label", "mood"], [["a", 1, "calm"], ["b", 2, "tense"]])
    assert label_set_of(picked, label_column="mood").names == ("calm", "tense")


def test_unknown_labels_are_named_all_at_once_or_dropped_and_counted(tmp_path):
    from gemma_emotion.data import DROP_ALL, UNKNOWN_LABEL

    path = _csv(tmp_path / "u.csv", ["text", "label"],
                [["fine", "joy"], ["meh", "neutral"], ["ugh", "disgust"], ["hmm", "neutral"]])  # fmt: skip
    with pytest.raises(
        DataError,
        match=r"u.csv, line 3: unknown label 'neutral'.*\(labels not in the set: neutral, disgust\)",
    ):
        load_split(path)
    table = read_split(path, drop=DROP_ALL)
    assert table.ds["text"] == ["fine"]
    assert table.dropped == {UNKNOWN_LABEL: 3} and table.unknown == {"neutral": 2, "disgust": 1}
    assert table.dropped_text() == "3 of 4 rows dropped: 3 unknown label (neutral: 2, disgust: 1)"


def test_preview_shows_first_rows_counts_drops_and_the_label_set(tmp_path):
    from gemma_emotion.data import preview
    from gemma_emotion.labels import EMOTIONS

    rows = [["i am thrilled", "JOY"], ["i am thrilled", "JOY"], ["  ", "FEAR"], ["so lonely", "SADNESS"],
            ["what a shock", "SURPRISE"], ["no label here", ""], ["furious", "ANGER"]]  # fmt: skip
    path = _csv(tmp_path / "upload.csv", ["sentence", "emotion"], rows)
    p = preview(path)
    assert (p.text_column, p.label_column, p.columns) == ("sentence", "emotion", ["sentence", "emotion"])
    assert p.labels is EMOTIONS
    assert (p.n_read, p.n_rows) == (7, 4)
    assert p.first[0] == {"text": "i am thrilled", "label": "joy"}
    assert p.label_counts == {"sadness": 1, "joy": 1, "love": 0, "anger": 1, "fear": 0, "surprise": 1}
    assert p.dropped == {"duplicate text": 1, "empty text": 1, "missing label": 1}
    assert "4 rows usable of 7" in p.summary() and "1 duplicate text" in p.summary()

    other = _csv(tmp_path / "other.csv", ["text", "label"], [["good", "positive"], ["bad", "negative"]])
    assert preview(other).labels.names == ("positive", "negative")
    p = preview(other, labels=EMOTIONS)  # the model's labels: these are unknown to it
    assert p.dropped == {"unknown label": 2} and p.unknown == {"positive": 1, "negative": 1}
    assert preview(other, label_column="text").label_column == "text"  # what the dropdown picks is used


def test_limits_on_size_and_rows(tmp_path):
    from gemma_emotion.data import preview

    path = _csv(tmp_path / "big.csv", ["text", "label"], [[f"text {i}", "joy"] for i in range(50)])
    with pytest.raises(DataError, match=r"big.csv has 50 rows; the limit here is 40"):
        read_split(path, max_rows=40)
    with pytest.raises(DataError, match=r"big.csv is 0.0 MB; the limit here is 0.0001 MB"):
        preview(path, max_mb=0.0001)
    assert len(read_split(path, max_rows=50, max_mb=1).ds) == 50


def test_a_malformed_parquet_row_names_the_row(tmp_path):
    pd.DataFrame({"text": ["fine", None, "ok"], "label": [1, 2, 3]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p.parquet, row 2: 'text' is missing or not a string"):
        load_split(tmp_path / "p.parquet")
    (tmp_path / "arr.json").write_text('[{"text": "a", "label": 1}, {"text": "b", "label": "what"}]')
    with pytest.raises(DataError, match=r"arr.json, row 2: unknown label 'what'"):
        load_split(tmp_path / "arr.json")
