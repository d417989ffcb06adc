"""The app with an adapter trained on a label set of its own (negative, positive, surprise): through
gradio_client and in a real headless Chromium, every tab follows the adapter's three labels."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import VALENCE
from test_app_api import start_app, wait_ready
from test_browser import open_tab, shot


@pytest.fixture(scope="module")
def app(tiny_words3, valence_run, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("label-set-app-runs")
    log = tmp_path_factory.mktemp("label-set-app-log") / "app.log"
    extra = ("--adapter", str(valence_run["adapter"]))
    with start_app(tiny_words3, runs, shared_data, log, extra=extra) as (url, _proc):
        yield {"url": url, "runs": runs, "adapter": str(valence_run["adapter"]), "model": str(tiny_words3)}


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    c = Client(app["url"], verbose=False)
    status = wait_ready(c)
    assert status["state"] == "ready" and status["adapter"] == app["adapter"], status
    return c


def read_file(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


@pytest.mark.timeout(900)
def test_every_endpoint_follows_the_adapters_label_set(client, app, valence_file, shared_data, tmp_path):
    from label_set_data import write_set

    assert client.predict(api_name="/status")["labels"] == VALENCE

    res = client.predict("i feel wonderful today", api_name="/classify")
    assert list(res["probabilities"]) == VALENCE and res["label"] in VALENCE
    assert sum(res["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    generated = client.predict("i feel wonderful today", "generate", api_name="/classify")
    assert generated["label"] in (*VALENCE, "invalid")

    # Base vs fine-tuned: the base model is asked for the same three labels.
    pair = client.predict("what a lovely surprise", api_name="/compare")
    assert list(pair["base"]["probabilities"]) == list(pair["finetuned"]["probabilities"]) == VALENCE

    # Evaluate on valence data: the reports, their per-class keys and confusion matrices are the set's.
    ev = client.predict(str(valence_file), "test", 20, "score", "both", 0, api_name="/evaluate")
    for metrics in ev["reports"].values():
        assert list(metrics["per_class"]) == VALENCE == metrics["labels"]
        assert metrics["confusion_columns"] == [*VALENCE, "invalid"] and len(metrics["confusion"]) == 3
    assert list(ev["comparison"]["per_class_f1"]) == VALENCE
    # Data with labels the adapter does not know: one message naming them.
    renamed = write_set(shared_data, tmp_path, "renamed", limit=40)
    with pytest.raises(Exception, match="labels not in the set: sad, .*scared"):
        client.predict(str(renamed), "test", 20, "score", "both", 0, api_name="/evaluate")
    # Ids are ids of the set: the six emotions' 0-5 go past its three.
    with pytest.raises(
        Exception, match=r"label \d is outside 0-2 \(the ids of negative, positive, surprise\)"
    ):
        client.predict("", "test", 20, "score", "both", 0, api_name="/evaluate")

    # The label queue of that report, and a correction under the set; a label of another set is refused.
    queue = client.predict(
        report=ev["report_dir"] + "/finetuned", only_mistakes=False, api_name="/label_queue"
    )
    assert queue["items"] and all(set(it["probabilities"]) == set(VALENCE) for it in queue["items"])
    text = queue["items"][0]["text"]
    saved = client.predict(text, "surprise", api_name="/label_submit")["correction"]
    assert (saved["label"], saved["labels"]) == ("surprise", VALENCE)
    with pytest.raises(Exception, match="unknown label 'joy': the loaded model's labels are"):
        client.predict("another text", "joy", api_name="/label_submit")
    counts = client.predict(api_name="/corrections_list")["counts"]
    assert counts == {"negative": 0, "positive": 0, "surprise": 1}

    # Exports write the set's names, and its ids in emotion-jsonl.
    rows = list(csv.DictReader(io.StringIO(read_file(client.predict("csv", api_name="/corrections_export")))))
    assert [(r["text"], r["label"], r["label_id"], r["label_set"]) for r in rows] == [
        (text, "surprise", "2", "negative,positive,surprise")
    ]
    lines = read_file(client.predict("emotion-jsonl", api_name="/corrections_export")).splitlines()
    assert [json.loads(x) for x in lines] == [{"text": text, "label": 2}]
    chat = json.loads(read_file(client.predict("chat-jsonl", api_name="/corrections_export")))
    assert "negative, positive or surprise" in chat["prompt"][0]["content"]


@pytest.mark.timeout(300)
def test_the_label_tab_scores_a_file_of_the_sets_labels_and_downloads_them(client, valence_file, tmp_path):
    """ "Score and load" in the Label tab on a file labelled with the adapter's names: its labels are read as
    that set's (gold in the queue and the download), and the download has one probability per label."""
    from gradio_client import handle_file

    with open(valence_file, newline="", encoding="utf-8") as fh:
        rows = [{"text": r["text"], "label": r["label"]} for r in list(csv.DictReader(fh))[:8]]
    assert {r["label"] for r in rows} <= set(VALENCE)
    upload = tmp_path / "valence.csv"
    with open(upload, "w", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, fieldnames=["text", "label"]).writeheader()
        csv.DictWriter(fh, fieldnames=["text", "label"]).writerows(rows)

    *_, info, _chart, message, out = client.predict(
        handle_file(str(upload)), "", api_name="/label_load_texts"
    )
    assert message.startswith("loaded 8 texts") and "gold" in info
    got = list(csv.DictReader(io.StringIO(read_file(out))))
    assert list(got[0]) == ["text", "gold", "label", "confidence", *[f"p_{n}" for n in VALENCE]]
    assert [(r["text"], r["gold"]) for r in got] == [(r["text"], r["label"]) for r in rows]
    assert all(r["label"] in VALENCE for r in got)


