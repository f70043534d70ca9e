"""Vega-Lite charts for cards and notebooks: plain specs the browser draws, nothing drawn in Python.

Every Metaflow card ships vega-embed, so a card shows these through ``metaflow.cards.VegaChart`` offline, with
tooltips that give each point's exact values; JupyterLab and VS Code show a :class:`Chart` left at the end of a cell.
Building one is list and dict work (a few milliseconds, no plotting library imported). Sizes are pixels sized for a
card at a 1400 px window, whose content column is about 1,030 px wide: ``WIDTH`` across, ``ROW`` per bar or heat-map
row, so a chart grows with its groups or features instead of squeezing their labels together.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # the Vega-Lite of Metaflow's card bundle (6.4)
MIMETYPE = "application/vnd.vegalite.v5+json"  # what JupyterLab 4 and VS Code render; the specs use nothing newer
WIDTH = 960  # px across a whole chart
ROW = 16  # px per bar or heat-map row: one line of label text
PANELS_PER_ROW = 2  # panels of a small-multiples chart side by side before the next row
LEGEND_LABEL = 110  # px of a panel's legend label before it is cut (with an ellipsis)
PANEL_FRAME = 200  # px a panel takes besides its plot: y axis and title, legend (symbol, LEGEND_LABEL), spacing
GREY, RED, BLUE, ORANGE = "#888888", "#d62728", "#4c78a8", "#f58518"
OTHERS = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#eeca3b", "#9d755d", "#ff9da6", "#bab0ac"]


class Chart(dict[str, Any]):
    """A Vega-Lite spec (a dict, JSON as is) that a notebook renders when it is a cell's value."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The spec for the notebook's Vega-Lite renderer, its description for plain-text frontends."""
        return {MIMETYPE: dict(self), "text/plain": f"<chart: {self.get('description', 'Vega-Lite')}>"}


def chart(description: str, **spec: Any) -> Chart:
    """A top-level spec: schema, description (the notebook's text form), card-sized fonts, no chart border."""
    config = {"view": {"stroke": None}, "axis": {"labelFontSize": 11, "titleFontSize": 12},
              "legend": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 400},
              "title": {"fontSize": 13, "anchor": "start"}}
    return Chart(_plain({"$schema": SCHEMA, "description": description, "config": config, **spec}))


