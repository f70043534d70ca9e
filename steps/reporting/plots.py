"""Matplotlib figures for cards and notebooks (headless backend)."""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np

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
    for ax, metric in zip(axes, metrics, strict=True):
        values = [g.get(metric) if g.get(metric) is not None else 0.0 for g in groups]
        bars = ax.bar(range(len(values)), values, color="tab:blue")
        for bar, g in zip(bars, groups, strict=True):
            if not g.get("gated", True):
                bar.set_hatch("//")
                bar.set_alpha(0.5)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(metric)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"by {attribute}")
    fig.tight_layout()
    return fig


def drift_heatmap_figure(periods: list[dict[str, Any]], signal: str = "feature_drift",
                         statistic: str = "psi") -> Figure:
    """One row per feature, one column per period: the statistic's value, breaches outlined in red."""
    days = [p["period"] for p in periods]
    subjects = sorted({m["subject"] for p in periods for m in p.get("measurements", [])
                       if m["signal"] == signal and m["statistic"] == statistic})
    grid = np.full((max(len(subjects), 1), max(len(days), 1)), np.nan)
    fig, ax = plt.subplots(figsize=(min(max(6.5, 2 + 0.45 * len(days)), 14), 1.5 + 0.28 * len(subjects)))
    for j, p in enumerate(periods):
        for m in p.get("measurements", []):
            if m["signal"] == signal and m["statistic"] == statistic:
                i = subjects.index(m["subject"])
                grid[i, j] = m["value"]
                if m["breach"]:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(subjects)), subjects, fontsize=7)
    ax.set_xticks(range(len(days)), days, rotation=60, fontsize=7, ha="right")
    ax.set_title(f"{signal}: {statistic} per period (red: breached its baseline)")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig


def performance_figure(performance: list[dict[str, Any]], reference_auc: float | None,
                       attributes: list[str]) -> Figure:
    """Realized AUC per period, overall and per group of each sensitive attribute, against the reference."""
    fig, axes = plt.subplots(1, 1 + len(attributes), figsize=(5 * (1 + len(attributes)), 3.6), squeeze=False)
    days = [p["period"] for p in performance]
    panels = [("overall", {"all": [p.get("roc_auc") for p in performance]})]
    for attr in attributes:
        levels = sorted({lvl for p in performance for lvl in p.get("groups", {}).get(attr, {})})
        panels.append((attr, {lvl: [p.get("groups", {}).get(attr, {}).get(lvl, {}).get("roc_auc")
                                    for p in performance] for lvl in levels}))
    for ax, (title, lines) in zip(axes[0], panels, strict=True):
        for name, values in lines.items():
            ax.plot(days, [np.nan if v is None else v for v in values], marker="o", ms=3, label=name)
        if reference_auc is not None:
            ax.axhline(reference_auc, linestyle=":", color="grey", label="reference")
        ax.set(title=f"realized AUC: {title}", ylim=(0.4, 1.0))
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def quality_cost_figure(points: list[dict[str, Any]]) -> Any:
    """AUC ratio (vs the teacher) against per-row cost (us, log scale): one marker per model and runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"native": "o", "onnx": "s", "quantized": "^"}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for p in points:
        ax.scatter(p["cost_us_per_row"], p["auc_ratio"], marker=markers.get(p["runtime"], "x"), s=60,
                   color="tab:red" if p["kind"] == "teacher" else "tab:blue")
        ax.annotate(f"{p['name']} ({p['runtime']})", (p["cost_us_per_row"], p["auc_ratio"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="per-row cost, us (single-thread batch)", ylabel="AUC / teacher AUC (hold-out)",
           title="Distillation: quality vs cost (red: teacher)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
