"""Fairness gates: per-group metrics per sensitive attribute (and their intersection) and the group disparities.

The metrics are fairlearn's (``MetricFrame`` with selection rate, recall, false-positive rate and ROC AUC; tested
equal), computed with bincounts and one sort, so their cost is linear in the hold-out.

Every group is reported; only groups with at least ``min_slice_size`` rows and ``min_slice_positives`` positives
take part in the disparities (smaller ones are too noisy to judge a model on). Decisions are ``score >= threshold``.

"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from steps.config.gates import FairnessGates, Threshold
from steps.gates.result import GateResult, check, describe
from steps.modeling import resampling as rs

logger = logging.getLogger(__name__)


SUITE = "fairness"


JOIN = "×"


MISSING_GROUP = "__missing__"


COLUMNS = ("rows", "positives", "selection_rate", "tpr", "fpr", "auc")


def group_aucs(y: np.ndarray, score: np.ndarray, codes: np.ndarray, k: int,
               by_score: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC of every group code (NaN where a group lacks a class): one sort by score, then one pass per group.

    Mann-Whitney with ties counted half, as ``sklearn.metrics.roc_auc_score``: rows are ordered by (group, score)
    once, and within each group the negatives below each tie group of scores are a cumulative sum. ``by_score``: the
    rows' stable order by score when the caller has it (one sort serves every slicing; the groups are then a
    stable sort of 1- or 2-byte codes). A group's arrays live while it is measured, so the memory beyond the order is
    the largest group's (1.5M hold-out rows: ~150 MiB less at the peak than every row's tie sums at once).
    """
    if not k:
        return np.zeros(0)
    by_score = np.argsort(score, kind="stable") if by_score is None else by_score
    codes = np.asarray(codes)
    small = codes.astype(np.min_scalar_type(max(k - 1, int(codes.max()) if codes.size else 0)))  # no wrap-around
    order = by_score[np.argsort(small[by_score], kind="stable")]
    ends = np.cumsum(np.bincount(small, minlength=k))
    return np.array([_sorted_auc(y[rows] != 0, score[rows])
                     for rows in np.split(order, ends[:-1])], dtype=np.float64).reshape(k)


def _sorted_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of rows sorted by score (ties counted half), NaN without both classes."""
    if not score.size:
        return float("nan")
    starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])  # first row of each tie group of scores
    tie_pos = np.add.reduceat(positive, starts, dtype=np.int64)
    tie_neg = np.diff(np.r_[starts, score.size]) - tie_pos
    positives, negatives = int(tie_pos.sum()), int(tie_neg.sum())
    if not positives or not negatives:
        return float("nan")
    below = np.cumsum(tie_neg) - tie_neg  # negatives with a lower score
    return float(np.dot(tie_pos, below + 0.5 * tie_neg) / (positives * negatives))


def group_table(y: np.ndarray, score: np.ndarray, codes: np.ndarray, k: int, threshold: float,
                by_score: np.ndarray | None = None) -> np.ndarray:
    """``[k, 6]``: rows, positives, selection rate, TPR, FPR and AUC of each group code, in one pass of bincounts.

    The same numbers as fairlearn's ``MetricFrame`` with ``selection_rate``, ``recall_score`` and
    ``false_positive_rate`` at ``score >= threshold`` and ``roc_auc_score`` (NaN where undefined), at the cost of a
    few bincounts and one sort instead of one Python call per group and metric.
    """
    decision = (score >= threshold).astype(np.float64)
    sel, tpr, fpr = _rates(y.astype(np.float64), decision, codes, k)
    rows = np.bincount(codes, minlength=k).astype(np.float64)
    positives = np.bincount(codes, weights=y.astype(np.float64), minlength=k)
    return np.column_stack([rows, positives, sel, tpr, fpr, group_aucs(y, score, codes, k, by_score)])


def _labelled(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's group code and the sorted group labels (``str`` of the value, ``MISSING_GROUP`` for a missing one):
    each distinct value is labelled once, not each row."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    as_python = np.asarray(uniques, dtype=object)  # as ``astype(object)`` shows them (a float32 as its double)
    missing = [MISSING_GROUP] if (codes < 0).any() else []
    return _sorted(codes, np.array([*(str(u) for u in as_python), *missing], dtype=object))


def _sorted(codes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes into ``labels`` (-1: the last label, the missing group) renumbered into the sorted distinct labels."""
    categories, inverse = np.unique(labels.astype(str), return_inverse=True)
    return inverse[codes], categories


