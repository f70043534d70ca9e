"""Metrics, curves, candidate selection, bootstrap intervals and paired significance tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve


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


Metric = Callable[..., Any]  # f(y, p) -> float; rowwise ones also take axis and 2-D inputs


BATCH_CELLS = 2_000_000


HIGHER_IS_BETTER = {"roc_auc": True, "average_precision": True, "log_loss": False, "brier": False,
                    "recall_at_precision": True, "calibration_error": False}


def recall_at_precision(y: np.ndarray, p: np.ndarray, precision: float) -> float:
    """The highest recall reachable at a threshold whose precision is at least ``precision`` (0 if none)."""
    prec, rec, _ = skm.precision_recall_curve(y, p)
    ok = prec >= precision
    return float(rec[ok].max()) if ok.any() else 0.0


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over quantile bins: mean |observed rate - mean score| (bins hold equal rows)."""
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    return float(np.mean(np.abs(observed - predicted)))


def _rowwise(fn: Metric) -> Metric:
    """Mark ``fn(y, p, axis=-1)`` as computing one value per row of 2-D inputs (one bootstrap resample per row)."""
    fn.rowwise = True  # type: ignore[attr-defined]
    return fn


def _as_float(value: np.ndarray) -> np.ndarray | float:
    """A 0-d result as a plain float, anything else unchanged."""
    return float(value) if np.ndim(value) == 0 else value


