"""`predict`: a whole file labelled in chunks, through the CLI (`python -m gemma_emotion predict`, in-process
and as a subprocess that is killed and resumed), under torchrun with two processes, and through the app's
"Classify a file" in a real Chromium. The labels are checked against `Classifier.classify`, one text at a
time."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_csv

from gemma_emotion.labels import LABELS
from gemma_emotion.predict import PROB_PREFIX, PredictError, PredictOptions, predict_file, state_path
from gemma_emotion.tables import Source

REPO = Path(__file__).resolve().parents[1]
SCORE_COLUMNS = ["label", "confidence", *[PROB_PREFIX + n for n in LABELS]]
LONG_TEXT = "i feel fine " * 400  # 4,800 characters, 1,200 words: over the model's 256-token limit
FORMULA_TEXT = '=HYPERLINK("http://x") i feel great today'


@pytest.fixture(scope="module")
def clf(tiny_gemma3):
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import load_model

    return Classifier(load_model(str(tiny_gemma3)))


@pytest.fixture(scope="module")
def test_rows(shared_data) -> list[dict]:
    with open(shared_data / "test.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def one_at_a_time(clf, texts: list[str]) -> list[str | None]:
    return [clf.classify(t).label if t.strip() else None for t in texts]


# -- one process, in-process --------------------------------------------------------------------------------
def test_csv_labels_match_classify_one_at_a_time_keeping_every_column_and_the_order(clf, test_rows, tmp_path):
    rows = [{"id": str(i), "text": r["text"], "label": str(r["label"]), "note": f"n{i}"}
            for i, r in enumerate(test_rows[:40])]  # fmt: skip
    rows[5]["text"] = "   "  # empty: no label, counted, no crash
    rows[9]["text"] = LONG_TEXT  # cut to the model's limit, counted
    rows[13]["text"] = FORMULA_TEXT  # a spreadsheet would run it: the output cell is disarmed
    rows[17]["text"] = 'she said "hi",\nthen left; i was sad'  # quotes, a comma and a line break
    src = write_csv(tmp_path / "in.csv", rows)
    seen: list[tuple[int, int | None]] = []

    summary = predict_file(
        clf, src, tmp_path / "out.csv", PredictOptions(chunk_size=8, batch_size=3),
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip

    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    # Every input column in its place; the input's own `label` keeps its values under another name.
    assert header == ["id", "text", "input_label", "note", *SCORE_COLUMNS]
    out = read_csv(tmp_path / "out.csv")
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert [r["note"] for r in out] == [r["note"] for r in rows]
    assert [r["input_label"] for r in out] == [r["label"] for r in rows]
    expected = one_at_a_time(clf, [r["text"] for r in rows])
    assert [r["label"] or None for r in out] == expected
    assert out[13]["text"] == "'" + FORMULA_TEXT and out[17]["text"] == rows[17]["text"]
    assert out[5]["label"] == "" and out[5]["confidence"] == "" and out[5]["p_joy"] == ""
    one = clf.classify(rows[1]["text"])
    assert float(out[1][PROB_PREFIX + "joy"]) == pytest.approx(one.probabilities["joy"], abs=1e-5)
    assert float(out[1]["confidence"]) == pytest.approx(max(one.probabilities.values()), abs=1e-5)
    raw = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()
    assert raw[1].startswith('"0","') and raw[1].count('","') == len(header) - 1  # every cell quoted

    assert summary.rows == summary.labelled == 40 and summary.skipped == 0
    assert summary.empty == 1 and summary.cut == 1 and summary.invalid == 0
    assert summary.label_counts == {n: expected.count(n) for n in LABELS}
    assert seen[0] == (0, 41) and seen[-1] == (40, 40)  # lines first (one quoted line break), then rows
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # progress only moves forward
    # Nothing but the output is left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_jsonl_and_parquet_in_and_out_keep_types_and_agree(clf, test_rows, tmp_path):
    rows = [
        {"id": i, "text": r["text"], "score": i / 4, "tags": ["a", str(i)]}
        for i, r in enumerate(test_rows[:21])
    ]
    rows[3]["text"] = None  # JSON null: an empty row
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    expected = one_at_a_time(clf, [r["text"] or "" for r in rows])
    options = PredictOptions(chunk_size=5)

    predict_file(clf, jsonl, tmp_path / "out.parquet", options)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["id", "text", "score", "tags", *SCORE_COLUMNS]
    assert table.schema.field("id").type == pa.int64() and table.schema.field("score").type == pa.float64()
    assert table.column("id").to_pylist() == list(range(21))
    assert table.column("tags").to_pylist()[7] == ["a", "7"]
    assert table.column("label").to_pylist() == expected
    assert pq.ParquetFile(tmp_path / "out.parquet").num_row_groups == 5  # one per chunk of 5
    assert not (tmp_path / "out.parquet.parts").exists()

    # Parquet in, JSON Lines and TSV out.
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet", row_group_size=4)
    predict_file(clf, tmp_path / "in.parquet", tmp_path / "out.jsonl", options)
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == list(range(21))
    assert [r["label"] for r in lines] == expected
    assert lines[0]["tags"] == ["a", "0"] and lines[3]["label"] is None and lines[3]["p_joy"] is None
    predict_file(clf, tmp_path / "in.parquet", tmp_path / "out.tsv", PredictOptions(chunk_size=21))
    tsv = (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[0].split("\t")[:4] == ['"id"', '"text"', '"score"', '"tags"'] and len(tsv) == 22
    assert tsv[2].split("\t")[3] == '"[""a"", ""1""]"'  # a list as JSON text in one cell


def test_generate_mode_writes_the_raw_answer_and_whether_it_is_valid(clf, test_rows, tmp_path):
    texts = [r["text"] for r in test_rows[:6]]
    src = write_csv(tmp_path / "in.csv", [{"text": t} for t in texts])
    summary = predict_file(clf, src, tmp_path / "out.jsonl", PredictOptions(mode="generate", chunk_size=4))
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    preds = clf.predict(texts, "generate")
    assert [list(r) for r in out] == [["text", "label", "raw", "valid"]] * 6
    assert [(r["label"], r["raw"], r["valid"]) for r in out] == [(p.label, p.raw, p.valid) for p in preds]
    assert summary.invalid == sum(not p.valid for p in preds)


def test_an_interrupted_run_resumes_and_refuses_other_settings_or_a_changed_input(clf, test_rows, tmp_path):
    from gemma_emotion.classify import Classifier
    from gemma_emotion.models import LoadOptions, load_model

    rows = [{"id": str(i), "text": r["text"]} for i, r in enumerate(test_rows[:30])]
    src = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    options = PredictOptions(chunk_size=7)

    def crash(inputs, labels):  # the third chunk never gets written
        if inputs.column("id")[0].as_py() == "14":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, src, out, options, on_chunk=crash)
    record = json.loads(state_path(out).read_text())
    assert record["rows"] == 14 and len(read_csv(out)) == 14
    with open(out, "ab") as fh:  # what a kill in the middle of a write leaves behind
        fh.write(b'"14","half a row')

    with pytest.raises(PredictError, match=r"other settings \(mode: 'score' → 'generate'\)"):
        predict_file(clf, src, out, PredictOptions(mode="generate", chunk_size=7))
    fp32 = Classifier(load_model(clf.lm.spec.name, LoadOptions(cpu_int8=False)))  # as `--no-int8` loads it
    with pytest.raises(PredictError, match=r"other settings \(int8: True → False\)"):
        predict_file(fp32, src, out, options)
    (tmp_path / "mine.csv").write_text("precious\n")
    with pytest.raises(PredictError, match="already exists"):
        predict_file(clf, src, tmp_path / "mine.csv", options)  # an existing file with no record
    assert (tmp_path / "mine.csv").read_text() == "precious\n"
    with pytest.raises(PredictError, match="would overwrite the input"):
        predict_file(clf, src, src, options)

    summary = predict_file(clf, src, out, options)
    assert (summary.skipped, summary.labelled, summary.rows) == (14, 16, 30)
    assert [r["id"] for r in read_csv(out)] == [str(i) for i in range(30)]
    assert [r["label"] for r in read_csv(out)] == one_at_a_time(clf, [r["text"] for r in rows])
    assert not state_path(out).exists()

    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, src, out, PredictOptions(chunk_size=7, overwrite=True), on_chunk=crash)
    write_csv(src, rows[:29])  # the input changes under a half-done output
    with pytest.raises(PredictError, match="changed since out.csv was started"):
        predict_file(clf, src, out, options)
    summary = predict_file(clf, src, out, PredictOptions(chunk_size=7, overwrite=True))
    assert summary.rows == 29 and len(read_csv(out)) == 29


def test_a_label_set_of_several_words_gives_its_own_columns_and_must_match_on_resume(
    tiny_words3, test_rows, tmp_path, capsys
):
    """`--labels` with labels of several tokens (the whole-answer score path): one p_<label> column each,
    the labels of classify one at a time; resuming under another label set is refused."""
    from gemma_emotion.classify import Classifier
    from gemma_emotion.cli import main
    from gemma_emotion.labels import LabelSet
    from gemma_emotion.models import load_model

    spec = "very happy,very sad,neutral"
    texts = [r["text"] for r in test_rows[:9]]
    src = write_csv(tmp_path / "in.csv", [{"text": t} for t in texts])
    out = tmp_path / "out.csv"
    argv = [
        "predict",
        str(src),
        "--out",
        str(out),
        "--model",
        str(tiny_words3),
        "--chunk-size",
        "4",
        "--json",
    ]
    assert main([*argv, "--labels", spec]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = read_csv(out)
    assert list(rows[0])[1:] == ["label", "confidence", "p_very happy", "p_very sad", "p_neutral"]
    clf = Classifier(load_model(str(tiny_words3)), LabelSet.parse(spec))
    assert not clf._one_token
    assert [r["label"] for r in rows] == [clf.classify(t).label for t in texts]
    assert set(summary["label_counts"]) == {"very happy", "very sad", "neutral"}

    out.unlink()
    with pytest.raises(KeyboardInterrupt):  # a half-done output under the three labels
        predict_file(clf, src, out, PredictOptions(chunk_size=4), on_chunk=_stop_at_second_chunk())
    assert "other settings (labels:" in cli_error(
        capsys, *argv[1:], "--labels", "neutral,very happy,very sad"
    )


def _stop_at_second_chunk():
    calls = []

    def hook(inputs, labels):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    return hook


# -- the CLI -----------------------------------------------------------------------------------------------
def cli_error(capsys, *argv: str) -> str:
    from gemma_emotion.cli import main

    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys):
    out = str(tmp_path / "out.csv")
    write_csv(tmp_path / "cols.csv", [{"a": "1", "b": "i am sad"}])
    message = cli_error(capsys, str(tmp_path / "cols.csv"), "--out", out)
    assert "no text column (looked for text, sentence" in message and "found a, b)" in message
    assert "no column 'body'" in cli_error(
        capsys, str(tmp_path / "cols.csv"), "--out", out, "--text-column", "body"
    )
    (tmp_path / "bin.csv").write_bytes(b"text\n\x00\x01\x02\xff" * 50)
    assert "bin.csv: this is a binary file, not CSV" in cli_error(
        capsys, str(tmp_path / "bin.csv"), "--out", out
    )
    (tmp_path / "in.xlsx").write_bytes(b"PK\x03\x04")
    assert "in.xlsx: use a .csv, .tsv, .jsonl, .json or .parquet file" in cli_error(
        capsys, str(tmp_path / "in.xlsx"), "--out", out
    )
    (tmp_path / "fake.parquet").write_text("text\ni am sad\n")
    assert "fake.parquet: not a readable Parquet file" in cli_error(
        capsys, str(tmp_path / "fake.parquet"), "--out", out
    )
    write_csv(tmp_path / "ok.csv", [{"text": "i am sad"}])
    (tmp_path / "open.csv").write_text('id,text\n1,"fine"\n2,"never closed\n3,ok\n', encoding="utf-8")
    assert "open.csv, line 3: a quoted text is never closed" in cli_error(
        capsys, str(tmp_path / "open.csv"), "--out", out
    )
    # An output "inside" a file: its folder cannot be made.
    assert "cannot write the output there (" in cli_error(
        capsys, str(tmp_path / "ok.csv"), "--out", str(tmp_path / "ok.csv" / "out.csv")
    )
    assert "the output must end in .csv, .tsv, .jsonl or .parquet" in cli_error(
        capsys, str(tmp_path / "ok.csv"), "--out", str(tmp_path / "out.txt")
    )
    (tmp_path / "header.csv").write_text("text\n")
    assert "header.csv: no rows" in cli_error(capsys, str(tmp_path / "header.csv"), "--out", out)
    assert "no such file" in cli_error(capsys, str(tmp_path / "missing.csv"), "--out", out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == []  # nothing written


def test_a_broken_json_line_past_the_first_is_named_by_its_line(tiny_gemma3, tmp_path, capsys):
    bad = tmp_path / "posts.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": "ok"}\n{"text": broken\n{"text": "x"}\n', encoding="utf-8")
    from gemma_emotion.cli import main

    assert main(["predict", str(bad), "--out", str(tmp_path / "out.csv"), "--model", str(tiny_gemma3)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's loading lines and the bar
    assert last.startswith("error: posts.jsonl, line 4: not valid JSON (")


def run_cli(*argv: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "gemma_emotion", "predict", *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


def kill_and_resume(model: str, rows: list[dict], tmp_path: Path, *extra: str) -> tuple[list[dict], str, int]:
    """Start `predict` on a CSV, SIGKILL it once the resume record shows some chunks and fewer than all rows,
    run it again with the same output; returns the output's rows, the second run's stdout and the rows the
    record held at the kill."""
    src = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    args = [str(src), "--out", str(out), "--model", model, *extra]
    first = run_cli(*args)
    record, deadline = None, time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        try:
            record = json.loads(state_path(out).read_text())
        except (OSError, ValueError):
            record = None
        if record and record["rows"] >= len(rows) // 4:
            break
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL, "the first run ended before it could be killed halfway"
    done = json.loads(state_path(out).read_text())["rows"]
    assert 0 < done < len(rows)
    second = run_cli(*args)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr[-3000:]
    assert f"resuming: {done} rows were done before" in stderr
    return read_csv(out), stdout, done


def test_killed_halfway_and_run_again_writes_every_row_once_in_order(tiny_gemma3, test_rows, tmp_path):
    rows = [{"id": str(i), "text": r["text"]} for i, r in enumerate(test_rows[:400])]
    out, stdout, done = kill_and_resume(str(tiny_gemma3), rows, tmp_path, "--chunk-size", "40")
    assert [r["id"] for r in out] == [str(i) for i in range(400)]  # 400 rows, each once, in input order
    assert all(r["label"] in LABELS for r in out)
    summary = (
        f"wrote 400 rows to {tmp_path / 'out.csv'} (score mode; {400 - done} labelled now, {done} done before"
    )
    assert summary + " and skipped" in stdout
    assert not state_path(tmp_path / "out.csv").exists()


@pytest.mark.embedded
@pytest.mark.timeout(600)
def test_embedded_model_killed_halfway_resumes_to_400_valid_rows(test_rows, tmp_path):
    """The issue's "must show", with the real embedded Gemma 3 270M and the shipped adapter on the CPU."""
    from gemma_emotion.embedded import MARKER, EmbeddedModelError, checkpoint_dir, find_gguf

    try:
        find_gguf()
    except EmbeddedModelError as exc:
        if not (checkpoint_dir() / MARKER).is_file():
            pytest.skip(str(exc))
    rows = [{"id": str(i), "text": r["text"]} for i, r in enumerate(test_rows[:400])]
    out, stdout, done = kill_and_resume("embedded", rows, tmp_path, "--chunk-size", "50")
    assert [r["id"] for r in out] == [str(i) for i in range(400)]
    assert all(r["label"] in LABELS for r in out)
    assert f"{done} done before and skipped" in stdout
    # The shipped adapter labels this split at 93 %: a resumed output is no worse than that.
    gold = [LABELS[r["label"]] for r in test_rows[:400]]
    assert sum(r["label"] == g for r, g in zip(out, gold)) / 400 > 0.88


