"""The reference profile stored with every model: feature bins and levels, the score distribution, the realized AUC."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from steps.config.dataset import DatasetConfig
from steps.config.train import ReferenceConfig
from steps.data.contract import label_counts, time_label
from steps.modeling import resampling as rs

NULL, OTHER = "__null__", "__other__"


def _numeric_reference(values: pd.Series, cfg: ReferenceConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Quantile bin edges, bin shares, null rate and a sorted sample of one numeric column."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    present = x[~np.isnan(x)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, cfg.bins + 1)[1:-1])) if present.size else np.array([])
    sample = np.sort(rng.choice(present, size=min(cfg.sample_rows, present.size), replace=False)) \
        if present.size else np.array([])
    return {"kind": "numeric", "edges": edges.tolist(), "shares": numeric_shares(present, edges).tolist(),
            "count": int(present.size),
            "null_rate": float(np.isnan(x).mean()) if x.size else 0.0, "sample": sample.tolist(),
            "dtype": str(values.dtype)}


def _categorical_reference(values: pd.Series, cfg: ReferenceConfig) -> dict[str, Any]:
    """Level shares (top ``max_levels``, the rest pooled), and the null rate of one categorical column."""
    counts = label_counts(values)
    levels = sorted(counts.index[:cfg.max_levels].tolist())
    return {"kind": "categorical", "levels": levels, "shares": _shares(counts, levels).tolist(),
            "count": int(counts.sum()), "null_rate": float(values.isna().mean()) if len(values) else 0.0,
            "dtype": str(values.dtype)}


def reference_profile(frame: pd.DataFrame, scores: np.ndarray, spec: DatasetConfig, cfg: ReferenceConfig,
                      seed: int = 0) -> dict[str, Any]:
    """What production data is compared with: every feature, the score, and the realized AUC on ``frame``.

    Args:
        frame: the temporal hold-out (the latest data the model was judged on).
        scores: the model's probabilities on ``frame`` (ten times ``sample_rows`` of them are kept, so decision and
            review rates can be computed later at whatever threshold ScoreFlow uses).
    """
    rng = np.random.default_rng(seed)
    features = {name: _numeric_reference(frame[name], cfg, rng) for name in spec.numeric}
    features |= {name: _categorical_reference(frame[name], cfg) for name in spec.categorical}
    scores = np.asarray(scores, dtype=float)
    score_ref = _numeric_reference(pd.Series(scores), cfg.model_copy(update={"sample_rows": 10 * cfg.sample_rows}),
                                   rng)
    y = frame[spec.target.name].to_numpy().astype(int)
    auc = rs.point({"auc": rs.roc_auc}, rs.rank(y, scores))["auc"]  # scikit-learn's value; NaN with one class
    return {"version": 1, "rows": int(len(frame)), "features": features, "score": score_ref,
            "performance": {"roc_auc": auc, "positives": int(y.sum()), "rows": int(len(y))},
            "time_range": ([time_label(frame[spec.time_column].min(), spec.time),
                            time_label(frame[spec.time_column].max(), spec.time)] if spec.time_column else None)}


def build_reference(model: Any, holdout: pd.DataFrame, spec: DatasetConfig, cfg: ReferenceConfig,
                    scores: np.ndarray | None = None) -> dict[str, Any]:
    """Profile the hold-out and ``model``'s scores on it (TrainFlow stores the result with the model); ``scores``: the
    model's hold-out scores when the gates already computed them (finite), else the model scores it here."""
    if scores is None or not np.isfinite(scores).all():
        scores = model.predict_proba(holdout[spec.features])[:, 1]
    return reference_profile(holdout, scores, spec, cfg)


def numeric_shares(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Share of the (non-null) values in each bin cut at ``edges`` (len(edges) + 1 bins)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values, side="right"),
                         minlength=len(edges) + 1)
    return _bin_shares(counts)


def sorted_shares(ordered: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """:func:`numeric_shares` of values sorted ascending with no NaN: one binary search per edge, not per value."""
    below = np.searchsorted(ordered, np.asarray(edges, dtype=float), side="left")  # values before each bin's end
    return _bin_shares(np.diff(below, prepend=0, append=ordered.size))


def _bin_shares(counts: np.ndarray) -> np.ndarray:
    """Counts per bin as shares; equal shares when there are none."""
    return counts / counts.sum() if counts.sum() else np.full(len(counts), 1.0 / len(counts))


def categorical_shares(values: pd.Series, levels: list[str]) -> np.ndarray:
    """Share of each known level plus a last ``__other__`` share (nulls excluded)."""
    return _shares(label_counts(values), levels)


def _shares(counts: pd.Series, levels: list[str]) -> np.ndarray:
    """Shares of ``levels`` and of everything else (last) from rows per label."""
    known = np.array([counts.get(level, 0) for level in levels], dtype=float)
    shares = np.append(known, counts.sum() - known.sum())
    return shares / shares.sum() if shares.sum() else np.full(len(levels) + 1, 1.0 / (len(levels) + 1))