@_rowwise
def roc_auc(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """ROC AUC along ``axis`` as the Mann-Whitney U with mid-ranks (equal to sklearn's); NaN without both classes."""
    y, p = np.moveaxis(np.asarray(y), axis, -1).astype(bool), np.moveaxis(np.asarray(p, dtype=float), axis, -1)
    ranks = stats.rankdata(p, axis=-1)
    pos = y.sum(axis=-1)
    neg = y.shape[-1] - pos
    u = np.where(y, ranks, 0.0).sum(axis=-1) - pos * (pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return _as_float(np.where((pos > 0) & (neg > 0), u / (pos * neg), np.nan))


@_rowwise
def log_loss(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Binary cross-entropy along ``axis``, scores clipped to [1e-15, 1 - 1e-15] (equal to sklearn's log_loss)."""
    y, p = np.asarray(y, dtype=float), np.clip(np.asarray(p, dtype=float), 1e-15, 1 - 1e-15)
    return _as_float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p), axis=axis))


@_rowwise
def brier(y: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Mean squared error of the scores along ``axis`` (equal to sklearn's brier_score_loss)."""
    return _as_float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2, axis=axis))


def metric_functions(precision: float = 0.5, bins: int = 10) -> dict[str, Metric]:
    """Every gated performance metric as ``f(y, p) -> float``.

    ROC AUC, log loss and Brier score are NumPy expressions that also take 2-D inputs with ``axis`` (marked
    ``rowwise``): the bootstrap then evaluates all resamples at once instead of calling them one by one.
    """
    return {
        "roc_auc": roc_auc,
        "average_precision": lambda y, p: float(skm.average_precision_score(y, p)),
        "log_loss": log_loss,
        "brier": brier,
        "recall_at_precision": lambda y, p: recall_at_precision(y, p, precision),
        "calibration_error": lambda y, p: calibration_error(y, p, bins),
    }


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval."""

    point: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        """Plain dict for artifacts and JSON."""
        return asdict(self)


def _safe(metric: Metric) -> Callable[..., float]:
    """Wrap a metric so a degenerate resample (one class only) yields NaN instead of raising."""
    def wrapped(y: np.ndarray, *ps: np.ndarray) -> float:
        if np.unique(y).size < 2:
            return float("nan")
        return metric(y, *ps)
    return wrapped


def _is_rowwise(metric: Callable[..., object]) -> bool:
    """True when ``metric`` evaluates many resamples at once (see ``_rowwise``)."""
    return bool(getattr(metric, "rowwise", False))


def _batch(samples: int, rows: int) -> int:
    """Resamples per vectorized call: at most about two million cells at once, so memory stays flat."""
    return max(1, min(samples, BATCH_CELLS // max(rows, 1)))


def bootstrap_ci(y: np.ndarray, p: np.ndarray, metric: Metric, samples: int = 200, confidence: float = 0.95,
                 seed: int = 0) -> Estimate:
    """``metric(y, p)`` with a percentile bootstrap interval (rows resampled jointly)."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    point = metric(y, p)
    rowwise = _is_rowwise(metric)
    res = stats.bootstrap((y, p), metric if rowwise else _safe(metric), paired=True, vectorized=rowwise,
                          n_resamples=samples, batch=_batch(samples, y.size), confidence_level=confidence,
                          method="percentile", random_state=seed)
    low, high = res.confidence_interval
    return Estimate(point=float(point), low=float(low), high=float(high), confidence=confidence)


def performance(y: np.ndarray, p: np.ndarray, samples: int = 200, confidence: float = 0.95, seed: int = 0,
                precision: float = 0.5, bins: int = 10) -> dict[str, Estimate]:
    """Every performance metric with its interval."""
    return {name: bootstrap_ci(y, p, fn, samples, confidence, seed)
            for name, fn in metric_functions(precision, bins).items()}


@dataclass(frozen=True)
class Comparison:
    """Challenger minus champion on one metric, with a one-sided test that the challenger is better."""

    metric: str
    champion: float
    challenger: float
    difference: float  # oriented so that > 0 means the challenger is better
    low: float
    high: float
    p_value: float
    method: str

    def significant(self, alpha: float, min_effect: float) -> bool:
        """True when the improvement is both statistically significant and at least ``min_effect``."""
        return bool(self.p_value < alpha and self.difference >= min_effect)

    def to_dict(self) -> dict[str, float | str]:
        """Plain dict for artifacts and JSON."""
        return asdict(self)


def paired_bootstrap(y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray, metric: str = "roc_auc",
                     samples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Comparison:
    """Paired bootstrap of the metric difference; p-value = share of resamples where the challenger is not better."""
    fn = metric_functions()[metric]
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    y = np.asarray(y).astype(int)
    a, b = np.asarray(p_champion, dtype=float), np.asarray(p_challenger, dtype=float)

    rowwise = _is_rowwise(fn)

    def diff(yy: np.ndarray, aa: np.ndarray, bb: np.ndarray, axis: int = -1) -> float:
        if rowwise:
            return sign * (fn(yy, bb, axis=axis) - fn(yy, aa, axis=axis))
        return sign * (fn(yy, bb) - fn(yy, aa))

    res = stats.bootstrap((y, a, b), diff if rowwise else _safe(diff), paired=True, vectorized=rowwise,
                          n_resamples=samples, batch=_batch(samples, y.size), confidence_level=confidence,
                          method="percentile", random_state=seed)
    dist = res.bootstrap_distribution[~np.isnan(res.bootstrap_distribution)]
    p_value = float((np.sum(dist <= 0) + 1) / (dist.size + 1))  # add-one: never exactly 0
    low, high = res.confidence_interval
    return Comparison(metric=metric, champion=fn(y, a), challenger=fn(y, b), difference=diff(y, a, b),
                      low=float(low), high=float(high), p_value=p_value, method="paired_bootstrap")


def _midrank_auc_components(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components (V10 per positive, V01 per negative) for one score vector."""
    m, n = pos.size, neg.size
    all_ranks = stats.rankdata(np.concatenate([pos, neg]))
    pos_ranks, neg_ranks = stats.rankdata(pos), stats.rankdata(neg)
    v10 = (all_ranks[:m] - pos_ranks) / n
    v01 = 1.0 - (all_ranks[m:] - neg_ranks) / m
    return float(v10.mean()), v10, v01


def delong(y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray) -> Comparison:
    """DeLong's test for two correlated ROC AUCs (one-sided: the challenger's AUC is higher)."""
    y = np.asarray(y).astype(bool)
    scores = [np.asarray(p_champion, dtype=float), np.asarray(p_challenger, dtype=float)]
    parts = [_midrank_auc_components(s[y], s[~y]) for s in scores]
    aucs = np.array([part[0] for part in parts])
    s10 = np.cov(np.vstack([part[1] for part in parts]))
    s01 = np.cov(np.vstack([part[2] for part in parts]))
    cov = s10 / y.sum() + s01 / (~y).sum()
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[1] - aucs[0])
    if var <= 1e-18:
        z, p_value, half = 0.0, 1.0, 0.0
    else:
        z = diff / np.sqrt(var)
        p_value = float(stats.norm.sf(z))
        half = float(stats.norm.ppf(0.975) * np.sqrt(var))
    return Comparison(metric="roc_auc", champion=float(aucs[0]), challenger=float(aucs[1]), difference=diff,
                      low=diff - half, high=diff + half, p_value=p_value, method="delong")
