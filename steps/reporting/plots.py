"""Matplotlib figures for cards and notebooks (headless backend).

Sized for a Metaflow card: at a 1400 px window a card shows about 1,000 px across, and it shrinks any image taller
than 500 px. Figures are saved at 100 dpi, so a figure at most ``WIDTH`` x ``MAX_HEIGHT`` inches is shown at its own
size and its text at the sizes below (``TICK`` points, about 12 px), never scaled down to unreadable.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, cast

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

WIDTH, MAX_HEIGHT = 9.6, 5.0  # inches (x 100 dpi = pixels)
TICK, LABEL, TITLE = 9, 10, 11  # font sizes, points
ROW = 0.16  # inches per bar or heat-map row: room for one line of TICK-point text
MAX_ROWS = 22  # heat-map rows per figure (more are split over several figures, each under MAX_HEIGHT)


def _style(ax: Any, title: str = "", xlabel: str = "", ylabel: str = "") -> None:
    """Title, axis labels and tick labels at the card's sizes."""
    ax.set_title(title, fontsize=TITLE)
    ax.set_xlabel(xlabel, fontsize=LABEL)
    ax.set_ylabel(ylabel, fontsize=LABEL)
    ax.tick_params(labelsize=TICK)


def _day_labels(days: list[str], most: int = 16) -> tuple[list[int], list[str]]:
    """Tick positions and labels for a run of dates: MM-DD when they span one year, at most ``most`` of them."""
    same_year = len({d[:4] for d in days}) == 1
    step = max(1, math.ceil(len(days) / most))
    positions = list(range(0, len(days), step))
    return positions, [days[i][5:] if same_year and len(days) > 7 else days[i] for i in positions]


def roc_pr_figure(curves: dict[str, dict[str, Any]], title: str = "validation") -> Figure:
    """Side-by-side ROC and precision-recall curves, one line per candidate."""
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(WIDTH, 4.0))
    for name, c in sorted(curves.items()):
        roc_ax.plot(c["roc"]["fpr"], c["roc"]["tpr"], label=name)
        pr_ax.plot(c["pr"]["recall"], c["pr"]["precision"], label=name)
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    _style(roc_ax, f"ROC ({title})", "false positive rate", "true positive rate")
    _style(pr_ax, f"Precision-recall ({title})", "recall", "precision")
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=TICK)
    fig.tight_layout()
    return fig


def roc_calibration_figure(curves: dict[str, dict[str, Any]]) -> Figure:
    """Hold-out ROC and calibration (reliability) curves for the challenger and, when present, the champion."""
    fig, (roc_ax, cal_ax) = plt.subplots(1, 2, figsize=(WIDTH, 4.0))
    for name, c in curves.items():
        roc_ax.plot(c["roc"]["fpr"], c["roc"]["tpr"], label=name)
        cal_ax.plot(c["calibration"]["predicted"], c["calibration"]["observed"], marker="o", label=name)
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    top = max([max(c["calibration"]["predicted"] + c["calibration"]["observed"]) for c in curves.values()] + [0.05])
    cal_ax.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect")
    _style(roc_ax, "ROC (hold-out)", "false positive rate", "true positive rate")
    _style(cal_ax, "Calibration (quantile bins)", "mean score", "observed rate")
    for ax in (roc_ax, cal_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=TICK)
    fig.tight_layout()
    return fig


def group_bars_figure(groups: list[dict[str, Any]], attribute: str) -> Figure:
    """Per-group selection rate, TPR, FPR and AUC as horizontal bars, one row per group (hatched: not gated).

    Group names sit once, on the left, one per row, so they never overlap however many groups an intersection has;
    the figure grows by ``ROW`` inches per group (25 groups stay under ``MAX_HEIGHT``). A metric a group does not
    have (an AUC without positives) is written as n/a instead of drawn as a zero.
    """
    metrics = ("selection_rate", "tpr", "fpr", "auc")
    labels = [str(g["group"]) for g in groups]
    height = max(2.2, 0.9 + ROW * len(groups))
    fig, axes = plt.subplots(1, len(metrics), figsize=(WIDTH, height), sharey=True)
    rows = np.arange(len(groups))
    for ax, metric in zip(axes, metrics, strict=True):
        values = [g.get(metric) for g in groups]
        known = [v for v in values if v is not None]
        top = 1.0 if metric == "auc" else max(known + [0.01]) * 1.15
        bars = ax.barh(rows, [0.0 if v is None else v for v in values], height=0.7, color="tab:blue")
        for bar, g, value in zip(bars, groups, values, strict=True):
            if not g.get("gated", True):
                bar.set_hatch("////")
                bar.set_alpha(0.45)
            if value is None:
                ax.text(top * 0.02, bar.get_y() + bar.get_height() / 2, "n/a", va="center", fontsize=TICK - 1,
                        color="grey")
        ax.set_xlim(0, top)
        _style(ax, metric)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(rows, labels)
    axes[0].invert_yaxis()
    legend = [Patch(color="tab:blue", label="gated"),
              Patch(facecolor="tab:blue", alpha=0.45, hatch="////", label="not gated (too few rows or positives)")]
    # margins from font metrics, not a layout engine (constrained layout drew each figure twice: ~0.2 s of the three
    # such figures' ~0.45 s each in a judge at 1M rows); the title and legend share the top line
    left = (_widest(fig, labels, TICK) + 0.2) / WIDTH
    fig.subplots_adjust(left=left, right=0.99, bottom=0.4 / height, top=1 - 0.7 / height, wspace=0.1)
    fig.legend(handles=legend, loc="upper right", bbox_to_anchor=(0.995, 1.0), fontsize=TICK, ncol=2, frameon=False)
    fig.suptitle(f"by {attribute}", fontsize=TITLE, x=0.01, y=0.99, ha="left", va="top")
    return fig


