"""The Label tab in a real headless Chromium: load an evaluation's mistakes, label with key "1" and with a
button, watch the count change, undo, and send a Classify result to the queue with "wrong?"; score a file
and download the scored texts; "Classify a file" with its column of texts chosen in the field. Screenshots
go to test-artifacts/."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import urllib.request

import pytest
from conftest import write_csv
from test_app_api import start_app, wait_ready
from test_browser import LABEL_RE, open_tab, shot

from gemma_emotion.labels import LABELS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("browser-label-runs")
    log = tmp_path_factory.mktemp("browser-label-log") / "app.log"
    with start_app(tiny_gemma3, runs, shared_data, log) as (url, _proc):
        yield url


def loaded_page(browser, url: str):
    """A new page on the app, once its model has loaded."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(60_000)
    page.goto(url)
    expect(page.locator("#model-status")).to_contain_text("✅", timeout=120_000)
    return page


def reviewed(n: int, total: int) -> re.Pattern:
    return re.compile(rf"\b{n} of {total} reviewed")


@pytest.mark.timeout(300)
def test_label_mistakes_with_keys_and_buttons_then_wrong_from_classify(browser, app, shared_data):
    from gradio_client import Client
    from playwright.sync_api import expect

    client = Client(app, verbose=False)
    wait_ready(client)
    client.predict(str(shared_data), "test", 20, "score", "base", 0, api_name="/evaluate")
    mistakes = client.predict(report=client.predict(api_name="/reports")[0]["dir"], api_name="/label_queue")
    total = mistakes["shown"]
    first, second = mistakes["items"][0]["text"], mistakes["items"][1]["text"]

    page = loaded_page(browser, app)
    open_tab(page, "Label")
    progress = page.locator("#label-progress")
    expect(progress).to_contain_text("No queue yet. 0 corrections saved so far.")

    # The page load picked the newest report; load its mistakes.
    page.locator("#label-load-report").click()
    expect(progress).to_contain_text(reviewed(0, total))
    expect(page.locator("#label-text textarea")).to_have_value(first)

    page.keyboard.press("1")  # the focus is on a button, not a text field: the key labels
    expect(progress).to_contain_text(reviewed(1, total))
    expect(page.locator("#label-message textarea")).to_have_value("saved: sadness")
    expect(page.locator("#label-text textarea")).to_have_value(second)

    page.locator("#label-btn-joy").click()
    expect(progress).to_contain_text(reviewed(2, total))
    shot(page, "label")

    # Typing a digit into a text field must not label anything.
    page.locator("#label-annotator input").fill("4")
    page.locator("#label-annotator input").press("4")
    expect(progress).to_contain_text(reviewed(2, total))
    page.locator("#label-annotator input").fill("")

    page.locator("#label-undo").click()
    expect(progress).to_contain_text(reviewed(1, total))
    expect(page.locator("#label-text textarea")).to_have_value(second)
    stored = client.predict(api_name="/corrections_list")["corrections"]
    assert [(c["text"], c["label"]) for c in stored] == [(first, "sadness")]

    # Classify, then "wrong?": the Label tab opens on that text, key 3 labels it "love".
    open_tab(page, "Classify")
    page.locator("#classify-text textarea").fill("my grandmother's letters still make me smile")
    page.locator("#classify-button").click()
    expect(page.locator("#classify-label textarea")).to_have_value(LABEL_RE)
    shot(page, "label-classify-wrong")
    page.locator("#classify-wrong").click()
    expect(page.locator("#label-text textarea")).to_have_value("my grandmother's letters still make me smile")
    expect(progress).to_contain_text(reviewed(1, total + 1))
    # No text field may hold the focus for the hotkeys: blur it outright (a click on the page could land
    # on a field, depending on the layout at that moment).
    page.evaluate("document.activeElement && document.activeElement.blur()")
    assert page.evaluate("document.activeElement === document.body")
    page.keyboard.press("3")
    expect(progress).to_contain_text(reviewed(2, total + 1))
    shot(page, "label-wrong")
    open_tab(page, "Train")
    expect(page.locator("#train-use-corrections")).to_be_visible()
    shot(page, "label-train")
    stored = client.predict(api_name="/corrections_list")["corrections"]
    assert stored[-1]["text"] == "my grandmother's letters still make me smile"
    assert stored[-1]["label"] == "love" and stored[-1]["source"] == "live"
    # A new page load counts the corrections saved so far (read at load, not when the page was built).
    client.predict("one more correction from elsewhere", "joy", api_name="/label_submit")
    page.reload()
    expect(page.locator("#model-status")).to_contain_text("✅", timeout=120_000)
    open_tab(page, "Label")
    count = len(client.predict(api_name="/corrections_list")["corrections"])
    saved = f"No queue yet. {count} corrections saved so far."
    expect(page.locator("#label-progress")).to_contain_text(saved)
    page.close()


def fetch(page, url: str, href: str) -> str:
    """The text of a file the page links to (a gr.File download)."""
    with urllib.request.urlopen(href if href.startswith("http") else url.rstrip("/") + href) as resp:
        return resp.read().decode("utf-8")