def slices(sensitive: pd.DataFrame, intersections: bool) -> dict[str, pd.Series]:
    """Group label per row (a categorical, labels sorted) for each attribute and, when asked and possible, their
    intersection (labels joined with ``JOIN``)."""
    coded = {name: _labelled(sensitive[name]) for name in sensitive.columns}
    out = {name: pd.Series(pd.Categorical.from_codes(c, labels), name=name) for name, (c, labels) in coded.items()}
    if intersections and len(coded) >= 2:
        (codes, labels), *rest = coded.values()
        for other, other_labels in rest:
            pairs, uniques = pd.factorize(codes.astype(np.int64) * len(other_labels) + other)
            joined = np.array([f"{labels[u // len(other_labels)]}{JOIN}{other_labels[u % len(other_labels)]}"
                               for u in uniques], dtype=object)
            codes, labels = _sorted(pairs, joined)
        name = JOIN.join(sensitive.columns)
        out[name] = pd.Series(pd.Categorical.from_codes(codes, labels), name=name)
    return out


def by_group(y: np.ndarray, score: np.ndarray, groups: pd.Series, cfg: FairnessGates, threshold: float,
             by_score: np.ndarray | None = None) -> pd.DataFrame:
    """One row per observed group (sorted by label): the metrics and whether the group is large enough to gate."""
    codes, uniques = pd.factorize(groups, sort=True)
    table = group_table(np.asarray(y), np.asarray(score, dtype=float), codes, len(uniques), threshold, by_score)
    frame = pd.DataFrame(table, columns=list(COLUMNS), index=pd.Index(uniques.astype(str), name=groups.name))
    frame = frame[frame["rows"] > 0].copy()
    frame["gated"] = (frame["rows"] >= cfg.min_slice_size) & (frame["positives"] >= cfg.min_slice_positives)
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
    by_score = np.argsort(score, kind="stable")
    for attr, groups in slices(sensitive, cfg.intersections).items():
        table = by_group(y, score, groups, cfg, threshold, by_score)
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


def _gap(rates: np.ndarray) -> np.ndarray:
    """Highest minus lowest rate over the last axis (groups), NaN groups skipped; NaN when no group has one (which
    the quantiles skip). ``fmax``/``fmin`` skip NaN without warning, so no warning filter is changed: the resamples
    run on several threads, and ``warnings.catch_warnings`` is process-wide (it left its filter behind)."""
    with np.errstate(invalid="ignore"):
        return np.fmax.reduce(rates, axis=-1) - np.fmin.reduce(rates, axis=-1)


