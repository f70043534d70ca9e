"""Metrics, curves, candidate selection, bootstrap intervals and paired significance tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from steps.modeling import resampling as rs


def scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), log loss, Brier score, and their 'higher is better' forms."""
    from sklearn import metrics as skm  # here, not at the top: TrainFlow's join selects without scikit-learn

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
    from sklearn import metrics as skm

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


HIGHER_IS_BETTER = {"roc_auc": True, "average_precision": True, "log_loss": False, "brier": False,
                    "recall_at_precision": True, "calibration_error": False, "average_precision_skill": True,
                    "log_loss_skill": True, "brier_skill": True, "recall_at_relative_precision": True,
                    "relative_calibration_error": False}
ABSOLUTE = ("roc_auc", "average_precision", "log_loss", "brier", "recall_at_precision", "calibration_error")
RELATIVE = ("average_precision_skill", "log_loss_skill", "brier_skill", "recall_at_relative_precision",
            "relative_calibration_error")


def describe_metric(name: str, precision: float = 0.5, lift: float = 0.25, bins: int = 10) -> str:
    """One line a reviewer reads on the card: what the metric measures and whether it depends on the base rate."""
    return {
        "roc_auc": "chance a positive scores above a negative (0.5: random); the same on any base rate",
        "average_precision": "area under precision-recall; its floor is the base rate (absolute)",
        "log_loss": "cross-entropy of the scores (absolute: depends on the base rate)",
        "brier": "mean squared error of the scores (absolute: depends on the base rate)",
        "recall_at_precision": f"share of positives caught at precision >= {precision:g} (an absolute bar)",
        "calibration_error": f"mean |observed rate - mean score| over {bins} quantile bins (absolute)",
        "average_precision_skill": "(average precision - base rate) / (1 - base rate): 0 random, 1 perfect",
        "log_loss_skill": "1 - log loss / log loss of always predicting the base rate: > 0 beats the base rate",
        "brier_skill": "1 - Brier / Brier of always predicting the base rate: > 0 beats the base rate",
        "recall_at_relative_precision": f"recall at precision base rate + {lift:g} x (1 - base rate): the same "
                                        "bar on any base rate",
        "relative_calibration_error": f"calibration error ({bins} quantile bins) / mean score: miscalibration on "
                                      "the model's own scale",
    }[name]


def weighted_metrics(precision: float = 0.5, lift: float = 0.25, bins: int = 10) -> dict[str, rs.WeightedMetric]:
    """Every gated performance metric as a function of a chunk of weighted resamples (``resampling.Weighted``)."""
    return {
        "roc_auc": rs.roc_auc,
        "average_precision": rs.average_precision,
        "log_loss": rs.log_loss,
        "brier": rs.brier,
        "recall_at_precision": lambda s: rs.recall_at_precision(s, precision),
        "calibration_error": lambda s: rs.calibration_error(s, bins),
        "average_precision_skill": rs.average_precision_skill,
        "log_loss_skill": rs.log_loss_skill,
        "brier_skill": rs.brier_skill,
        "recall_at_relative_precision": lambda s: rs.recall_at_relative_precision(s, lift),
        "relative_calibration_error": lambda s: rs.relative_calibration_error(s, bins),
    }