def _widest(fig: Figure, texts: list[str], size: float) -> float:
    """Inches the widest of ``texts`` takes at ``size`` points (font metrics only, nothing drawn)."""
    renderer, prop = cast(FigureCanvasAgg, fig.canvas).get_renderer(), FontProperties(size=size)  # Agg, above
    return max((renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in texts), default=0.0) / fig.dpi


def _chunks(items: list[str], most: int) -> list[list[str]]:
    """``items`` split into the fewest runs of at most ``most``, as even as possible."""
    parts = max(1, math.ceil(len(items) / most))
    size = math.ceil(len(items) / parts) if items else 0
    return [items[i:i + size] for i in range(0, len(items), size)] if items else [[]]


def drift_subjects(periods: list[dict[str, Any]], signal: str, statistic: str) -> list[str]:
    """The subjects (features, or the score) measured for ``signal`` / ``statistic`` in any period, sorted."""
    return sorted({m["subject"] for p in periods for m in p.get("measurements", [])
                   if m["signal"] == signal and m["statistic"] == statistic})


def drift_heatmap_figure(periods: list[dict[str, Any]], signal: str = "feature_drift", statistic: str = "psi",
                         subjects: list[str] | None = None, title: str = "") -> Figure:
    """One row per feature, one column per period: the statistic's value, breaches outlined in red."""
    days = [p["period"] for p in periods]
    subjects = drift_subjects(periods, signal, statistic) if subjects is None else subjects
    grid = np.full((max(len(subjects), 1), max(len(days), 1)), np.nan)
    fig, ax = plt.subplots(figsize=(WIDTH, min(MAX_HEIGHT, 1.5 + ROW * 1.1 * len(subjects))))
    for j, p in enumerate(periods):
        for m in p.get("measurements", []):
            if m["signal"] == signal and m["statistic"] == statistic and m["subject"] in subjects:
                i = subjects.index(m["subject"])
                grid[i, j] = m["value"]
                if m["breach"]:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(subjects)), subjects)
    positions, labels = _day_labels(days)
    ax.set_xticks(positions, labels, rotation=45 if len(days) > 7 else 0, ha="right" if len(days) > 7 else "center")
    _style(ax, title or f"{signal}: {statistic} per period (red outline: breached its baseline)")
    bar = fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    bar.ax.tick_params(labelsize=TICK)
    bar.set_label(statistic, fontsize=LABEL)
    fig.tight_layout()
    return fig


def drift_heatmap_figures(periods: list[dict[str, Any]], signal: str = "feature_drift",
                          statistic: str = "psi") -> list[Figure]:
    """The heat map of every subject, split over several figures of at most ``MAX_ROWS`` rows each."""
    parts = _chunks(drift_subjects(periods, signal, statistic), MAX_ROWS)
    return [drift_heatmap_figure(periods, signal, statistic, part,
                                 f"{signal}: {statistic} per period (red outline: breached its baseline)"
                                 + (f", part {i} of {len(parts)}" if len(parts) > 1 else ""))
            for i, part in enumerate(parts, start=1)]


