"""The loader on good and bad files, the folder layout, and seeded sampling."""

import json

import pandas as pd
import pytest

from gemma_emotion.data import DataError, fingerprint, label_counts, load_split


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