def recall_at_precision(y: np.ndarray, p: np.ndarray, precision: float) -> float:
    """The highest recall reachable at a threshold whose precision is at least ``precision`` (0 if none)."""
    return rs.point({"r": lambda s: rs.recall_at_precision(s, precision)}, rs.rank(y, p))["r"]


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over quantile bins: mean |observed rate - mean score| over the bins."""
    return rs.point({"e": lambda s: rs.calibration_error(s, bins)}, rs.rank(y, p))["e"]


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


def performance(y: np.ndarray, p: np.ndarray, samples: int = 200, confidence: float = 0.95, seed: int = 0,
                precision: float = 0.5, bins: int = 10, lift: float = 0.25,
                names: list[str] | None = None, threads: int = 1) -> dict[str, Estimate]:
    """The performance metrics ``names`` (default: all) with percentile intervals from ``samples`` Poisson-weighted
    resamples (``steps.modeling.resampling``: scores sorted once, cost linear in the rows; chunks of resamples on
    ``threads`` threads, the same intervals on any number)."""
    ranked = rs.rank(np.asarray(y).astype(int), np.asarray(p, dtype=float))
    every = weighted_metrics(precision, lift, bins)
    chosen = {name: fn for name, fn in every.items() if names is None or name in names}
    points = rs.point(chosen, ranked)
    spread = rs.distributions(chosen, ranked, samples, seed, threads)
    return {name: Estimate(points[name], *rs.percentile_interval(spread[name], confidence), confidence)
            for name in chosen}


def bootstrap_ci(y: np.ndarray, p: np.ndarray, metric: str = "roc_auc", samples: int = 200,
                 confidence: float = 0.95, seed: int = 0) -> Estimate:
    """One metric (a name of ``weighted_metrics``) with its percentile bootstrap interval."""
    return performance(y, p, samples, confidence, seed, names=[metric])[metric]


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
    """Paired bootstrap of the metric difference on the same Poisson-weighted resamples of both models' scores;
    p-value = share of resamples where the challenger is not better (add-one, never exactly 0)."""
    fn = weighted_metrics()[metric]
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    y = np.asarray(y).astype(int)
    a, b = rs.rank(y, p_champion), rs.rank(y, p_challenger)
    champion, challenger = rs.point({"m": fn}, a)["m"], rs.point({"m": fn}, b)["m"]
    spread = sign * (rs.paired_auc_differences(y, p_champion, p_challenger, samples, seed) if metric == "roc_auc"
                     else rs.paired_differences(fn, a, b, samples, seed))
    dist = spread[np.isfinite(spread)]
    p_value = float((np.sum(dist <= 0) + 1) / (dist.size + 1))
    low, high = rs.percentile_interval(spread, confidence)
    return Comparison(metric=metric, champion=champion, challenger=challenger,
                      difference=sign * (challenger - champion), low=low, high=high, p_value=p_value,
                      method="paired_bootstrap")


def _midranks(ascending: np.ndarray) -> np.ndarray:
    """1-based ranks of an ascending array, tied values sharing the mean of their positions (``rankdata``'s
    ``average``), without sorting again."""
    new = np.r_[True, ascending[1:] != ascending[:-1]]
    starts = np.flatnonzero(new)
    return ((starts + np.r_[starts[1:], ascending.size] + 1) / 2.0)[np.cumsum(new) - 1]


def _midrank_auc_components(score: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components (V10 per positive, V01 per negative, each in row order) for one score
    vector: one sort serves the midranks of all rows, of the positives and of the negatives (the sorted positives
    and negatives are runs of the sorted rows). Equal to three ``scipy.stats.rankdata`` calls (tested), a third of
    their time (1.5M rows: 0.3 s against 0.9 s per model)."""
    order = np.argsort(score)
    ranked, positive = score[order], y[order]
    m, n = int(positive.sum()), int(positive.size - positive.sum())
    every = _midranks(ranked)
    components = np.empty(score.size)
    components[order[positive]] = (every[positive] - _midranks(ranked[positive])) / n
    components[order[~positive]] = 1.0 - (every[~positive] - _midranks(ranked[~positive])) / m
    v10 = components[y]
    return float(v10.mean()), v10, components[~y]


def delong(y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray, confidence: float = 0.95) -> Comparison:
    """DeLong's test for two correlated ROC AUCs (one-sided: the challenger's AUC is higher), with the two-sided
    ``confidence`` interval of the difference (as the paired bootstrap's)."""
    from scipy import stats

    y = np.asarray(y).astype(bool)
    scores = [np.asarray(p_champion, dtype=float), np.asarray(p_challenger, dtype=float)]
    parts = [_midrank_auc_components(s, y) for s in scores]
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
        half = float(stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(var))
    return Comparison(metric="roc_auc", champion=float(aucs[0]), challenger=float(aucs[1]), difference=diff,
                      low=diff - half, high=diff + half, p_value=p_value, method="delong")
