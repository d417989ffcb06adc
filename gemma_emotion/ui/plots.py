"""Plotly figures for the app: label probabilities, per-class F1, confusion matrices and loss curves (one
run's, or several runs' overlaid with optional smoothing). Losses are drawn on a log scale: a loss that
falls from 15 to 0.01 is a flat line after the first steps on a linear axis.

Pure functions from plain data (dicts, lists of log records) to figures, so the API functions can stay
JSON-only and the tabs add the pictures. Text from users or datasets never reaches a figure as HTML:
labels and numbers only.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from gemma_emotion.evaluate import report_labels
from gemma_emotion.labels import INVALID
from gemma_emotion.runfolder import LogRecord

COLORS = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2")
_LAYOUT = dict(margin=dict(l=40, r=20, t=50, b=40), height=340, template="plotly_white")


def empty(title: str, message: str = "") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=_plain(title), **_LAYOUT)
    if message:
        fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def probabilities(
    series: Mapping[str, Mapping[str, float] | None], title: str = "Label probabilities"
) -> go.Figure:
    """Bars of the label probabilities, one group per entry of `series` (e.g. base and fine-tuned); the
    labels are the probabilities' own, in their order (the label set's)."""
    fig = go.Figure()
    for i, (name, probs) in enumerate(series.items()):
        if not probs:
            continue
        labels = list(probs)
        fig.add_bar(
            name=_plain(name),
            x=[_plain(label) for label in labels],
            y=[probs[label] for label in labels],
            marker_color=COLORS[i % len(COLORS)],
            texttemplate="%{y:.2f}",
            textposition="outside",
        )
    if not fig.data:
        return empty(title, "generate mode gives no probabilities")
    fig.update_layout(
        title=_plain(title), barmode="group", yaxis=dict(range=[0, 1.1], title="probability"), **_LAYOUT
    )
    return fig


def per_class_f1(reports: Mapping[str, Mapping], title: str = "F1 per class") -> go.Figure:
    """Grouped bars of per-class F1 (one group per report), with each report's invalid count beside them."""
    if not reports:
        return empty(title, "no report yet")
    fig = go.Figure()
    for i, (name, metrics) in enumerate(reports.items()):
        per_class = metrics.get("per_class", {})
        labels = report_labels(metrics)  # each report's own label set
        fig.add_bar(
            name=f"{_plain(name)} (invalid {metrics.get('invalid', 0)})",
            x=[_plain(label) for label in labels],
            y=[per_class.get(label, {}).get("f1", 0.0) for label in labels],
            marker_color=COLORS[i % len(COLORS)],
            texttemplate="%{y:.2f}",
            textposition="outside",
        )
    fig.update_layout(title=_plain(title), barmode="group", yaxis=dict(range=[0, 1.1], title="F1"), **_LAYOUT)
    return fig


def invalid_counts(reports: Mapping[str, Mapping], title: str = "Invalid answers") -> go.Figure:
    """Answers that were not a label of the set, a horizontal bar per report (names can be long)."""
    if not reports:
        return empty(title, "no report yet")
    names = list(reports)
    counts = [reports[n].get("invalid", 0) for n in names]
    ticks = [_short(n) for n in names]
    if len(set(ticks)) < len(ticks):  # names alike up to the cut would share one bar: keep them whole
        ticks = [_plain(n) for n in names]
    fig = go.Figure(
        go.Bar(
            y=ticks,
            x=counts,
            orientation="h",
            marker_color=[COLORS[i % len(COLORS)] for i in range(len(names))],
            text=counts,
            textposition="outside",
            hovertext=[_plain(n) for n in names],
            hoverinfo="text+x",
        )
    )
    fig.update_layout(
        title=_plain(title),
        xaxis=dict(title="answers not one of the labels", range=[0, max([*counts, 1]) * 1.3]),
        yaxis=dict(autorange="reversed", automargin=True),
        **_LAYOUT,
    )
    if not any(counts):  # a row of zero-length bars reads as missing data; say it
        fig.update_layout(title=_plain(f"{title}: none"))
    return fig


def _plain(text: str) -> str:
    """Plotly reads a subset of HTML in names and labels; a report name is shown as the text it is."""
    return html.escape(str(text), quote=False)


def _short(name: str, width: int = 18) -> str:
    """A report name on two short lines, so a narrow chart keeps room for its bars."""
    if len(name) > width:
        cut = name.rfind(" ", 0, width)
        cut = cut if cut > 0 else width
        rest = name[cut:].strip()
        rest = rest if len(rest) <= width else rest[: width - 1] + "…"
        return _plain(name[:cut]) + "<br>" + _plain(rest)
    return _plain(name)


