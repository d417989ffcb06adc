"""The Label tab's API end to end: `python app.py` with a tiny model, driven by gradio_client. Evaluate,
open the mistakes, correct three, export each format (checked byte for byte), bad labels, undo, unicode and
long texts; plus the per-visitor review queue in process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_app_api import app_error, start_app, wait_ready

from gemma_emotion.corrections import CorrectionStore, ReviewItem, render
from gemma_emotion.labels import LABELS, SYSTEM_PROMPT


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("label-runs")
    log = tmp_path_factory.mktemp("label-log") / "app.log"
    with start_app(tiny_gemma3, runs, shared_data, log) as (url, proc):
        yield {"url": url, "runs": runs, "proc": proc}


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    c = Client(app["url"], verbose=False)
    assert wait_ready(c)["state"] == "ready"
    return c


@pytest.fixture(scope="module")
def report(client, shared_data) -> Path:
    res = client.predict(str(shared_data), "test", 20, "score", "base", 0, api_name="/evaluate")
    return Path(res["report_dir"]) / "base"


def submit(client, text: str, label: str, annotator: str = "tester", **meta) -> dict:
    return client.predict(text=text, label=label, annotator=annotator, api_name="/label_submit", **meta)


def listed(client) -> list[dict]:
    return client.predict(api_name="/corrections_list")["corrections"]


def export(client, fmt: str) -> bytes:
    return Path(client.predict(fmt, api_name="/corrections_export")).read_bytes()


# Runs first: the store holds exactly these three corrections when the exports are compared.
@pytest.mark.timeout(180)
def test_evaluate_open_mistakes_correct_three_and_export_byte_for_byte(client, app, report):
    with open(report / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    wrong = [r for r in rows if r["predicted"] != r["gold"] or r["valid"] != "True"]
    assert len(wrong) >= 3, "the tiny random model should get several of 20 texts wrong"

    queue = client.predict(report=str(report), api_name="/label_queue")
    items = queue["items"]
    assert [it["text"] for it in items] == [r["text"] for r in wrong]
    assert queue["total"] == queue["shown"] == len(wrong)
    for it, row in zip(items, wrong):
        assert (it["gold"], it["predicted"], it["source"]) == (row["gold"], row["predicted"], "evaluation")
        assert it["probabilities"]["joy"] == pytest.approx(float(row["prob_joy"]))
        assert it["corrected"] is None
    # The evaluation's folder (holding base/ only here) opens its base report too.
    assert client.predict(report=str(report.parent), api_name="/label_queue")["items"] == items

    picks = items[:3]
    for it in picks:
        res = submit(client, it["text"], it["gold"], predicted=it["predicted"], gold=it["gold"],
                     source=it["source"], source_ref=it["source_ref"], model=it["model"] or "",
                     probabilities=it["probabilities"])  # fmt: skip
        assert res["correction"]["label"] == it["gold"]
    assert [c["text"] for c in listed(client)] == [it["text"] for it in picks]

    expected = "".join(
        json.dumps({"text": it["text"], "label": LABELS.index(it["gold"])}, ensure_ascii=False) + "\n"
        for it in picks
    )
    assert export(client, "emotion-jsonl") == expected.encode("utf-8")
    chat = "".join(
        json.dumps(
            {
                "prompt": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": it["text"]},
                ],
                "completion": [{"role": "assistant", "content": it["gold"]}],
            },
            ensure_ascii=False,
        )
        + "\n"
        for it in picks
    )
    assert export(client, "chat-jsonl") == chat.encode("utf-8")
    table = export(client, "csv")
    assert table == render(CorrectionStore(app["runs"], create=False), "csv").encode("utf-8")
    parsed = list(csv.DictReader(table.decode("utf-8").splitlines()))
    assert [(r["text"], r["label"], r["gold"], r["source"], r["annotator"]) for r in parsed] == [
        (it["text"], it["gold"], it["gold"], "evaluation", "tester") for it in picks
    ]
    assert all(r["source_ref"].startswith("reports/") and "#" in r["source_ref"] for r in parsed)

    reopened = client.predict(report=str(report), api_name="/label_queue")["items"]
    assert [it["corrected"] for it in reopened[:3]] == [it["gold"] for it in picks]
    assert all(it["corrected"] is None for it in reopened[3:])


def test_queue_filters(client, report):
    everything = client.predict(report=str(report), only_mistakes=False, api_name="/label_queue")
    assert everything["total"] == 20
    joy = client.predict(report=str(report), only_mistakes=False, gold="joy", api_name="/label_queue")
    assert joy["items"] and all(it["gold"] == "joy" for it in joy["items"])
    assert joy["shown"] == sum(it["gold"] == "joy" for it in everything["items"])
    unsure = client.predict(
        report=str(report), only_mistakes=False, max_confidence=0.3, api_name="/label_queue"
    )
    assert all(it["confidence"] <= 0.3 for it in unsure["items"])
    assert unsure["shown"] == sum(it["confidence"] <= 0.3 for it in everything["items"])


def test_unlabeled_texts_are_scored_least_confident_first(client):
    texts = ["i am thrilled about the trip", "this is so unfair", "i miss her", "what a surprise"]
    queue = client.predict(texts=texts, api_name="/label_queue")["items"]
    assert sorted(it["text"] for it in queue) == sorted(texts)
    confidences = [it["confidence"] for it in queue]
    assert confidences == sorted(confidences)
    scored = {r["text"]: r for r in client.predict(texts, "score", True, api_name="/classify_batch")}
    for it in queue:
        assert it["source"] == "unlabeled" and it["gold"] is None
        assert it["predicted"] == scored[it["text"]]["label"]
        assert it["probabilities"] == pytest.approx(scored[it["text"]]["probabilities"], abs=1e-6)


def test_bad_labels_and_requests_are_clear_errors_and_the_app_stays_up(client, app):
    before = listed(client)
    for bad in ("happiness", "7", "", "sadness, joy"):
        assert "unknown label" in app_error(client, "i feel odd", bad, api_name="/label_submit")
    assert "empty text" in app_error(client, "   ", "joy", api_name="/label_submit")
    assert "not a stored report" in app_error(client, "/etc", api_name="/label_queue")
    assert "not in the list of choices" in app_error(client, "xml", api_name="/corrections_export")
    assert "no texts" in app_error(client, api_name="/label_queue")
    bad_prob = app_error(client, "i feel odd", "joy", probabilities={"joy": "abc"}, api_name="/label_submit")
    assert "the probability of 'joy' must be a number, got 'abc'" in bad_prob
    assert "between 0 and 1, got 3" in app_error(
        client, "i feel odd", "joy", probabilities={"joy": 3}, api_name="/label_submit"
    )
    assert "the annotator's name has 1000 characters; at most 100" in app_error(
        client, "i feel odd", "joy", annotator="x" * 1000, api_name="/label_submit"
    )
    # A misspelt filter is said, not answered with an empty queue.
    assert "unknown gold label 'bogus': use all or one of sadness" in app_error(
        client, texts=["i feel odd"], gold="bogus", api_name="/label_queue"
    )
    bad_source = app_error(client, texts=["i feel odd"], source="web", api_name="/label_queue")
    assert "unknown source 'web'" in bad_source
    assert app["proc"].poll() is None
    assert listed(client) == before
    assert client.predict("still up", api_name="/classify")["label"] in LABELS


def test_undo_reverts_the_latest_correction_of_that_annotator(client):
    text = "the exam went better than i feared"
    submit(client, text, "joy", annotator="ann")
    submit(client, text, "surprise", annotator="ann")
    res = client.predict("ann", api_name="/label_undo")
    assert res["undone"]["text"] == text and res["undone"]["label"] == "surprise"
    assert res["current"]["label"] == "joy"
    assert client.predict("ann", api_name="/label_undo")["current"] is None
    assert text not in {c["text"] for c in listed(client)}

    submit(client, "mine to undo", "fear", annotator="ann")
    submit(client, "someone else's", "anger", annotator="bob")
    res = client.predict("ann", api_name="/label_undo")
    assert res["undone"]["text"] == "mine to undo"
    texts = {c["text"] for c in listed(client)}
    assert "someone else's" in texts and "mine to undo" not in texts
    assert client.predict("nobody", api_name="/label_undo") == {
        "undone": None,
        "current": None,
        "total": res["total"],
    }


def test_unicode_and_a_very_long_text_round_trip(client):
    unicode_text = "Ça m'a brisé le cœur 💔 — 我很难过, مرحبا, e\u0301, 👩‍👩‍👧"
    long_text = ("i waited all day in the rain and nobody came " * 1500).strip()  # about 68 000 characters
    formula = "=1+1 made me laugh"
    for text, label in ((unicode_text, "sadness"), (long_text, "anger"), (formula, "joy")):
        assert submit(client, text, label)["correction"]["text"] == text
    stored = {c["text"]: c["label"] for c in listed(client)}
    assert stored[unicode_text] == "sadness" and stored[long_text] == "anger" and stored[formula] == "joy"
    lines = [json.loads(line) for line in export(client, "emotion-jsonl").decode("utf-8").splitlines()]
    exported = {r["text"]: r["label"] for r in lines}
    assert exported[unicode_text] == 0 and exported[long_text] == 3 and exported[formula] == 1
    table = list(csv.DictReader(export(client, "csv").decode("utf-8").splitlines()))
    assert "'" + formula in {r["text"] for r in table}  # a spreadsheet will not run it
    assert "at most" in app_error(client, "x" * 100_001, "joy", api_name="/label_submit")


# -- the review queue in process ------------------------------------------------------------------------
def _items(*specs) -> list[dict]:
    from gemma_emotion.review import item_dict

    out = []
    for text, gold, pred, conf, corrected in specs:
        probs = {name: (conf if name == pred else (1 - conf) / 5) for name in LABELS}
        item = ReviewItem(text, gold, pred, probs, conf, corrected=corrected)
        out.append(item_dict(item, "m"))
    return out


def test_review_queue_cursor_skip_and_filters():
    from gemma_emotion.review import QueueFilter, ReviewQueue

    items = _items(
        ("a", "joy", "fear", 0.9, None),
        ("b", "joy", "anger", 0.4, "joy"),  # corrected earlier: counts as reviewed
        ("c", "fear", "joy", 0.2, None),
        ("d", "love", "joy", 0.5, None),
    )
    q, every = ReviewQueue(), QueueFilter()
    q.load(items, every)
    assert q.pos == 0 and q.progress(every) == (1, 4)
    q.done[0] = "joy"
    q.advance(every, 0)
    assert q.current["text"] == "c"
    unsure = QueueFilter(max_confidence=0.45)
    assert unsure.indices(q.items) == [1, 2]
    q.settle(unsure)
    assert q.current["text"] == "c" and q.progress(unsure) == (1, 2)
    q.done[2] = "skip"
    q.advance(unsure, 2)
    assert q.pos is None and q.progress(unsure) == (2, 2)
    q.settle(QueueFilter(gold="love"))
    assert q.current["text"] == "d"
    assert q.add_live(_items(("live one", None, "joy", 0.6, None))[0]) == 4
    assert q.current["text"] == "live one"

    from gemma_emotion.ui.label import progress_line

    assert progress_line(ReviewQueue(), every, 1) == "**No queue yet.** 1 correction saved so far."
    assert progress_line(q, every, 2).endswith("· 2 corrections saved")


def test_push_to_hub_needs_a_token_and_is_off_in_demo_mode(tmp_path, monkeypatch):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.label import push_corrections, submit_correction
    from gemma_emotion.ui.state import AppState, UserError

    monkeypatch.delenv("HF_TOKEN", raising=False)
    for demo, message in ((True, "switched off in this demo"), (False, "set HF_TOKEN")):
        settings = load_settings(
            None, env={}, overrides={"storage": str(tmp_path / str(demo)), "demo_mode": demo}
        )
        state = AppState(settings)
        submit_correction(state, "i am glad it rained", "joy")
        with pytest.raises(UserError, match=message):
            push_corrections(state, "someone/corrections")


def test_review_queue_marks_skips_and_follows_an_undo_of_the_store(tmp_path):
    """The queue's mark / skip / undo, in the core and without gradio, kept in step with the store."""
    from gemma_emotion.review import QueueFilter, ReviewQueue, live_item

    store = CorrectionStore(tmp_path)
    store.add("b", "joy")  # corrected before the queue was loaded
    items = _items(
        ("a", "joy", "fear", 0.9, None), ("b", "joy", "anger", 0.4, "joy"), ("c", "fear", "joy", 0.2, None)
    )
    q, every = ReviewQueue(), QueueFilter()
    q.load(items, every)
    assert q.current["text"] == "a"

    store.add("a", "sadness", annotator="ann")
    q.mark("sadness", "ann", every)
    assert q.current["text"] == "c" and q.items[0]["corrected"] == "sadness" and q.progress(every) == (2, 3)
    q.skip(every)
    assert q.current is None and q.progress(every) == (3, 3)
    assert q.undo_skip() and q.current["text"] == "c" and not q.undo_skip()  # the label is not a skip

    undone = store.undo_last(q.undo_annotator(None))
    q.reverted(undone)
    assert q.current["text"] == "a" and q.items[0]["corrected"] is None and q.progress(every) == (1, 3)

    live = live_item({"text": "b", "label": "anger", "probabilities": {"anger": 0.7}}, "classify", store)
    assert live["corrected"] == "joy" and live["source"] == "live" and live["confidence"] == 0.7
    assert q.add_live(live) == 3 and q.current["text"] == "b"
