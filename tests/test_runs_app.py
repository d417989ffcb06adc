"""Runs through the app: a run started, stopped and resumed with gradio_client completes with every step
logged once; in a real headless Chromium, two runs picked in the Train tab show their curves on one plot
with a table of how they differ, and "Use these settings" fills the form and the command box."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from gemma_emotion.runfolder import read_log

RESUMED, SECOND = "stopped-then-resumed", "second"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    from test_app_api import start_app

    runs = tmp_path_factory.mktemp("runs-app")
    log = tmp_path_factory.mktemp("runs-app-log") / "app.log"
    with start_app(tiny_gemma3, runs, shared_data, log) as (url, proc):
        yield {"url": url, "runs": runs, "model": str(tiny_gemma3), "data": str(shared_data), "log": log}


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    from test_app_api import wait_ready

    c = Client(app["url"], verbose=False)
    assert wait_ready(c)["state"] == "ready"
    return c


def wait_run(client, name: str, predicate, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.predict(name, 0, api_name="/train_status")
        if predicate(status["run"]):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status: {status['run']}")
        time.sleep(0.5)


def app_error(client, *args, api_name: str) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


@pytest.fixture(scope="module")
def two_runs(client, app):
    """A run started, stopped after its first checkpoint and resumed to the end; then a shorter second run
    with other settings. Returns what the endpoints answered on the way."""
    base = {"model": app["model"], "data": app["data"], "test_size": 0}
    started = client.predict({**base, "train_size": 24, "epochs": 6, "save_steps": 2, "name": RESUMED},
                             api_name="/train_start")  # fmt: skip
    assert started["status"] == "running"
    wait_run(client, RESUMED, lambda run: run["checkpoint_step"] is not None)
    stopped = client.predict(api_name="/train_stop")["run"]
    resumed = client.predict(RESUMED, api_name="/train_resume")
    busy = app_error(client, RESUMED, api_name="/train_resume")  # a second resume while it trains
    done = wait_run(client, RESUMED, lambda run: run["status"] != "running")
    client.predict({**base, "train_size": 16, "epochs": 2, "learning_rate": 0.01, "name": SECOND},
                   api_name="/train_start")  # fmt: skip
    second = wait_run(client, SECOND, lambda run: run["status"] != "running")
    return {"stopped": stopped, "resumed": resumed, "busy": busy, "done": done, "second": second}


def test_start_stop_and_resume_through_the_api_log_every_step_once(client, app, two_runs):
    stopped = two_runs["stopped"]
    assert stopped["status"] == "stopped" and stopped["error"] is None, stopped
    assert stopped["ended"]["reason"] == "stopped" and stopped["resumable"]
    # The stop saved a checkpoint at the step it ended: the resume loses nothing.
    assert stopped["checkpoint_step"] == stopped["ended"]["step"] == stopped["metrics"]["steps"]
    assert two_runs["resumed"]["resumed"][-1]["from_step"] == stopped["checkpoint_step"]
    assert two_runs["resumed"]["status"] == "running" and "already training" in two_runs["busy"]

    run = two_runs["done"]["run"]
    assert run["status"] == "completed" and run["ended"] == {"reason": "completed", "step": 18}
    records = read_log(app["runs"] / RESUMED / "log.jsonl")[0]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 19))
    assert run["checkpoint_step"] is None and not run["resumable"]  # the checkpoints went with completion
    assert "nothing to resume" in app_error(client, SECOND, api_name="/train_resume")
    assert "no run named" in app_error(client, "nope", api_name="/train_resume")


def test_the_compare_endpoint_sets_two_runs_side_by_side(client, two_runs):
    table = client.predict([RESUMED, SECOND], api_name="/runs_compare")
    assert table["runs"] == [RESUMED, SECOND]
    settings = {title: values for title, values in table["settings"]}
    assert settings["epochs"] == [6.0, 2.0] and settings["learning rate"] == ["auto", 0.01]
    assert "LoRA r" not in settings  # the same in both
    metrics = {title: values for title, values in table["metrics"]}
    assert metrics["steps"] == [18, 4]
    assert "pick at least two runs" in app_error(client, [RESUMED], api_name="/runs_compare")


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_two_runs_picked_in_the_train_tab_share_one_plot(browser, app, two_runs):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(120_000)
    page.goto(app["url"])
    expect(page.locator("#model-status")).to_contain_text("✅", timeout=120_000)
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#train-status textarea")).to_have_value(re.compile(r": completed"))

    # The single run's curve has a log-scaled loss axis.
    # `?.`: until the plot is drawn there is no element, and a predicate that throws ends the wait at once
    # (it did under a busy core) instead of being tried again.
    axis = "document.querySelector('#train-loss .js-plotly-plot')?.layout?.yaxis?.type"
    page.wait_for_function(f"{axis} === 'log'")

    picker = page.locator("#train-compare-runs")
    for name in (RESUMED, SECOND):
        picker.locator("input").click()
        page.get_by_role("option", name=name, exact=True).click()
    page.keyboard.press("Escape")
    legend = page.locator("#train-compare-plot .legendtext")
    expect(legend).to_have_text([RESUMED, SECOND])
    traces = page.evaluate(
        "() => document.querySelector('#train-compare-plot .js-plotly-plot').data"
        ".map(t => ({name: t.name, n: t.y.length}))"
    )
    assert [t["name"] for t in traces] == [RESUMED, SECOND]
    assert [t["n"] for t in traces] == [18, 4]  # every step of each run, on one figure
    assert (
        page.evaluate("document.querySelector('#train-compare-plot .js-plotly-plot').layout.yaxis.type")
        == "log"
    )
    table = page.locator("#train-compare-table")
    expect(table).to_contain_text("epochs")
    expect(table).to_contain_text("completed at step 18")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "train-compare.png"), full_page=True)

    # "Use these settings" on the second run fills the form, and the command box says the same.
    page.locator("#train-run input").click()
    page.get_by_role("option", name=SECOND, exact=True).click()
    expect(page.locator("#train-status textarea")).to_have_value(re.compile(f"{SECOND}: completed"))
    page.locator("#train-use-settings").click()
    expect(page.get_by_label("Training rows (0 = all)")).to_have_value("16")
    expect(page.get_by_label("Epochs")).to_have_value("2")
    command = page.locator("#train-command")
    expect(command).to_contain_text("--train-size 16")
    expect(command).to_contain_text("--lr 0.01")
    expect(command).to_contain_text("--epochs 2.0")
    # An edit of the form changes the command as it is typed.
    page.get_by_label("Epochs").fill("3")
    expect(command).to_contain_text("--epochs 3.0")
    page.close()