@pytest.mark.timeout(300)
def test_score_a_file_in_the_label_tab_and_download_what_it_shows(browser, app, shared_data, tmp_path):
    """Upload texts with labels, "Score and load": the download link holds every text in file order with the
    model's label and probabilities; the item shown first is its least confident row, as the file says."""
    from playwright.sync_api import expect

    from gemma_emotion.data import load_split
    from gemma_emotion.files import spreadsheet_text

    ds = load_split(shared_data, "test", limit=8, seed=21)
    rows = [{"text": t, "label": LABELS[g]} for t, g in zip(ds["text"], ds["label"])]
    upload = write_csv(tmp_path / "mine.csv", rows)

    page = loaded_page(browser, app)
    open_tab(page, "Label")
    page.locator("#label-upload input[type=file]").set_input_files(str(upload))
    page.get_by_text(upload.name).first.wait_for()
    page.locator("#label-load-texts").click()
    expect(page.locator("#label-progress")).to_contain_text(reviewed(0, len(rows)))
    link = page.locator("#label-scored-file a").first
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href.endswith("/mine-labelled.csv")
    got = list(csv.DictReader(io.StringIO(fetch(page, app, href))))
    assert [spreadsheet_text(r["text"]) for r in got] == [r["text"] for r in rows]
    assert [r["gold"] for r in got] == [r["label"] for r in rows]
    for r in got:
        probs = {n: float(r[f"p_{n}"]) for n in LABELS}
        assert r["label"] == max(probs, key=probs.get)
    first = min(got, key=lambda r: float(r["confidence"]))
    expect(page.locator("#label-text textarea")).to_have_value(spreadsheet_text(first["text"]))
    info = page.locator("#label-info")
    expect(info).to_contain_text(f"predicted {first['label']} ({float(first['confidence']):.0%})")
    shot(page, "label-scored-download")
    page.close()


@pytest.mark.timeout(300)
def test_classify_a_file_with_its_text_column_chosen_in_the_field(browser, app, shared_data, tmp_path):
    """A file whose texts are in `post`: the upload fills the Text column field with its columns and the
    message says to choose one; once `post` is chosen, "Classify file" labels its texts."""
    from playwright.sync_api import expect

    from gemma_emotion.data import load_split

    texts = list(load_split(shared_data, "test", limit=3, seed=4)["text"])
    upload = write_csv(tmp_path / "forum.csv", [{"id": str(i), "author": "ann", "post": t}
                                                for i, t in enumerate(texts)])  # fmt: skip

    page = loaded_page(browser, app)
    button = page.locator("#classify-file-button")
    for _ in range(3):  # a click on the accordion while the page settles can be lost; a second one closes it
        if button.is_visible():
            break
        page.get_by_text("Classify a file of texts").click()
        with contextlib.suppress(Exception):
            button.wait_for(state="visible", timeout=10_000)
    expect(button).to_be_visible()
    page.locator("#classify-file-upload input[type=file]").set_input_files(str(upload))
    message = page.locator("#classify-file-message textarea")
    expect(message).to_have_value(re.compile(r"forum\.csv: no column has a text name; .*'Text column' field"))
    column = page.locator("#classify-file-column input")
    column.click()
    # Each option reads "✓ name" (the check mark shows only on the chosen one).
    expect(page.get_by_role("option")).to_have_text(
        [re.compile(rf"\b{c}$") for c in ("id", "author", "post")]
    )
    page.get_by_role("option", name="post").click()
    expect(column).to_have_value("post")
    button.click()
    expect(message).to_have_value(re.compile(r"^3 rows classified"))
    assert all(page.get_by_text(text, exact=True).count() >= 1 for text in texts)  # in the table's cells
    shot(page, "classify-file-column")
    page.close()


@pytest.mark.timeout(300)
def test_the_label_tab_scores_the_column_chosen_in_its_text_column_field(browser, app, tmp_path):
    """The Label tab's upload fills its Text column field with the file's columns (the message says to
    choose when no column has a text name); with `post` chosen, "Score and load" queues the posts."""
    from playwright.sync_api import expect

    posts = ["i lost my keys again", "what a lovely surprise party"]
    upload = write_csv(tmp_path / "board.csv", [{"id": str(i), "post": p} for i, p in enumerate(posts)])

    page = loaded_page(browser, app)
    open_tab(page, "Label")
    page.locator("#label-upload input[type=file]").set_input_files(str(upload))
    message = page.locator("#label-message textarea")
    expect(message).to_have_value(re.compile(r"board\.csv: no column has a text name; .*'Text column' field"))
    column = page.locator("#label-upload-column input")
    column.click()
    expect(page.get_by_role("option")).to_have_text([re.compile(rf"\b{c}$") for c in ("id", "post")])
    page.get_by_role("option", name="post").click()
    expect(column).to_have_value("post")
    page.locator("#label-load-texts").click()
    expect(message).to_have_value(re.compile(r"^loaded 2 texts"))
    expect(page.locator("#label-text textarea")).to_have_value(re.compile("|".join(map(re.escape, posts))))
    shot(page, "label-upload-column")
    page.close()