@pytest.mark.timeout(900)
def test_two_processes_write_the_same_output_as_one(clf, tiny_gemma3, test_rows, tmp_path):
    """torchrun with 2 CPU processes (gloo, as training's test): each labels half of every chunk, the main
    process writes; the merged file equals the one-process file."""
    rows = [{"id": str(i), "text": r["text"], "label": str(r["label"])} for i, r in enumerate(test_rows[:50])]
    rows[7]["text"] = ""
    src = write_csv(tmp_path / "in.csv", rows)
    predict_file(clf, src, tmp_path / "one.csv", PredictOptions(chunk_size=16))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "gemma_emotion", "predict", str(src), "--out", str(tmp_path / "two.csv"),
           "--model", str(tiny_gemma3), "--chunk-size", "16"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("wrote 50 rows") == 1 and "2 processes" in proc.stdout  # one writer
    one, two = read_csv(tmp_path / "one.csv"), read_csv(tmp_path / "two.csv")
    assert [{k: r[k] for k in ("id", "text", "input_label", "label")} for r in two] == [
        {k: r[k] for k in ("id", "text", "input_label", "label")} for r in one
    ]
    for a, b in zip(one, two):
        for name in SCORE_COLUMNS[1:]:
            assert (a[name] == b[name] == "") or float(a[name]) == pytest.approx(float(b[name]), abs=1e-5)


