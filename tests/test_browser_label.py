"""The Label tab in a real headless Chromium: load an evaluation's mistakes, label with key "1" and with a
button, watch the count change, undo, and send a Classify result to the queue with "wrong?". Screenshots
go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from test_app_api import start_app, wait_ready
from test_browser import LABEL_RE, open_tab, shot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("browser-label-runs")
    log = tmp_path_factory.mktemp("browser-label-log") / "app.log"
    with start_app(tiny_gemma3, runs, shared_data, log) as (url, _proc):
        yield url


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

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(60_000)
    page.goto(app)
    expect(page.locator("#model-status")).to_contain_text("✅", timeout=120_000)
    open_tab(page, "Label")
    progress = page.locator("#label-progress")
    expect(progress).to_contain_text("No queue yet")

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
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("3")
    expect(progress).to_contain_text(reviewed(2, total + 1))
    shot(page, "label-wrong")
    open_tab(page, "Train")
    expect(page.locator("#train-use-corrections")).to_be_visible()
    shot(page, "label-train")
    stored = client.predict(api_name="/corrections_list")["corrections"]
    assert stored[-1]["text"] == "my grandmother's letters still make me smile"
    assert stored[-1]["label"] == "love" and stored[-1]["source"] == "live"
    page.close()