@pytest.mark.timeout(900)
def test_switching_adapters_switches_the_labels_and_keeps_the_corrections(client, app):
    client.predict(app["model"], "none", api_name="/load_model")
    status = wait_ready(client)
    assert status["adapter"] is None and status["labels"] == [
        "sadness", "joy", "love", "anger", "fear", "surprise"
    ]  # fmt: skip
    assert (
        list(client.predict("i feel wonderful today", api_name="/classify")["probabilities"])[0] == "sadness"
    )
    client.predict("a six-label correction", "joy", api_name="/label_submit")
    listed = client.predict(api_name="/corrections_list")
    # The valence correction made earlier is kept and counted under its own label.
    assert listed["counts"]["joy"] == 1 and listed["counts"]["surprise"] >= 1
    assert {c["label"] for c in listed["corrections"]} >= {"joy"}
    # Two sets in one emotion-jsonl file would mix ids: a clear message; csv writes both.
    with pytest.raises(Exception, match="label sets"):
        client.predict("emotion-jsonl", api_name="/corrections_export")
    rows = list(csv.DictReader(io.StringIO(read_file(client.predict("csv", api_name="/corrections_export")))))
    assert {r["label_set"] for r in rows} == {
        "sadness,joy,love,anger,fear,surprise",
        "negative,positive,surprise",
    }
    client.predict(app["model"], app["adapter"], api_name="/load_model")
    assert wait_ready(client)["labels"] == VALENCE


