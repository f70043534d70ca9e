"""Moving baselines: each statistic judged against its own trailing history."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
from scipy import stats

from steps.config.monitor import BaselineConfig, DriftConfig, StatisticThreshold
from steps.monitoring.drift import Measurement


def _threshold_for(statistic: str, cfg: DriftConfig) -> StatisticThreshold:
    return {"psi": cfg.psi, "js": cfg.js, "ks": cfg.ks, "null_rate_change": cfg.null_rate,
            "rate_change": cfg.rate_change}[statistic]


def _history_for(history: list[tuple[str, float]], period: str, cfg: BaselineConfig) -> tuple[list[float], str]:
    """The trailing values to judge against (same weekday when seasonal and there are enough)."""
    earlier = [(p, v) for p, v in history if p < period and v is not None and not math.isnan(v)]
    if cfg.seasonal:
        weekday = date.fromisoformat(period).weekday()
        same = [(p, v) for p, v in earlier if date.fromisoformat(p).weekday() == weekday]
        if len(same) >= cfg.min_history:
            return [v for _, v in same[-cfg.history:]], "seasonal"
    return [v for _, v in earlier[-cfg.history:]], "moving"


def judge(value: float, history: list[tuple[str, float]], period: str, limit: StatisticThreshold,
          cfg: BaselineConfig) -> tuple[bool, float, float | None, str]:
    """(breach, threshold, baseline, method) for one value against its own history.

    With at least ``min_history`` earlier values: a robust z-score (median and normal-consistent MAD, scipy) above
    ``z``, or a value above the history's ``percentile``, breaches, but never below the statistic's ``floor``.
    Otherwise the ``static`` threshold decides.
    """
    values, method = _history_for(history, period, cfg)
    if len(values) < cfg.min_history:
        return value > limit.static, limit.static, None, "static"
    arr = np.asarray(values, dtype=float)
    median = float(np.median(arr))
    if cfg.method == "percentile":
        threshold = float(np.percentile(arr, cfg.percentile))
    else:
        mad = float(stats.median_abs_deviation(arr, scale="normal"))
        threshold = median + cfg.z * max(mad, 1e-3 * max(abs(median), 1e-6))
    threshold = max(threshold, limit.floor)
    return value > threshold, threshold, median, method


def judge_all(measurements: list[Measurement], series: dict[str, list[tuple[str, float]]], period: str,
              drift: DriftConfig, baseline: BaselineConfig) -> list[Measurement]:
    """Every measurement judged against the history of its own key (``series``: key -> [(period, value)])."""
    judged = []
    for m in measurements:
        if m.subject in drift.ignore:
            judged.append(Measurement(m.signal, m.subject, m.statistic, m.value, m.p_value, method="ignored"))
            continue
        breach, threshold, base, method = judge(m.value, series.get(m.key(), []), period,
                                                _threshold_for(m.statistic, drift), baseline)
        if m.p_value is not None and m.p_value >= drift.alpha:
            breach = False  # a large value on a handful of rows is noise, not a shift
        judged.append(Measurement(m.signal, m.subject, m.statistic, m.value, m.p_value, base, threshold, method,
                                  bool(breach)))
    return judged


def period_signals(measurements: list[Measurement], schema: list[str], rows: int, drift: DriftConfig,
                   missing: str | None = None) -> dict[str, dict[str, Any]]:
    """Roll a period's judged measurements up into one breach flag per signal (the alert rules' input); a period
    without a trusted partition (``missing``: which, and why) breaches ``scoring_failed`` only."""
    if missing is not None:
        return {"scoring_failed": {"breach": True, "value": 1.0, "detail": missing}}
    signals: dict[str, dict[str, Any]] = {
        "scoring_failed": {"breach": False, "value": 0.0, "detail": ""},
        "schema_change": {"breach": bool(schema), "value": float(len(schema)), "detail": "; ".join(schema)},
    }
    if rows < drift.min_rows:
        return signals  # too few rows to judge drift: reported, neither a breach nor a clear
    for signal in ("feature_drift", "prediction_drift", "null_rate", "decision_rate", "review_rate"):
        hits = sorted({m.subject for m in measurements if m.signal == signal and m.breach})
        need = drift.min_features if signal == "feature_drift" else 1
        signals[signal] = {"breach": len(hits) >= need, "value": float(len(hits)), "detail": ", ".join(hits)}
    return signals


def series_from(periods: list[dict[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """key -> [(period, value)] from stored periods (oldest first)."""
    series: dict[str, list[tuple[str, float]]] = {}
    for p in sorted(periods, key=lambda p: p["period"]):
        for m in p.get("measurements", []):
            series.setdefault(f"{m['signal']}/{m['subject']}/{m['statistic']}", []).append((p["period"], m["value"]))
    return series


def judge_periods(raw: list[dict[str, Any]], history: list[dict[str, Any]], drift: DriftConfig,
                  baseline: BaselineConfig) -> list[dict[str, Any]]:
    """Judge the window's periods in date order, each against the history before it (earlier window days included).

    Args:
        raw: ``measure_period`` results for the window.
        history: stored periods from earlier runs (periods of the window in it are replaced).
    """
    window = {p["period"] for p in raw}
    known = [p for p in history if p["period"] not in window]
    judged = []
    for p in sorted(raw, key=lambda p: p["period"]):
        series = series_from(known)
        ms = judge_all([Measurement(**m) for m in p["measurements"]], series, p["period"], drift, baseline)
        done = {**p, "measurements": [m.to_dict() for m in ms],
                "signals": period_signals(ms, p["schema"], p["rows"], drift,
                                          None if p["scored"] else p.get("missing", "no trusted partition"))}
        judged.append(done)
        known.append(done)
    return judged