def auc_interval_figure(performance: list[dict[str, Any]], reference_auc: float | None) -> Figure:
    """Realized AUC per day with its bootstrap interval, against the reference; hollow: too few positives to judge."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.4))
    days = [p["period"] for p in performance]
    x = np.arange(len(days))
    for i, p in enumerate(performance):
        auc, interval = p.get("roc_auc"), p.get("auc_interval")
        if auc is None:
            continue
        if interval:
            ax.errorbar(i, auc, yerr=[[auc - interval[0]], [interval[1] - auc]], fmt="o", color="tab:blue",
                        ecolor="tab:blue", capsize=4, ms=5)
        else:
            ax.plot(i, auc, "o", mfc="white", color="tab:blue", ms=5)
    if reference_auc is not None:
        ax.axhline(reference_auc, linestyle=":", color="grey")
    handles = [Line2D([], [], marker="o", color="tab:blue", label="AUC and its 95% interval"),
               Line2D([], [], marker="o", mfc="white", color="tab:blue", ls="", label="too few positives: not judged")]
    if reference_auc is not None:
        handles.append(Line2D([], [], ls=":", color="grey", label=f"reference {reference_auc:.3f}"))
    positions, labels = _day_labels(days)
    ax.set_xticks([x[i] for i in positions], labels, rotation=45 if len(days) > 7 else 0)
    ax.set_xlim(-0.5, max(len(days) - 0.5, 0.5))
    ax.set_ylim(0.4, 1.0)
    _style(ax, "Realized AUC per day (late labels)", "", "ROC AUC")
    ax.legend(handles=handles, fontsize=TICK, loc="lower left", ncol=len(handles))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def performance_figure(performance: list[dict[str, Any]], reference_auc: float | None,
                       attributes: list[str]) -> Figure:
    """Realized AUC per period for each group of each sensitive attribute (one panel each), against the reference."""
    panels = attributes or ["overall"]
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.6), squeeze=False, sharey=True)
    days = [p["period"] for p in performance]
    positions, labels = _day_labels(days, most=8)
    for ax, attr in zip(axes[0], panels, strict=True):
        levels = sorted({lvl for p in performance for lvl in p.get("groups", {}).get(attr, {})})
        lines = {lvl: [p.get("groups", {}).get(attr, {}).get(lvl, {}).get("roc_auc") for p in performance]
                 for lvl in levels} or {"all": [p.get("roc_auc") for p in performance]}
        for name, values in lines.items():
            ax.plot(range(len(days)), [np.nan if v is None else v for v in values], marker="o", ms=3, label=name)
        if reference_auc is not None:
            ax.axhline(reference_auc, linestyle=":", color="grey", label="reference")
        ax.set_xticks(positions, labels, rotation=45 if len(days) > 4 else 0)
        ax.set_ylim(0.4, 1.0)
        _style(ax, f"realized AUC by {attr}")
        ax.legend(fontsize=TICK - 1, loc="lower left", ncol=2)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def quality_cost_figure(points: list[dict[str, Any]], min_auc_ratio: float | None = None,
                        max_cost: float | None = None, cost_runtime: str = "onnx") -> Figure:
    """AUC ratio (vs the teacher) against per-row cost (us, log scale): colour per model, marker per runtime.

    Models and runtimes are named in the legend beside the plot, not next to the points, so labels never overlap
    however close the points are; the selection rule (quality floor, cost ceiling) is drawn when given.
    """
    markers = {"native": "o", "onnx": "s", "quantized": "^"}
    names = list(dict.fromkeys(p["name"] for p in points))
    palette = plt.get_cmap("tab10")
    others = itertools.cycle([palette(i) for i in range(10) if i != 3])  # red (3) is the teacher's
    colors = {name: palette(3) if name == "teacher" else next(others) for name in names}
    fig, ax = plt.subplots(figsize=(WIDTH, 4.4))
    for p in points:
        ax.scatter(p["cost_us_per_row"], p["auc_ratio"], marker=markers.get(p["runtime"], "x"), s=70,
                   color=colors[p["name"]], edgecolor="black", linewidth=0.5, zorder=3)
    if min_auc_ratio is not None:
        ax.axhline(min_auc_ratio, color="grey", linestyle="--", linewidth=1)
    if max_cost is not None:
        ax.axvline(max_cost, color="grey", linestyle="-.", linewidth=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    _style(ax, "Distillation: quality vs cost", "per-row cost, µs (single-thread batch, log scale)",
           "AUC / teacher AUC (hold-out)")
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker="o", ls="", color=colors[n], markeredgecolor="black", label=n) for n in names]
    handles += [Line2D([], [], marker=m, ls="", color="white", markeredgecolor="black", label=rt)
                for rt, m in markers.items() if any(p["runtime"] == rt for p in points)]
    if min_auc_ratio is not None:
        handles.append(Line2D([], [], color="grey", ls="--", label=f"quality floor {min_auc_ratio:g}"))
    if max_cost is not None:
        handles.append(Line2D([], [], color="grey", ls="-.", label=f"cost ceiling {max_cost:.3g} µs ({cost_runtime})"))
    ax.legend(handles=handles, fontsize=TICK, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