def _disparities(sums: np.ndarray) -> np.ndarray:
    """``[..., 2]`` (demographic-parity difference, equalized-odds difference) from per-group weighted sums
    ``[..., 4, k]``: rows, positives, positive decisions, true positives."""
    rows, pos, sel, tp = (sums[..., i, :] for i in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        parity = _gap(sel / rows)
        odds = np.fmax(_gap(tp / pos), _gap((sel - tp) / (rows - pos)))
    return np.stack([parity, odds], axis=-1)


# The eight cells of a group: (label, champion's decision, challenger's decision), in the order of the bits.
_CELL_BITS = np.array([[(c >> bit) & 1 for bit in (2, 1, 0)] for c in range(8)])
# Which cells each per-group sum adds: rows, positives, then each model's positive decisions and true positives.
_CELL_SUMS = np.stack([np.ones(8), _CELL_BITS[:, 0], _CELL_BITS[:, 1], _CELL_BITS[:, 0] * _CELL_BITS[:, 1],
                       _CELL_BITS[:, 2], _CELL_BITS[:, 0] * _CELL_BITS[:, 2]], axis=1).astype(np.int64)


class _Cells(NamedTuple):
    """One sensitive attribute's rows as cells: eight per group, (label, champion's decision, challenger's decision)."""

    name: str
    groups: int  # groups of the attribute (its labels)
    kept: np.ndarray  # the groups large enough to gate on
    by_draw: np.ndarray  # the cell (8 x group + 4 x label + 2 x champion's + challenger's decision) of the row
    # that each of a resample's weights goes to, in draw order


def _cells(name: str, codes: np.ndarray, groups: int, kept: np.ndarray, y: np.ndarray,
           decisions: list[np.ndarray]) -> _Cells:
    """The cells of one attribute. A resample's weight ``j`` goes to the ``j``-th row in group order (rows stably
    sorted by group alone), the pairing of draws and rows the intervals have always had: same seed, same intervals."""
    cell = codes * 8 + y * 4 + decisions[0] * 2 + decisions[1]
    return _Cells(name, groups, kept, cell[np.argsort(codes, kind="stable")])


def _group_sums(counts: np.ndarray, c: _Cells) -> np.ndarray:
    """Per-group sums ``[b, 2 models, 4, kept groups]`` (rows, positives, positive decisions, true positives) from
    the weight ``counts [b, 8 x groups]`` of every cell."""
    s = (counts.reshape(len(counts), c.groups, 8) @ _CELL_SUMS)[:, c.kept, :].transpose(0, 2, 1).astype(np.float64)
    return np.stack([s[:, [0, 1, 2, 3]], s[:, [0, 1, 4, 5]]], axis=1)


def _resampled(c: _Cells, w: np.ndarray) -> np.ndarray:
    """Both disparities' widening (challenger - champion) ``[b, 2]`` on a chunk of weights ``[b, rows]``: each
    resample's cell weights are one weighted ``np.bincount`` over the weights in draw order (whole numbers, exact in
    float64). Gathering the weights into cell order for ``np.add.reduceat`` instead made the whole comparison twice as
    slow (1.5M rows, two attributes gated, 200 resamples: 10.5 s against 5.2 s)."""
    counts = np.stack([np.bincount(c.by_draw, weights=row, minlength=8 * c.groups) for row in w])
    return np.diff(_disparities(_group_sums(counts.astype(np.int64), c)), axis=1)[:, 0]


def _widenings(c: _Cells, spread: np.ndarray, confidence: float) -> list[dict[str, Any]]:
    """The report of one attribute: both disparities of both models on the hold-out and the widening's interval."""
    counts = np.bincount(c.by_draw, minlength=8 * c.groups)[None, :]  # every weight 1: the cells' sizes
    point = _disparities(_group_sums(counts, c))[0]  # [2 models, 2 disparities]
    tail, out = (1 - confidence) / 2, []
    for j, name in enumerate(("demographic_parity_difference", "equalized_odds_difference")):
        finite = spread[:, j][np.isfinite(spread[:, j])]
        low, high = np.quantile(finite, [tail, 1 - tail]) if finite.size else (np.nan, np.nan)
        out.append({"name": f"{name}[{c.name}]", "champion": float(point[0, j]), "challenger": float(point[1, j]),
                    "widening": float(point[1, j] - point[0, j]), "low": float(low), "high": float(high)})
    return out


def compare_disparities(y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray, sensitive: pd.DataFrame,
                        cfg: FairnessGates, threshold: float, samples: int = 200, seed: int = 0,
                        confidence: float = 0.95, threads: int = 1) -> list[dict[str, Any]]:
    """Paired bootstrap of how much each disparity widens from champion to challenger, per sensitive attribute.

    Both models are judged on the same resampled rows, over the groups large enough to gate on the full hold-out.
    Resamples are Poisson(1) row weights (``steps.modeling.resampling``), the same draws for every attribute. Every
    sum a disparity needs is a sum of weights over rows of one group with one label and one decision of each model:
    each row's cell is found once, and a resample costs one weighted ``np.bincount`` of its weights over the cells,
    whatever the number of sums (``y`` holds 0/1 labels). Chunks of resamples run on ``threads`` threads
    (``resampling.map_chunks``: the same intervals on any number).

    Returns:
        One dict per (disparity, attribute): name, champion, challenger, widening (challenger - champion) and its
        percentile interval.
    """
    y = np.asarray(y).astype(np.int64)
    decisions = [(np.asarray(p) >= threshold).astype(np.int64) for p in (p_champion, p_challenger)]
    attributes = []
    for name in sensitive.columns:
        codes, uniques = _labelled(sensitive[name])
        rows, pos = np.bincount(codes, minlength=len(uniques)), np.bincount(codes, weights=y, minlength=len(uniques))
        keep = (rows >= cfg.min_slice_size) & (pos >= cfg.min_slice_positives)
        if keep.sum() >= 2:
            attributes.append(_cells(name, codes, len(uniques), np.flatnonzero(keep), y, decisions))
    chunks = rs.map_chunks(lambda w: [_resampled(c, w) for c in attributes],
                           rs.poisson_chunks(len(y), samples, seed) if attributes else (), threads)
    return [entry for i, c in enumerate(attributes)
            for entry in _widenings(c, np.concatenate([chunk[i] for chunk in chunks]) if chunks
                                    else np.zeros((0, 2)), confidence)]
