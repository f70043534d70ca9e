"""Matplotlib figures for cards and notebooks (headless backend)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def roc_pr_figure(curves: dict[str, dict[str, Any]], title: str = "validation") -> Figure:
    """Side-by-side ROC and precision-recall curves, one line per candidate."""
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, c in sorted(curves.items()):
        roc_ax.plot(c["roc"]["fpr"], c["roc"]["tpr"], label=name)
        pr_ax.plot(c["pr"]["recall"], c["pr"]["precision"], label=name)
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC ({title})")
    pr_ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall ({title})")
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.tight_layout()
    return fig


def roc_calibration_figure(curves: dict[str, dict[str, Any]]) -> Figure:
    """Hold-out ROC and calibration (reliability) curves for the challenger and, when present, the champion."""
    fig, (roc_ax, cal_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, c in curves.items():
        roc_ax.plot(c["roc"]["fpr"], c["roc"]["tpr"], label=name)
        cal_ax.plot(c["calibration"]["predicted"], c["calibration"]["observed"], marker="o", label=name)
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    top = max([max(c["calibration"]["predicted"] + c["calibration"]["observed"]) for c in curves.values()] + [0.05])
    cal_ax.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (hold-out)")
    cal_ax.set(xlabel="mean score", ylabel="observed rate", title="Calibration (quantile bins)")
    for ax in (roc_ax, cal_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.tight_layout()
    return fig


def group_bars_figure(groups: list[dict[str, Any]], attribute: str) -> Figure:
    """Per-group selection rate, TPR, FPR and AUC bars for one sensitive attribute (hatched: not gated)."""
    metrics = ("selection_rate", "tpr", "fpr", "auc")
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.2), sharey=False)
    labels = [str(g["group"]) for g in groups]
    for ax, metric in zip(axes, metrics):
        values = [g.get(metric) if g.get(metric) is not None else 0.0 for g in groups]
        bars = ax.bar(range(len(values)), values, color="tab:blue")
        for bar, g in zip(bars, groups):
            if not g.get("gated", True):
                bar.set_hatch("//")
                bar.set_alpha(0.5)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(metric)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"by {attribute}")
    fig.tight_layout()
    return fig
