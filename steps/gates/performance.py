"""Performance gates: absolute hold-out quality on the bound of a bootstrap interval."""

from __future__ import annotations

from typing import Any

import numpy as np

from steps.config.gates import GatesConfig
from steps.gates.result import GateResult, check
from steps.modeling.metrics import performance


def performance_gates(y: Any, proba: Any, cfg: GatesConfig) -> tuple[list[GateResult], dict[str, Any]]:
    """Absolute hold-out quality: each configured metric judged on the bound of its bootstrap interval."""
    b, perf = cfg.bootstrap, cfg.performance
    estimates = performance(y, proba, b.samples, b.confidence, b.seed, perf.recall_at_precision,
                            perf.calibration_bins)
    results = [check("performance", name, name, threshold, estimates[name].point,
                     (estimates[name].low, estimates[name].high), b.confidence,
                     detail=f"{name} {estimates[name].point:.4f} [{estimates[name].low:.4f}, "
                            f"{estimates[name].high:.4f}] on {len(y)} hold-out rows")
               for name, threshold in perf.thresholds.items()]
    return results, {name: e.to_dict() for name, e in estimates.items()}


def _curves(y: np.ndarray, proba: np.ndarray, cfg: GatesConfig) -> dict[str, Any]:
    """ROC and calibration curves for the card."""
    from sklearn.calibration import calibration_curve

    from steps.modeling.metrics import curves

    observed, predicted = calibration_curve(y, proba, n_bins=cfg.performance.calibration_bins, strategy="quantile")
    return {**curves(y, proba, 100), "calibration": {"predicted": predicted.tolist(), "observed": observed.tolist()}}