@pytest.mark.timeout(900)
def test_train_tab_takes_a_label_set(client, app, valence_file):
    with pytest.raises(Exception, match="2 to 30"):
        client.predict({"labels": "only"}, api_name="/train_start")
    started = client.predict(
        {
            "model": app["model"], "data": str(valence_file), "labels": "negative, positive, surprise",
            "train_size": 16, "test_size": 8, "epochs": 1, "name": "valence-app",
        },
        api_name="/train_start",
    )  # fmt: skip
    assert started["labels"] == VALENCE
    deadline = time.monotonic() + 600
    while (run := client.predict("valence-app", api_name="/train_status")["run"])["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(2)
    assert run["status"] == "completed", run["error"]
    assert run["labels"] == VALENCE
    labels_file = Path(run["run_dir"]) / "adapter" / "labels.json"
    assert json.loads(labels_file.read_text())["names"] == VALENCE


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_classify_bars_and_label_buttons_follow_the_adapter(browser, client, app):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(60_000)
    page.goto(app["url"])
    expect(page.locator("#model-status")).to_contain_text("✅", timeout=120_000)

    # Classify: three bars, one per label of the adapter's set.
    page.locator("#classify-text textarea").fill("i was so happy to see my old friends again")
    page.locator("#classify-button").click()
    expect(page.locator("#classify-label textarea")).to_have_value(
        re.compile("^(" + "|".join(VALENCE) + ")$")
    )
    bars = page.locator("#classify-chart .barlayer .point")
    expect(bars).to_have_count(3)
    ticks = page.locator("#classify-chart .xtick text")
    expect(ticks).to_have_text(VALENCE)
    shot(page, "label-set-classify")

    # Label: three buttons with hotkeys 1-3.
    open_tab(page, "Label")
    buttons = page.locator("#label-buttons button")
    expect(buttons).to_have_text(["1 · negative", "2 · positive", "3 · surprise"])
    page.locator("#label-texts textarea").fill("the party was a total surprise\ni lost my wallet again")
    page.locator("#label-load-texts").click()
    progress = page.locator("#label-progress")
    expect(progress).to_contain_text(re.compile(r"\b0 of 2 reviewed"))
    first = page.locator("#label-text textarea").input_value()
    # No text field may hold the focus for the hotkeys: blur it outright (a click on the page could land
    # on a field, depending on the layout at that moment).
    page.evaluate("document.activeElement && document.activeElement.blur()")
    assert page.evaluate("document.activeElement === document.body")
    expect(page.locator("#label-btn-surprise")).to_be_enabled()
    page.keyboard.press("4")  # no fourth label: nothing happens
    page.keyboard.press("3")
    expect(page.locator("#label-message textarea")).to_have_value("saved: surprise", timeout=30_000)
    expect(progress).to_contain_text(re.compile(r"\b1 of 2 reviewed"))
    page.locator("#label-btn-negative").click()
    expect(page.locator("#label-message textarea")).to_have_value("saved: negative")
    shot(page, "label-set-label")

    # Export: the file names the labels of the set.
    page.get_by_text("Export and share the corrections").click()
    # By its role: the Label tab's scored download (texts-labelled.csv) is labelled "…csv" as well.
    page.get_by_role("radio", name="csv").check()
    page.locator("#label-export").click()
    link = page.locator("#label-export-file a").first
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    with urllib.request.urlopen(href if href.startswith("http") else app["url"].rstrip("/") + href) as resp:
        rows = list(csv.DictReader(io.StringIO(resp.read().decode("utf-8"))))
    mine = {r["text"]: (r["label"], r["label_set"]) for r in rows}
    assert mine[first] == ("surprise", "negative,positive,surprise")
    assert ("negative", "negative,positive,surprise") in mine.values()

    # Another adapter loaded from the page (none: the bare model's six emotions): the label buttons follow,
    # and a hotkey saves the new set's label at that position.
    try:
        page.get_by_text("Model and adapter").click()
        page.locator("#adapter-picker input").click()
        page.get_by_role("option", name="none (base model)").click()
        page.locator("#model-load").click()
        six = ["sadness", "joy", "love", "anger", "fear", "surprise"]
        expect(buttons).to_have_text([f"{i + 1} · {n}" for i, n in enumerate(six)], timeout=120_000)
        expect(page.locator("#label-btn-joy")).to_be_visible()
        page.locator("#label-texts textarea").fill("a text for the six labels")
        page.locator("#label-load-texts").click()
        expect(progress).to_contain_text(re.compile(r"\b0 of 1 reviewed"))
        page.evaluate("document.activeElement && document.activeElement.blur()")
        page.keyboard.press("2")
        expect(page.locator("#label-message textarea")).to_have_value("saved: joy", timeout=30_000)
        saved = client.predict(api_name="/corrections_list")["corrections"]
        assert ("a text for the six labels", "joy") in {(c["text"], c["label"]) for c in saved}
    finally:
        page.close()
        client.predict(app["model"], app["adapter"], api_name="/load_model")
        assert wait_ready(client)["labels"] == VALENCE
