"""The app's figures: report names shown as text (Plotly reads HTML in them), the invalid-answer bars."""

import pytest

pytest.importorskip("plotly")

from gemma_emotion.ui import plots  # noqa: E402

MARKUP = '<a href="javascript:alert(1)">x</a> <b>bold</b>'


def _metrics(invalid: int) -> dict:
    return {"invalid": invalid, "per_class": {"joy": {"f1": 0.5}}}


def test_report_names_reach_the_figures_as_text_not_markup():
    reports = {MARKUP: _metrics(3), "base": _metrics(0)}
    f1 = plots.per_class_f1(reports, title=f"F1 for {MARKUP}")
    invalid = plots.invalid_counts(reports)
    loss = plots.loss_curve([{"step": 1, "loss": 1.0}], title=f"Training loss: {MARKUP}")
    shown = [f1.data[0].name, f1.layout.title.text, loss.layout.title.text, *invalid.data[0].hovertext]
    shown += [tick.replace("<br>", " ") for tick in invalid.data[0].y]
    for text in shown:
        assert "<a" not in text and "<b>" not in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in f1.data[0].name and "&lt;a href" in invalid.data[0].hovertext[0]


def test_invalid_answers_are_one_bar_a_report_and_say_when_there_are_none():
    reports = {"shipped: test-1epoch base": _metrics(2000), "shipped: test-1epoch finetuned": _metrics(0)}
    fig = plots.invalid_counts(reports)
    bar = fig.data[0]
    assert bar.orientation == "h" and list(bar.x) == [2000, 0]
    assert all(len(line) <= 18 for tick in bar.y for line in tick.split("<br>"))  # fits a narrow column
    assert fig.layout.title.text == "Invalid answers"
    assert plots.invalid_counts({"finetuned": _metrics(0)}).layout.title.text == "Invalid answers: none"
    assert "no report yet" in plots.invalid_counts({}).layout.annotations[0].text


def test_report_names_alike_up_to_the_cut_keep_a_bar_each():
    names = ["finetuned (run-2026-11-28-a-long-name-1)", "finetuned (run-2026-11-28-a-long-name-2)"]
    bar = plots.invalid_counts({n: _metrics(i) for i, n in enumerate(names)}).data[0]
    assert len(set(bar.y)) == 2 and list(bar.x) == [0, 1]
