"""Fairness gates: fairlearn metrics per sensitive attribute (and their intersection) and the group disparities.

Every group is reported; only groups with at least ``min_slice_size`` rows and ``min_slice_positives`` positives
take part in the disparities (smaller ones are too noisy to judge a model on). Decisions are ``score >= threshold``.

"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count, false_positive_rate, selection_rate
from sklearn.metrics import recall_score, roc_auc_score

from steps.config.gates import FairnessGates, Threshold
from steps.gates.result import GateResult, check, describe

logger = logging.getLogger(__name__)


SUITE = "fairness"


JOIN = "×"


MISSING_GROUP = "__missing__"


Metric = Callable[[np.ndarray, np.ndarray], float]


def _decided(metric: Callable[..., float], threshold: float) -> Metric:
    """Wrap a label metric so it takes scores and applies the decision threshold first."""
    return lambda y, score: float(metric(y, (np.asarray(score) >= threshold).astype(int)))


def _tpr(y: np.ndarray, decision: np.ndarray) -> float:
    """True-positive rate (recall); NaN when the group has no positives."""
    return float(recall_score(y, decision, zero_division=np.nan))


def _fpr(y: np.ndarray, decision: np.ndarray) -> float:
    """False-positive rate (fairlearn); NaN when the group has no negatives."""
    return float(false_positive_rate(y, decision)) if (np.asarray(y) == 0).any() else float("nan")


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when the group lacks one of the classes."""
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


def metrics(threshold: float) -> dict[str, Metric]:
    """The per-group metrics, all taking ``(y_true, score)``."""
    return {
        "rows": lambda y, s: float(count(y, s)),
        "positives": lambda y, s: float(np.sum(y)),
        "selection_rate": _decided(selection_rate, threshold),
        "tpr": _decided(_tpr, threshold),
        "fpr": _decided(_fpr, threshold),
        "auc": _auc,
    }


def slices(sensitive: pd.DataFrame, intersections: bool) -> dict[str, pd.Series]:
    """Group label per row for each attribute and, when asked and possible, their intersection."""
    labels = sensitive.astype("object").where(sensitive.notna(), MISSING_GROUP).astype(str)
    out = {name: labels[name].reset_index(drop=True) for name in labels.columns}
    if intersections and len(labels.columns) >= 2:
        first, rest = labels.iloc[:, 0], labels.iloc[:, 1:]
        name = JOIN.join(labels.columns)
        out[name] = first.str.cat(rest, sep=JOIN).reset_index(drop=True).rename(name)
    return out


def by_group(y: np.ndarray, score: np.ndarray, groups: pd.Series, cfg: FairnessGates,
             threshold: float) -> pd.DataFrame:
    """One row per observed group: the metrics and whether the group is large enough to be gated."""
    frame = MetricFrame(metrics=metrics(threshold), y_true=y, y_pred=score, sensitive_features=groups).by_group
    frame = frame[frame["rows"] > 0].copy()
    frame["gated"] = (frame["rows"] >= cfg.min_slice_size) & (frame["positives"] >= cfg.min_slice_positives)
    frame.index = frame.index.astype(str)
    return frame


def _extremes(values: pd.Series) -> tuple[str, float, str, float]:
    """(group with the lowest value, value, group with the highest value, value), NaNs skipped."""
    clean = values.dropna()
    if clean.empty:
        return "n/a", float("nan"), "n/a", float("nan")
    return str(clean.idxmin()), float(clean.min()), str(clean.idxmax()), float(clean.max())


def _excluded_note(table: pd.DataFrame, cfg: FairnessGates) -> str:
    """Which groups were reported but not gated, and why."""
    small = list(table.index[~table["gated"]])
    gated = int(table["gated"].sum())
    note = f"{gated} of {len(table)} groups gated"
    if small:
        note += (f"; not gated (< {cfg.min_slice_size} rows or < {cfg.min_slice_positives} positives, "
                 f"excluded from the disparity): {', '.join(small)}")
    return note


def _not_gated(name: str, metric: str, threshold: Threshold, detail: str) -> GateResult:
    """A reported-only result for a disparity that cannot be computed (fewer than two gated groups)."""
    return GateResult(suite=SUITE, name=name, metric=metric, threshold=describe(threshold), actual=None,
                      passed=True, detail=detail, gated=False)