def _plain(value: Any) -> Any:
    """``value`` as JSON a browser parses: NaN and infinities (not JSON) become null, numpy scalars Python ones."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _finite(value: Any) -> float | None:
    """A finite number, or None for a missing one (None, NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


OMIT = ""  # a channel's title left out (a layer's axis title or the field's name) rather than set to none


def _channel(kind: str, field: str, title: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """A channel of ``kind`` on ``field``; ``title`` None hides the title, ``OMIT`` leaves it to Vega-Lite."""
    return {"field": field, "type": kind, **({} if title == OMIT else {"title": title}), **extra}


def _q(field: str, title: str | None = OMIT, **extra: Any) -> dict[str, Any]:
    """A quantitative channel."""
    return _channel("quantitative", field, title, extra)


def _n(field: str, title: str | None = OMIT, **extra: Any) -> dict[str, Any]:
    """A nominal channel."""
    return _channel("nominal", field, title, extra)


def _diagonal(top: float = 1.0) -> dict[str, Any]:
    """A dotted grey line from (0, 0) to (top, top): chance for a ROC curve, perfect for calibration."""
    return {"data": {"values": [{"x": 0.0, "y": 0.0}, {"x": top, "y": top}]},
            "mark": {"type": "line", "strokeDash": [2, 3], "color": GREY},
            "encoding": {"x": _q("x"), "y": _q("y")}}


def _curve(rows: list[dict[str, Any]], title: str, x_title: str, y_title: str, width: int,
           extra: list[dict[str, Any]] | None = None, points: bool = False) -> dict[str, Any]:
    """One panel of curves (rows: model, i, x, y), a line per model in data order, hover for the values."""
    unit = {"scale": {"domain": [0, 1]}} if not points else {"scale": {"zero": True}}
    encoding = {"x": _q("x", x_title, **unit), "y": _q("y", y_title, **unit), "color": _n("model", "model"),
                "order": _q("i"), "tooltip": [_n("model"), _q("x", x_title, format=".4f"),
                                               _q("y", y_title, format=".4f")]}
    line = {"mark": {"type": "line", "point": points, "tooltip": True}, "encoding": encoding}
    return {"title": title, "width": width, "height": 280, "data": {"values": rows}, "layer": [line, *(extra or [])]}


def _curve_rows(curves: dict[str, dict[str, Any]], kind: str, x: str, y: str) -> list[dict[str, Any]]:
    """Long rows (model, i, x, y) of one curve of every model."""
    return [{"model": name, "i": i, "x": a, "y": b} for name, c in sorted(curves.items())
            for i, (a, b) in enumerate(zip(c[kind][x], c[kind][y], strict=True))]


def roc_pr(curves: dict[str, dict[str, Any]], title: str = "validation") -> Chart:
    """Side-by-side ROC and precision-recall curves, one line per candidate."""
    panel = (WIDTH - 200) // 2
    return chart(f"ROC and precision-recall ({title})", hconcat=[
        _curve(_curve_rows(curves, "roc", "fpr", "tpr"), f"ROC ({title})", "false positive rate",
               "true positive rate", panel, [_diagonal()]),
        _curve(_curve_rows(curves, "pr", "recall", "precision"), f"Precision-recall ({title})", "recall",
               "precision", panel)])


def roc_calibration(curves: dict[str, dict[str, Any]]) -> Chart:
    """Hold-out ROC and calibration (reliability) curves for the challenger and, when present, the champion."""
    panel = (WIDTH - 200) // 2
    calibration = _curve_rows(curves, "calibration", "predicted", "observed")
    top = max([max(r["x"], r["y"]) for r in calibration] + [0.05])
    return chart("hold-out ROC and calibration", hconcat=[
        _curve(_curve_rows(curves, "roc", "fpr", "tpr"), "ROC (hold-out)", "false positive rate",
               "true positive rate", panel, [_diagonal()]),
        _curve(calibration, "Calibration (quantile bins; dotted: perfect)", "mean score", "observed rate", panel,
               [_diagonal(top)], points=True)])


GROUP_METRICS = ("selection_rate", "tpr", "fpr", "auc")
GATED, NOT_GATED = "gated", "not gated (too few rows or positives)"


def group_bars(groups: list[dict[str, Any]], attribute: str) -> Chart:
    """Per-group selection rate, TPR, FPR and AUC as bars, one row per group (faded: not gated; n/a: no value).

    Group names sit once, on the left, one ``ROW`` each, so they never overlap however many groups an intersection
    has. A metric a group does not have (an AUC without positives) is written n/a instead of drawn as a zero.
    """
    labels = [str(g["group"]) for g in groups]
    rows = [{"group": str(g["group"]), "metric": m, "value": _finite(g.get(m)), "shown": _finite(g.get(m)) or 0.0,
             "gated": GATED if g.get("gated", True) else NOT_GATED, "rows": g.get("rows"),
             "positives": g.get("positives")} for g in groups for m in GROUP_METRICS]
    y = _n("group", None, sort=labels)
    tooltip = [_n("group", attribute), _n("metric"), _q("value", format=".4f"), _q("rows", format=","),
               _q("positives", format=","), _n("gated")]
    bars = {"mark": {"type": "bar", "color": BLUE}, "encoding": {
        "y": y, "x": _q("shown", None, axis={"tickCount": 4, "format": "~g", "labelOverlap": "greedy",
                                             "labelSeparation": 6}),
        "opacity": {"field": "gated", "type": "ordinal", "title": None, "legend": {"orient": "top"},
                    "scale": {"domain": [GATED, NOT_GATED], "range": [1.0, 0.4]}},  # ordinal: sorted by the domain
        "tooltip": tooltip}}
    missing = {"transform": [{"filter": "datum.value === null"}],
               "mark": {"type": "text", "align": "left", "dx": 3, "color": GREY, "text": "n/a"},
               "encoding": {"y": y, "x": {"datum": 0}}}
    panel = (WIDTH - 40 - min(200, 7 * max(map(len, labels), default=0))) // len(GROUP_METRICS) - 12
    return chart(f"fairness by {attribute}", title=f"by {attribute}", data={"values": rows},
                 facet={"column": _n("metric", None, sort=list(GROUP_METRICS), header={"labelFontSize": 12})},
                 spec={"width": panel, "height": {"step": ROW}, "layer": [bars, missing]},
                 resolve={"scale": {"x": "independent"}}, spacing=12)


def drift_subjects(periods: list[dict[str, Any]], signal: str, statistic: str) -> list[str]:
    """The subjects (features, or the score) measured for ``signal`` / ``statistic`` in any period, sorted."""
    return sorted({m["subject"] for p in periods for m in p.get("measurements", [])
                   if m["signal"] == signal and m["statistic"] == statistic})


def _days(days: list[str], most: int = 16) -> dict[str, Any]:
    """The x channel of one column per period, in order: at most ``most`` date labels, slanted when there are many."""
    step = max(1, math.ceil(len(days) / most))
    axis = {"values": days[::step], "labelAngle": -45 if len(days) > 7 else 0, "title": None}
    return _n("period", None, sort=days, scale={"domain": days}, axis=axis)


def _reference(value: float) -> dict[str, Any]:
    """A dotted grey horizontal rule at ``value`` (the reference AUC)."""
    return {"mark": {"type": "rule", "strokeDash": [2, 3], "color": GREY}, "encoding": {"y": {"datum": value}}}


def drift_heatmap(periods: list[dict[str, Any]], signal: str = "feature_drift", statistic: str = "psi") -> Chart:
    """One row per subject, one column per period: the statistic's value, breaches outlined in red."""
    days = [p["period"] for p in periods]
    rows = [{"period": p["period"], "subject": m["subject"], "value": m["value"], "baseline": m.get("baseline"),
             "threshold": m.get("threshold"), "breach": bool(m["breach"])}
            for p in periods for m in p.get("measurements", [])
            if m["signal"] == signal and m["statistic"] == statistic]
    x = _days(days)
    y = _n("subject", None, sort=drift_subjects(periods, signal, statistic))
    tooltip = [_n("subject"), _n("period"), _q("value", statistic, format=".4f"), _q("baseline", format=".4f"),
               _q("threshold", format=".4f"), _n("breach")]
    cells = {"mark": {"type": "rect"}, "encoding": {
        "x": x, "y": y, "color": _q("value", statistic, scale={"scheme": "viridis"}), "tooltip": tooltip}}
    breaches = {"transform": [{"filter": "datum.breach"}],
                "mark": {"type": "rect", "filled": False, "stroke": RED, "strokeWidth": 2},
                "encoding": {"x": x, "y": y, "tooltip": tooltip}}
    return chart(f"{signal} {statistic} per period",
                 title=f"{signal}: {statistic} per period (red outline: breached its baseline)",
                 data={"values": rows}, width=WIDTH - 300, height={"step": ROW}, layer=[cells, breaches])


JUDGED, UNJUDGED = "AUC and its 95% interval", "too few positives: not judged"


def auc_interval(performance: list[dict[str, Any]], reference_auc: float | None) -> Chart:
    """Realized AUC per day with its bootstrap interval, against the reference; hollow: too few positives to judge."""
    days = [p["period"] for p in performance]
    rows = [{"period": p["period"], "auc": p["roc_auc"], "low": (p.get("auc_interval") or [None, None])[0],
             "high": (p.get("auc_interval") or [None, None])[1], "rows": p.get("rows"),
             "positives": p.get("positives"), "judged": JUDGED if p.get("auc_interval") else UNJUDGED}
            for p in performance if p.get("roc_auc") is not None]
    lowest = min([r["low"] if r["low"] is not None else r["auc"] for r in rows] + [0.4])
    x = _days(days)
    y_scale = {"domain": [math.floor(lowest * 20) / 20, 1.0]}
    tooltip = [_n("period"), _q("auc", "AUC", format=".4f"), _q("low", format=".4f"), _q("high", format=".4f"),
               _q("rows", format=","), _q("positives", format=",")]
    layers: list[dict[str, Any]] = [
        {"transform": [{"filter": "datum.low !== null"}], "mark": {"type": "rule", "color": BLUE},
         "encoding": {"x": x, "y": _q("low", "ROC AUC", scale=y_scale), "y2": {"field": "high"}}},
        {"mark": {"type": "point", "size": 50, "opacity": 1, "color": BLUE}, "encoding": {
            "x": x, "y": _q("auc", "ROC AUC", scale=y_scale), "tooltip": tooltip,
            "fill": _n("judged", None, scale={"domain": [JUDGED, UNJUDGED], "range": [BLUE, "white"]},
                       legend={"orient": "bottom", "direction": "horizontal"})}}]
    subtitle: list[str] = []
    if reference_auc is not None:
        layers.append(_reference(reference_auc))
        subtitle = [f"dotted: reference AUC {reference_auc:.3f} (the model's hold-out)"]
    return chart("realized AUC per day", title={"text": "Realized AUC per day (late labels)", "subtitle": subtitle},
                 data={"values": rows}, width=WIDTH - 250, height=260, layer=layers)


def auc_by_group(performance: list[dict[str, Any]], reference_auc: float | None, attributes: list[str]) -> Chart:
    """Realized AUC per period for each group of each sensitive attribute (one panel each, two per row), against the
    reference.

    A panel's legend lists its groups without a title (the panel's title names the attribute) and cuts a label at
    ``LEGEND_LABEL`` px (the tooltip gives it whole), so a panel's width does not depend on the attribute's or the
    groups' names and the chart stays within the card's column whatever they are.
    """
    days = [p["period"] for p in performance]
    panels = attributes or ["overall"]
    columns = min(len(panels), PANELS_PER_ROW)
    width = (WIDTH - PANEL_FRAME * columns) // columns
    out = []
    for attr in panels:
        rows = [{"period": p["period"], "group": str(level), "auc": m.get("roc_auc")}
                for p in performance for level, m in p.get("groups", {}).get(attr, {}).items()
                if m.get("roc_auc") is not None]
        if not rows:
            rows = [{"period": p["period"], "group": "all", "auc": p["roc_auc"]} for p in performance
                    if p.get("roc_auc") is not None]
        y = _q("auc", "ROC AUC", scale={"domain": [0.4, 1.0], "clamp": True})
        color = _n("group", None, legend={"labelLimit": LEGEND_LABEL})
        layers: list[dict[str, Any]] = [{"mark": {"type": "line", "point": {"size": 20}, "tooltip": True}, "encoding": {
            "x": _days(days, most=8), "y": y,
            "color": color, "tooltip": [_n("group", attr), _n("period"), _q("auc", "AUC", format=".4f")]}}]
        if reference_auc is not None:
            layers.append(_reference(reference_auc))
        subtitle = f"dotted: reference AUC {reference_auc:.3f}" if reference_auc is not None else ""
        out.append({"title": {"text": f"realized AUC by {attr}", "subtitle": subtitle, "limit": width},
                    "width": width, "height": 240, "data": {"values": rows}, "layer": layers})
    return chart("realized AUC per group", concat=out, columns=columns, resolve={"scale": {"color": "independent"}})


RUNTIME_SHAPES = {"native": "circle", "onnx": "square", "quantized": "triangle-up"}


def quality_cost(points: list[dict[str, Any]], min_auc_ratio: float | None = None, max_cost: float | None = None,
                 cost_runtime: str = "onnx") -> Chart:
    """AUC ratio (vs the teacher) against per-row cost (µs, log scale): colour per model, shape per runtime.

    Models and runtimes are named in the legends, not next to the points, so labels never overlap however close the
    points are; the selection rule (quality floor, cost ceiling) is drawn when given and named in the subtitle.
    """
    names = list(dict.fromkeys(p["name"] for p in points))
    others = iter(OTHERS * (len(names) // len(OTHERS) + 1))
    colors = [RED if n == "teacher" else next(others) for n in names]
    rows = [{k: p[k] for k in ("name", "runtime", "auc_ratio", "cost_us_per_row")} for p in points]
    runtimes = [r for r in RUNTIME_SHAPES if any(p["runtime"] == r for p in points)]
    layers: list[dict[str, Any]] = [{"mark": {"type": "point", "filled": True, "size": 90, "stroke": "black",
                                              "strokeWidth": 0.5, "opacity": 0.9}, "encoding": {
        "x": _q("cost_us_per_row", "per-row cost, µs (single-thread batch, log scale)", scale={"type": "log"}),
        "y": _q("auc_ratio", "AUC / teacher AUC (hold-out)", scale={"zero": False}),
        "color": _n("name", "model", scale={"domain": names, "range": colors}),
        "shape": _n("runtime", "runtime", scale={"domain": runtimes, "range": [RUNTIME_SHAPES[r] for r in runtimes]}),
        "tooltip": [_n("name", "model"), _n("runtime"), _q("auc_ratio", "AUC ratio", format=".4f"),
                    _q("cost_us_per_row", "µs per row", format=".3f")]}}]
    subtitle: list[str] = []
    if min_auc_ratio is not None:
        layers.append({"mark": {"type": "rule", "strokeDash": [6, 4], "color": GREY},
                       "encoding": {"y": {"datum": min_auc_ratio}}})
        subtitle.append(f"dashed: quality floor {min_auc_ratio:g}")
    if max_cost is not None:
        layers.append({"mark": {"type": "rule", "strokeDash": [6, 3, 1, 3], "color": GREY},
                       "encoding": {"x": {"datum": max_cost}}})
        subtitle.append(f"dash-dot: cost ceiling {max_cost:.3g} µs ({cost_runtime})")
    return chart("distillation: quality vs cost", title={"text": "Distillation: quality vs cost",
                                                         "subtitle": "; ".join(subtitle)},
                 data={"values": rows}, width=WIDTH - 260, height=320, layer=layers)


def series(rows: list[dict[str, Any]], title: str) -> Chart:
    """A statistic per period (rows: period, value, baseline, threshold, breach) against its threshold and moving
    baseline, breaches circled in red."""
    days = [r["period"] for r in rows]
    long = [{"period": r["period"], "line": line, "y": r[key]} for r in rows
            for line, key in (("value", "value"), ("threshold", "threshold"), ("moving baseline", "baseline"))
            if r.get(key) is not None]
    x = _days(days)
    color = _n("line", None, scale={"domain": ["value", "threshold", "moving baseline", "breach"],
                                    "range": [BLUE, RED, GREY, RED]}, legend={"orient": "top"})
    lines = {"transform": [{"filter": "datum.line !== 'moving baseline'"}],
             "mark": {"type": "line", "point": True, "tooltip": True, "interpolate": "linear"},
             "encoding": {"x": x, "y": _q("y", None), "color": color,
                          "strokeDash": _n("line", None, scale={"domain": ["value", "threshold"], "range": [[1, 0],
                                                                                                            [5, 3]]},
                                           legend=None)}}
    baseline = {"transform": [{"filter": "datum.line === 'moving baseline'"}],
                "mark": {"type": "point", "shape": "cross", "tooltip": True}, "encoding": {"x": x, "y": _q("y", None),
                                                                                         "color": color}}
    breaches = {"data": {"values": [{"period": r["period"], "y": r["value"], "line": "breach"} for r in rows
                                    if r.get("breach")]},
                "mark": {"type": "point", "size": 160, "strokeWidth": 2, "tooltip": True},
                "encoding": {"x": x, "y": _q("y", None), "color": color}}
    return chart(title, title=title, data={"values": long}, width=WIDTH - 200, height=240,
                 layer=[lines, baseline, breaches])


def score_histogram(scores: np.ndarray, review_band: tuple[float, float], threshold: float, bins: int = 50) -> Chart:
    """Rows per score bin (symlog scale) with the review band shaded and the decision threshold marked."""
    counts, edges = np.histogram(scores, bins=bins, range=(0.0, 1.0))
    rows = [{"low": float(lo), "high": float(hi), "rows": int(n)}
            for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)]
    low, high = review_band
    ticks = [0] + [10**k for k in range(len(str(max(int(counts.max(initial=0)), 1))))]  # 0, 1, 10, ... up to the top
    layers = [
        {"data": {"values": [{"low": low, "high": high}]}, "mark": {"type": "rect", "color": ORANGE, "opacity": 0.2},
         "encoding": {"x": _q("low", "score"), "x2": {"field": "high"}}},
        {"mark": {"type": "bar", "color": BLUE, "tooltip": True}, "encoding": {
            "x": _q("low", "score", scale={"domain": [0, 1]}), "x2": {"field": "high"},
            "y": _q("rows", "rows (symlog scale)", scale={"type": "symlog"}, axis={"values": ticks, "format": ","}),
            "y2": {"datum": 0},
            "tooltip": [_q("low", format=".2f"), _q("high", format=".2f"), _q("rows", format=",")]}},
        {"mark": {"type": "rule", "color": RED, "strokeDash": [5, 3]}, "encoding": {"x": {"datum": threshold}}}]
    return chart("scores", title={"text": "Scores", "subtitle": f"shaded: review band [{low}, {high}]; dashed: "
                                                                f"decision threshold {threshold}"},
                 data={"values": rows}, width=WIDTH - 360, height=220, layer=layers)
