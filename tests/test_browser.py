"""The app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): every tab opens,
a text is classified, a short training run starts, its loss plot grows, a reload finds it again, it stops,
an evaluation runs. Screenshots of each tab go to test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gemma_emotion.labels import LABELS

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LABEL_RE = re.compile("^(" + "|".join(LABELS) + ")$")
LOSS_POINTS = "#train-loss .scatterlayer .trace:first-child path.point"


@pytest.fixture(scope="module")
def app_url(tiny_gemma3, shared_data, tmp_path_factory):
    from test_app_api import start_app

    runs = tmp_path_factory.mktemp("browser-runs")
    log = tmp_path_factory.mktemp("browser-log") / "app.log"
    with start_app(tiny_gemma3, runs, shared_data, log) as (url, _proc):
        yield url


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def loss_points(page) -> int:
    return page.locator(LOSS_POINTS).count()


@pytest.mark.timeout(900)
def test_every_tab_classify_train_and_evaluate(browser, app_url):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(120_000)
    page.goto(app_url)
    expect(page.locator("#model-status")).to_contain_text("✅", timeout=120_000)

    # Classify: a label appears, with its probabilities plotted.
    page.locator("#classify-text textarea").fill("i was so happy to see my old friends again")
    page.locator("#classify-button").click()
    expect(page.locator("#classify-label textarea")).to_have_value(LABEL_RE)
    expect(page.locator("#classify-message textarea")).to_have_value(re.compile("classified by"))
    shot(page, "classify")

    # Empty text: a message, not a crash.
    page.locator("#classify-text textarea").fill("")
    page.locator("#classify-button").click()
    expect(page.locator("#classify-message textarea")).to_have_value(re.compile("empty text"))

    # Compare without an adapter says what to do.
    open_tab(page, "Compare")
    page.locator("#compare-text textarea").fill("i am scared of the storm")
    page.locator("#compare-button").click()
    expect(page.locator("#compare-result textarea")).to_have_value(re.compile("no adapter is loaded"))
    shot(page, "compare")

    # Train: start a run long enough to be watched, see the loss plot grow, reload, stop.
    open_tab(page, "Train")
    page.get_by_label("Training rows (0 = all)").fill("4000")
    page.get_by_label("Test rows after training (empty = all, 0 = skip)").fill("0")
    page.locator("#train-start").click()
    expect(page.locator("#train-status textarea")).to_have_value(re.compile(": running"))
    page.wait_for_function(
        f"document.querySelectorAll('{LOSS_POINTS}').length >= 1", timeout=240_000, polling=500
    )
    seen = loss_points(page)
    page.wait_for_function(
        f"document.querySelectorAll('{LOSS_POINTS}').length > {seen}", timeout=120_000, polling=500
    )
    shot(page, "train")
    run_name = page.locator("#train-status textarea").input_value().split(":")[0]

    page.reload()
    open_tab(page, "Train")
    status = page.locator("#train-status textarea")
    expect(status).to_have_value(re.compile(re.escape(run_name) + ": running"))
    page.wait_for_function(f"document.querySelectorAll('{LOSS_POINTS}').length >= 1", timeout=60_000)

    page.locator("#train-stop").click()
    expect(page.locator("#train-status textarea")).to_have_value(re.compile(": stopped"), timeout=60_000)
    shot(page, "train-stopped")

    # Evaluate the base model on 20 rows: numbers, charts and the mistakes table appear.
    open_tab(page, "Evaluate")
    page.locator("#evaluate-rows input").fill("20")
    page.locator("#evaluate-which").get_by_label("base", exact=True).check()
    page.locator("#evaluate-button").click()
    expect(page.locator("#evaluate-message textarea")).to_have_value(re.compile(r"base: accuracy [\d.]+ %"))
    expect(page.locator(".js-plotly-plot .heatmaplayer")).to_have_count(1)
    expect(page.get_by_text("Invalid answers: none")).to_be_visible()  # score mode is never invalid
    shot(page, "evaluate")
    page.close()
