"""Performance gates: hold-out quality, each metric judged on the bound of its bootstrap interval.

The shipped defaults judge quality relative to the data (skill against always predicting the base rate, a precision
bar relative to the base rate, calibration on the model's own scale), so they mean the same on a 2% and a 50% base
rate; the absolute metrics stay available (``steps.modeling.metrics.ABSOLUTE``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from steps.config.gates import GatesConfig
from steps.gates.result import GateResult, check
from steps.modeling.metrics import describe_metric, performance


def performance_gates(y: Any, proba: Any, cfg: GatesConfig,
                      threads: int = 1) -> tuple[list[GateResult], dict[str, Any]]:
    """Absolute hold-out quality: each configured metric judged on the bound of its bootstrap interval (resamples
    on ``threads`` threads)."""
    b, perf = cfg.bootstrap, cfg.performance
    estimates = performance(y, proba, b.samples, b.confidence, b.seed, perf.recall_at_precision,
                            perf.calibration_bins, perf.relative_precision, names=list(perf.thresholds),
                            threads=threads)
    base = float(np.mean(y)) if len(y) else float("nan")
    bins = perf.calibration_bins
    results = [check("performance", name, name, threshold, estimates[name].point,
                     (estimates[name].low, estimates[name].high), b.confidence,
                     detail=f"{describe_metric(name, perf.recall_at_precision, perf.relative_precision, bins)}; "
                            f"{estimates[name].point:.4f} [{estimates[name].low:.4f}, {estimates[name].high:.4f}] on "
                            f"{len(y)} hold-out rows, base rate {base:.4f}")
               for name, threshold in perf.thresholds.items()]
    report = {name: e.to_dict() for name, e in estimates.items()}
    return results, {**report, "base_rate": {"point": base, "low": base, "high": base, "confidence": b.confidence}}


def _curves(y: np.ndarray, proba: np.ndarray, cfg: GatesConfig) -> dict[str, Any]:
    """ROC and calibration curves for the card."""
    from sklearn.calibration import calibration_curve

    from steps.modeling.metrics import curves

    observed, predicted = calibration_curve(y, proba, n_bins=cfg.performance.calibration_bins, strategy="quantile")
    return {**curves(y, proba, 100), "calibration": {"predicted": predicted.tolist(), "observed": observed.tolist()}}