def _parity(attr: str, gated: pd.DataFrame, cfg: FairnessGates, note: str) -> GateResult:
    """Demographic-parity difference: highest minus lowest selection rate over the gated groups."""
    low, lo, high, hi = _extremes(gated["selection_rate"])
    detail = f"highest selection rate {high} ({hi:.4f}), lowest {low} ({lo:.4f}); {note}"
    return check(SUITE, f"demographic_parity_difference[{attr}]", "demographic_parity_difference",
                 cfg.demographic_parity_difference, hi - lo, detail=detail)


def _odds(attr: str, gated: pd.DataFrame, cfg: FairnessGates, note: str) -> GateResult:
    """Equalized-odds difference: the larger of the TPR gap and the FPR gap over the gated groups."""
    t_low, t_lo, t_high, t_hi = _extremes(gated["tpr"])
    f_low, f_lo, f_high, f_hi = _extremes(gated["fpr"])
    tpr_gap, fpr_gap = t_hi - t_lo, f_hi - f_lo
    worst = (f"TPR gap: worst {t_low} ({t_lo:.4f}), best {t_high} ({t_hi:.4f})" if tpr_gap >= fpr_gap
             else f"FPR gap: worst {f_high} ({f_hi:.4f}), best {f_low} ({f_lo:.4f})")
    detail = f"{worst}; TPR gap {tpr_gap:.4f}, FPR gap {fpr_gap:.4f}; {note}"
    return check(SUITE, f"equalized_odds_difference[{attr}]", "equalized_odds_difference",
                 cfg.equalized_odds_difference, max(tpr_gap, fpr_gap), detail=detail)


def _auc_ratio(attr: str, gated: pd.DataFrame, cfg: FairnessGates, note: str) -> GateResult:
    """Worst-group AUC ratio: lowest group AUC over highest group AUC among the gated groups."""
    name, metric = f"worst_group_auc_ratio[{attr}]", "worst_group_auc_ratio"
    if gated["auc"].notna().sum() < 2:
        return _not_gated(name, metric, cfg.worst_group_auc_ratio, f"fewer than 2 gated groups with an AUC; {note}")
    low, lo, high, hi = _extremes(gated["auc"])
    detail = f"worst {low} (AUC {lo:.4f}), best {high} (AUC {hi:.4f}); {note}"
    return check(SUITE, name, metric, cfg.worst_group_auc_ratio, lo / hi if hi > 0 else 0.0, detail=detail)


def attribute_gates(attr: str, table: pd.DataFrame, cfg: FairnessGates) -> list[GateResult]:
    """The three disparity gates of one attribute (or intersection) from its per-group table."""
    note = _excluded_note(table, cfg)
    gated = table[table["gated"]]
    if len(gated) < 2:
        detail = f"fewer than 2 groups large enough to compare; {note}"
        return [_not_gated(f"{metric}[{attr}]", metric, threshold, detail) for metric, threshold in (
            ("demographic_parity_difference", cfg.demographic_parity_difference),
            ("equalized_odds_difference", cfg.equalized_odds_difference),
            ("worst_group_auc_ratio", cfg.worst_group_auc_ratio))]
    return [_parity(attr, gated, cfg, note), _odds(attr, gated, cfg, note), _auc_ratio(attr, gated, cfg, note)]


def _jsonable(value: Any) -> Any:
    """NaN becomes None so the report is strict JSON."""
    return None if isinstance(value, float) and np.isnan(value) else value


