"""Metrics and curves for binary classifiers."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm


def scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), log loss, Brier score, and their 'higher is better' forms."""
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(proba, dtype=float), 1e-15, 1 - 1e-15)
    out = {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "average_precision": float(skm.average_precision_score(y, p)),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "positive_rate": float(y.mean()),
        "rows": int(len(y)),
    }
    out["neg_log_loss"] = -out["log_loss"]
    out["neg_brier"] = -out["brier"]
    return out


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> tuple[list[float], list[float]]:
    """Keep at most ``points`` evenly spaced points of a curve (plots need no more)."""
    if len(x) > points:
        idx = np.unique(np.linspace(0, len(x) - 1, points).round().astype(int))
        x, y = x[idx], y[idx]
    return [float(v) for v in x], [float(v) for v in y]


def curves(y_true: np.ndarray, proba: np.ndarray, points: int = 200) -> dict[str, Any]:
    """ROC and precision-recall curves, thinned to ``points`` points each."""
    fpr, tpr, _ = skm.roc_curve(y_true, proba)
    precision, recall, _ = skm.precision_recall_curve(y_true, proba)
    roc = _thin(fpr, tpr, points)
    pr = _thin(recall[::-1], precision[::-1], points)
    return {"roc": {"fpr": roc[0], "tpr": roc[1]}, "pr": {"recall": pr[0], "precision": pr[1]}}


def select_best(results: dict[str, dict[str, float]], metric: str) -> str:
    """Name of the candidate with the highest ``metric`` (ties broken by name, so the choice is stable).

    A NaN metric (e.g. ROC AUC on a single-class set) ranks below every number.
    """
    if not results:
        raise ValueError("no candidates to select from")

    def rank(name: str) -> tuple[bool, float]:
        value = float(results[name][metric])
        return (not np.isnan(value), value)

    return max(sorted(results), key=rank)