# -- reading and writing, no model ---------------------------------------------------------------------------
def test_chunks_are_exact_after_a_skip_whatever_the_reader_yields(tmp_path):
    text = "\ufeffid;text\n" + "".join(f'{i};"line {i}\nsecond; part"\n' for i in range(50))
    (tmp_path / "semi.csv").write_text(text, encoding="utf-8")
    source = Source.open(tmp_path / "semi.csv")
    assert source.columns == ["id", "text"] and source.text_column == "text" and source.delimiter == ";"
    chunks = list(source.chunks(7, skip=10, limit=30))
    assert [c.num_rows for c in chunks] == [7, 7, 7, 7, 2]
    ids = [v for c in chunks for v in c.column("id").to_pylist()]
    assert ids == [str(i) for i in range(10, 40)]
    assert chunks[0].column("text")[0].as_py() == "line 10\nsecond; part"

    pq.write_table(
        pa.table({"text": [f"t{i}" for i in range(23)]}), tmp_path / "in.parquet", row_group_size=5
    )
    got = [c.column("text").to_pylist() for c in Source.open(tmp_path / "in.parquet").chunks(10, skip=4)]
    assert got == [[f"t{i}" for i in range(4, 14)], [f"t{i}" for i in range(14, 23)]]

    # The app's row limit: 50 rows on 101 lines; the lines are counted first, the rows when they are over.
    assert source.rows_hint == 100
    assert source.rows_over(100) is None and source.rows_over(50) is None and source.rows_over(49) == 50


