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
