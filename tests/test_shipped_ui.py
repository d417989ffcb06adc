"""The shipped run in the app: the Compare, Evaluate and Train tabs open on its stored reports and log.

The app is served in this process with a tiny model but its shipped-run lookup pointed at the real
assets/ (the reports are plain files; the model never touches them), and driven by gradio_client; a
headless browser checks that the page fills the tabs on load. Expected numbers are read from the
shipped metrics.json files, never written down here.
"""

from __future__ import annotations

import json
import re

import pytest

from gemma_emotion import paths
from gemma_emotion.labels import LABELS

SHIPPED_REPORTS = ("base", "finetuned", "base_generate", "finetuned_generate")


def shipped_metrics(name: str) -> dict:
    return json.loads((paths.ASSETS / "reports" / name / "metrics.json").read_text())


def shipped_name() -> str:
    return "shipped: " + json.loads((paths.ASSETS / "run.json").read_text())["name"]


def make_state(model, storage, **kwargs):
    from gemma_emotion.settings import load_settings
    from gemma_emotion.ui.state import AppState

    return AppState(
        load_settings(None, env={}, overrides={"model": str(model), "storage": str(storage)}), **kwargs
    )


@pytest.fixture(scope="module")
def app(tiny_gemma3, shared_data, tmp_path_factory):
    from test_app_api import free_port

    from gemma_emotion.ui import build_app, launch_options

    state = make_state(tiny_gemma3, tmp_path_factory.mktemp("shipped-runs"), shipped_run=paths.ASSETS)
    state.load(str(tiny_gemma3), None)
    assert state.wait_for_load(120)
    blocks = build_app(state)
    blocks.queue(default_concurrency_limit=4)
    port = free_port()
    blocks.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(state),
    )
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "state": state}
    finally:
        blocks.close()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app["url"], verbose=False)


# -- through the API ------------------------------------------------------------------------------------
def test_compare_run_gives_the_shipped_numbers_in_both_modes(client):
    res = client.predict(shipped_name(), api_name="/compare_run")
    assert res["run"] == shipped_name()
    for section, (base, tuned) in (
        (res, ("base", "finetuned")),
        (res["generate"], ("base_generate", "finetuned_generate")),
    ):
        b, t = shipped_metrics(base), shipped_metrics(tuned)
        for key in ("accuracy", "macro_f1", "invalid"):
            assert section["metrics"][key]["base"] == b[key]
            assert section["metrics"][key]["finetuned"] == t[key]
            assert section["metrics"][key]["delta"] == pytest.approx(t[key] - b[key])
        assert section["per_class_f1"] == {
            name: {"base": b["per_class"][name]["f1"], "finetuned": t["per_class"][name]["f1"]}
            for name in LABELS
        }
    assert res["n"] == shipped_metrics("finetuned")["n"]
    assert 0 < res["changed_predictions"] <= res["n"]


def test_reports_lists_the_shipped_reports(client):
    listed = {r["dir"]: r["label"] for r in client.predict(api_name="/reports")}
    for name in SHIPPED_REPORTS:
        assert listed[str(paths.ASSETS / "reports" / name)] == f"{shipped_name()} {name}"


def test_train_status_shows_the_shipped_run_and_its_log_when_no_run_exists(client):
    status = client.predict("", 0, api_name="/train_status")
    assert status["active"] is None
    assert status["run"]["name"] == shipped_name() and status["run"]["status"] == "completed"
    logged = [json.loads(line) for line in (paths.ASSETS / "log.jsonl").read_text().splitlines() if line]
    assert status["records"] == logged
    assert status["progress"]["fraction"] == 1.0
    later = client.predict(shipped_name(), len(logged) - 1, api_name="/train_status")
    assert later["records"] == logged[-1:]


def test_unknown_shipped_looking_names_are_refused(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="is not allowed"):
        client.predict("shipped: someone-else", api_name="/compare_run")


# -- in process: what the page loads, and where the shipped run is shown ---------------------------------
def test_evaluate_tab_opens_on_the_shipped_pair_shared_by_all_sessions(app):
    from gemma_emotion.ui.evaluate import load_view, shipped_selection

    state = app["state"]
    picked = shipped_selection(state)
    assert picked == [str(paths.ASSETS / "reports" / name) for name in ("base", "finetuned")]
    first, again = load_view(state, picked[1]), load_view(state, picked[1])
    assert first["metrics"] == shipped_metrics("finetuned")
    assert len(first["predictions"]) == first["metrics"]["n"]
    assert first["predictions"] is again["predictions"]  # read once, not copied into every session


def test_compare_table_has_both_modes(app):
    from gemma_emotion.ui.compare import comparison_table, run_comparison, runs_with_reports

    state = app["state"]
    assert runs_with_reports(state)[0] == shipped_name()
    table = comparison_table(run_comparison(state, shipped_name()))
    assert list(table["mode"]) == ["score"] * 3 + ["generate"] * 3
    generate_invalid = table[(table["mode"] == "generate") & (table["metric"] == "invalid answers")].iloc[0]
    assert generate_invalid["base"] == str(shipped_metrics("base_generate")["invalid"])
    assert generate_invalid["fine-tuned"] == str(shipped_metrics("finetuned_generate")["invalid"])


def test_shipped_run_belongs_to_the_embedded_model(tiny_gemma3, tmp_path):
    from gemma_emotion.ui.evaluate import list_reports

    other = make_state(tiny_gemma3, tmp_path)
    assert other.shipped_run() is None and list_reports(other) == []
    assert other.default_adapter(str(tiny_gemma3)) is None
    embedded = make_state("embedded", tmp_path)  # nothing is loaded: the run is read from assets/
    assert embedded.shipped_run().name == shipped_name()
    assert embedded.default_adapter("embedded") == str(paths.ASSETS / "adapter")
    assert embedded.initial_adapter() == str(paths.ASSETS / "adapter")


# -- in a browser: the tabs are filled on page load ------------------------------------------------------
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_page_opens_compare_evaluate_and_train_on_the_shipped_run(app, browser):
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_browser import open_tab

    tuned, generate = shipped_metrics("finetuned"), shipped_metrics("finetuned_generate")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(app["url"])

    open_tab(page, "Compare")
    table = page.locator("#compare-run-table")
    sync_api.expect(table).to_contain_text(f"{tuned['accuracy']:.4f}")
    sync_api.expect(table).to_contain_text(f"{generate['macro_f1']:.4f}")

    open_tab(page, "Evaluate")
    summary = page.locator("#evaluate-summary")
    sync_api.expect(summary).to_contain_text(f"{shipped_name()} finetuned")
    sync_api.expect(summary).to_contain_text(str(round(tuned["accuracy"], 4)))
    sync_api.expect(page.locator(".js-plotly-plot .heatmaplayer")).to_have_count(1)

    open_tab(page, "Train")
    status = page.locator("#train-status textarea")
    sync_api.expect(status).to_have_value(re.compile("^Run " + re.escape(shipped_name()) + ": completed"))