def test_csv_cells_that_look_like_formulas_are_disarmed_but_numbers_are_not():
    from gemma_emotion.files import spreadsheet_safe, spreadsheet_safe_table, spreadsheet_text

    cells = ["=1+1", "-5", "-2.5e3", "+x", "@sum", "\tx", "plain", None, "'q"]
    safe = spreadsheet_safe_table(pa.table({"a": cells, "n": list(range(9))}))
    assert safe.column("a").to_pylist() == [
        "'=1+1",
        "-5",
        "-2.5e3",
        "'+x",
        "'@sum",
        "'\tx",
        "plain",
        None,
        "''q",
    ]
    assert safe.column("n").to_pylist() == list(range(9))
    # The same rule as files.spreadsheet_safe, numbers apart, and read back as they were.
    for cell, armed in zip(cells, safe.column("a").to_pylist()):
        if cell is not None and cell not in ("-5", "-2.5e3"):
            assert armed == spreadsheet_safe(cell) and spreadsheet_text(armed) == cell


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_labels_given_as_the_apps_dicts_are_written_as_predict_writes_its_own(clf, test_rows, tmp_path, mode):
    """The app holds labels as `to_dicts()` answers; `Labels.from_dicts` turns them back into the same output
    columns, and `encode_table` writes them as predict's own writer does (the Label tab's download)."""
    from gemma_emotion.predict import Labels, label_texts, output_table
    from gemma_emotion.tables import encode_table

    texts = [r["text"] for r in test_rows[:5]] + ["   ", FORMULA_TEXT]
    labels = label_texts(clf, texts, mode, adapter=False)
    back = Labels.from_dicts(labels.to_dicts(), LABELS, mode)
    for name, values in labels.columns().items():
        assert back.columns()[name].equals(values), name
    table = output_table(pa.table({"text": texts}), back)
    src = write_csv(tmp_path / "in.csv", [{"text": t} for t in texts])
    predict_file(clf, src, tmp_path / "out.csv", PredictOptions(mode=mode, adapter=False))
    assert encode_table(table, "csv") == (tmp_path / "out.csv").read_bytes()
    assert pq.read_table(pa.BufferReader(encode_table(table, "parquet"))).equals(table)


def test_a_file_without_a_text_column_names_the_way_out_of_its_caller(tmp_path):
    from gemma_emotion.tables import TextColumnError, guess_text_column

    src = write_csv(tmp_path / "forum.csv", [{"id": "1", "post": "i am sad"}])
    assert Source.probe(src).columns == ["id", "post"] and guess_text_column(["id", "post"]) is None
    assert guess_text_column(["review", "message"]) == "review"  # the first text name present
    with pytest.raises(TextColumnError) as info:
        Source.open(src)
    assert str(info.value).endswith("found id, post); name it with --text-column")
    assert info.value.message("choose it in the field").endswith("found id, post); choose it in the field")
    assert Source.open(src, "post").text_column == "post"