def report_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The per-group table as JSON-able dicts for cards."""
    return [{"group": str(group), "rows": int(row["rows"]), "positives": int(row["positives"]),
             "selection_rate": _jsonable(float(row["selection_rate"])), "tpr": _jsonable(float(row["tpr"])),
             "fpr": _jsonable(float(row["fpr"])), "auc": _jsonable(float(row["auc"])), "gated": bool(row["gated"])}
            for group, row in table.iterrows()]


def fairness_gates(y_true: np.ndarray, proba: np.ndarray, sensitive: pd.DataFrame, cfg: FairnessGates,
                   threshold: float) -> tuple[list[GateResult], dict[str, list[dict[str, Any]]]]:
    """Disparity gates per sensitive attribute and their intersection, plus the per-group report.

    Args:
        y_true: 0/1 labels of the evaluation rows.
        proba: positive-class scores of the same rows.
        sensitive: the sensitive-attribute columns of the same rows (missing values form their own group).
        cfg: slice minimums and the three thresholds.
        threshold: the decision threshold (``score >= threshold`` is a positive decision).

    Returns:
        The gate results (three per attribute and intersection) and ``{attribute: [group rows]}`` for cards.
    """
    y = np.asarray(y_true).astype(int)
    score = np.asarray(proba, dtype=float)
    if not (len(y) == len(score) == len(sensitive)):
        raise ValueError(f"length mismatch: y_true {len(y)}, proba {len(score)}, sensitive {len(sensitive)}")
    results: list[GateResult] = []
    report: dict[str, list[dict[str, Any]]] = {}
    for attr, groups in slices(sensitive, cfg.intersections).items():
        table = by_group(y, score, groups, cfg, threshold)
        report[attr] = report_rows(table)
        results.extend(attribute_gates(attr, table, cfg))
    failed = [r.name for r in results if r.gated and not r.passed]
    logger.info("fairness: %d checks over %d slicings, failed: %s", len(results), len(report), failed or "none")
    return results, report


def _rates(y: np.ndarray, decision: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Selection rate, TPR and FPR per group code (NaN where a group has no rows / positives / negatives)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.bincount(codes, minlength=k)
        pos = np.bincount(codes, weights=y, minlength=k)
        sel = np.bincount(codes, weights=decision, minlength=k) / rows
        tpr = np.bincount(codes, weights=decision * y, minlength=k) / pos
        fpr = np.bincount(codes, weights=decision * (1 - y), minlength=k) / (rows - pos)
    return sel, tpr, fpr


def _gaps(y: np.ndarray, decision: np.ndarray, codes: np.ndarray, k: int, keep: np.ndarray) -> tuple[float, float]:
    """(demographic-parity difference, equalized-odds difference) over the kept groups."""
    sel, tpr, fpr = (r[keep] for r in _rates(y, decision, codes, k))
    return float(np.nanmax(sel) - np.nanmin(sel)), float(max(np.nanmax(tpr) - np.nanmin(tpr),
                                                              np.nanmax(fpr) - np.nanmin(fpr)))


def compare_disparities(y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray, sensitive: pd.DataFrame,
                        cfg: FairnessGates, threshold: float, samples: int = 200, seed: int = 0,
                        confidence: float = 0.95) -> list[dict[str, Any]]:
    """Paired bootstrap of how much each disparity widens from champion to challenger, per sensitive attribute.

    Both models are judged on the same resampled rows, over the groups large enough to gate on the full hold-out.

    Returns:
        One dict per (disparity, attribute): name, champion, challenger, widening (challenger - champion) and its
        percentile interval.
    """
    y = np.asarray(y, dtype=float)
    decisions = [(np.asarray(p) >= threshold).astype(float) for p in (p_champion, p_challenger)]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(samples, len(y)))
    out = []
    for attribute in sensitive.columns:
        labels = sensitive[attribute].astype("object").where(sensitive[attribute].notna(), MISSING_GROUP)
        codes, uniques = pd.factorize(labels.astype(str))
        k = len(uniques)
        rows, pos = np.bincount(codes, minlength=k), np.bincount(codes, weights=y, minlength=k)
        keep = (rows >= cfg.min_slice_size) & (pos >= cfg.min_slice_positives)
        if keep.sum() < 2:
            continue
        point = [_gaps(y, d, codes, k, keep) for d in decisions]
        boot = np.array([[np.subtract(_gaps(y[i], decisions[1][i], codes[i], k, keep),
                                      _gaps(y[i], decisions[0][i], codes[i], k, keep))] for i in idx])[:, 0, :]
        tail = (1 - confidence) / 2
        for j, name in enumerate(("demographic_parity_difference", "equalized_odds_difference")):
            low, high = np.nanquantile(boot[:, j], [tail, 1 - tail])
            out.append({"name": f"{name}[{attribute}]", "champion": point[0][j], "challenger": point[1][j],
                        "widening": point[1][j] - point[0][j], "low": float(low), "high": float(high)})
    return out