def confusion(metrics: Mapping | None, title: str = "Confusion matrix") -> go.Figure:
    """Heatmap of gold (rows) against predicted (the report's labels + invalid), counts in the cells."""
    if not metrics or "confusion" not in metrics:
        return empty(title, "no report yet")
    labels = report_labels(metrics)
    columns = list(metrics.get("confusion_columns") or [*labels, INVALID])
    z = metrics["confusion"]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[_plain(c) for c in columns],
            y=[_plain(label) for label in labels],
            colorscale="Blues",
            text=z,
            texttemplate="%{text}",
            hovertemplate="gold %{y}<br>predicted %{x}<br>%{z} texts<extra></extra>",
        )
    )
    fig.update_layout(
        title=_plain(title),
        xaxis=dict(title="predicted", side="bottom"),
        yaxis=dict(title="gold", autorange="reversed"),
        **{**_LAYOUT, "height": 420},
    )
    return fig


def loss_curve(records: Sequence[LogRecord], title: str = "Training loss") -> go.Figure:
    """Training loss by step, evaluation loss (and accuracy on a second axis) as points where logged
    (log.jsonl's records, `runfolder.LogRecord`)."""
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None and "step" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None and "step" in r]
    accs = [
        (r["step"], r["eval_accuracy"]) for r in records if r.get("eval_accuracy") is not None and "step" in r
    ]
    if not (train or evals):
        return empty(title, "no loss logged yet")
    fig = go.Figure()
    if train:
        fig.add_scatter(
            x=[s for s, _ in train], y=[v for _, v in train], mode="lines+markers", name="train loss"
        )
    if evals:
        fig.add_scatter(
            x=[s for s, _ in evals],
            y=[v for _, v in evals],
            mode="markers",
            name="eval loss",
            marker=dict(size=10, symbol="diamond"),
        )
    if accs:
        fig.add_scatter(
            x=[s for s, _ in accs],
            y=[v for _, v in accs],
            mode="markers+lines",
            name="eval accuracy",
            yaxis="y2",
            line=dict(dash="dot"),
        )
        fig.update_layout(yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1]))
    fig.update_layout(
        title=_plain(title),
        xaxis=dict(title="step"),
        yaxis=dict(title="loss (log scale)", type="log"),
        **_LAYOUT,
    )
    return fig


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with the start-up bias divided out, so the
    first points are not pulled towards 0 (which is pandas' `ewm(adjust=True)` with alpha = 1 - weight).
    `weight` 0 leaves the values as they are, 0.99 nearly flat."""
    import pandas as pd

    if weight <= 0 or not values:
        return list(values)
    return pd.Series(values, dtype=float).ewm(alpha=1 - min(weight, 0.999), adjust=True).mean().tolist()


def compare_curves(
    series: Mapping[str, Sequence[LogRecord]], smoothing: float = 0.0, title: str = "Training loss by run"
) -> go.Figure:
    """Several runs' training loss (smoothed, with the raw points faint behind) and validation loss, one
    colour a run, on one log-scaled loss axis. `series` maps a run's name to its log records."""
    fig = go.Figure()
    for i, (name, records) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None and "step" in r]
        evals = [
            (r["step"], r["eval_loss"]) for r in records if r.get("eval_loss") is not None and "step" in r
        ]
        label = _plain(name)
        if train:
            steps, losses = [s for s, _ in train], [v for _, v in train]
            if smoothing > 0:
                fig.add_scatter(
                    x=steps, y=losses, mode="lines", line=dict(color=color, width=1), opacity=0.25,
                    name=f"{label} (raw)", legendgroup=label, showlegend=False, hoverinfo="skip",
                )  # fmt: skip
            fig.add_scatter(
                x=steps, y=smooth(losses, smoothing), mode="lines", line=dict(color=color, width=2),
                name=label, legendgroup=label,
            )  # fmt: skip
        if evals:
            fig.add_scatter(
                x=[s for s, _ in evals], y=[v for _, v in evals], mode="lines+markers",
                line=dict(color=color, dash="dot"), marker=dict(size=8, symbol="diamond"),
                name=f"{label} (validation)", legendgroup=label,
            )  # fmt: skip
    if not fig.data:
        return empty(title, "pick runs with a logged loss")
    fig.update_layout(
        title=_plain(title),
        xaxis=dict(title="step"),
        yaxis=dict(title="loss (log scale)", type="log"),
        legend=dict(orientation="h", yanchor="top", y=-0.2),
        **{**_LAYOUT, "height": 420},
    )
    return fig
