"""Gate results and the verdict: a model's promotion decision as plain data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from steps.config import DatasetConfig, GatesConfig, Threshold


@dataclass(frozen=True)
class GateResult:
    """One check: what was measured, against which threshold, and whether it passed."""

    suite: str  # performance | fairness | robustness | efficiency | review | champion
    name: str
    metric: str
    threshold: str  # human-readable, e.g. ">= 0.75 (lower 95% bound)"
    actual: float | None
    passed: bool
    interval: tuple[float, float] | None = None
    detail: str = ""
    gated: bool = True  # False: reported only (e.g. a slice below the minimum size)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for artifacts and JSON."""
        out = asdict(self)
        out["interval"] = list(self.interval) if self.interval is not None else None
        return out


def judge(threshold: Threshold, point: float, interval: tuple[float, float] | None = None) -> tuple[bool, float]:
    """Apply ``threshold`` to the bound it names; returns (passed, the value judged)."""
    value = point
    if interval is not None and threshold.bound != "point":
        value = interval[0] if threshold.bound == "lower" else interval[1]
    passed = (threshold.min is None or value >= threshold.min) and (threshold.max is None or value <= threshold.max)
    return bool(passed), float(value)


def describe(threshold: Threshold, confidence: float | None = None) -> str:
    """``threshold`` as text, e.g. '>= 0.75 (lower 95% bound)'."""
    op, limit = (">=", threshold.min) if threshold.min is not None else ("<=", threshold.max)
    if threshold.bound == "point" or confidence is None:
        return f"{op} {limit:g}"
    return f"{op} {limit:g} ({threshold.bound} {confidence:.0%} bound)"


def check(suite: str, name: str, metric: str, threshold: Threshold, point: float,
          interval: tuple[float, float] | None = None, confidence: float | None = None,
          detail: str = "", gated: bool = True) -> GateResult:
    """Build the GateResult of ``point`` (with its interval) against ``threshold``."""
    passed, _ = judge(threshold, point, interval)
    return GateResult(suite=suite, name=name, metric=metric, threshold=describe(threshold, confidence),
                      actual=float(point), passed=passed, interval=interval, detail=detail,
                      gated=gated)


@dataclass(frozen=True)
class Verdict:
    """All gate results and the decision they imply."""

    results: list[GateResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every gated check passed."""
        return all(r.passed for r in self.results if r.gated)

    @property
    def failed(self) -> list[GateResult]:
        """The gated checks that failed."""
        return [r for r in self.results if r.gated and not r.passed]

    def summary(self) -> dict[str, Any]:
        """Counts per suite and the failed checks' names, for the audit log and the card."""
        suites: dict[str, dict[str, int]] = {}
        for r in self.results:
            s = suites.setdefault(r.suite, {"checks": 0, "failed": 0})
            s["checks"] += 1
            s["failed"] += int(r.gated and not r.passed)
        return {"passed": self.passed, "suites": suites, "failed": [f"{r.suite}/{r.name}" for r in self.failed]}

    def to_json(self) -> str:
        """The verdict as JSON: summary plus every result."""
        return json.dumps({**self.summary(), "results": [r.to_dict() for r in self.results]}, indent=2)


def combine(groups: Iterable[list[GateResult]]) -> Verdict:
    """One verdict from the results of every suite."""
    return Verdict([r for group in groups for r in group])


# --------------------------------------------------------------------------------------------------- suites
def performance_gates(y: Any, proba: Any, cfg: GatesConfig) -> tuple[list[GateResult], dict[str, Any]]:
    """Absolute hold-out quality: each configured metric judged on the bound of its bootstrap interval."""
    from steps import stats

    b, perf = cfg.bootstrap, cfg.performance
    estimates = stats.performance(y, proba, b.samples, b.confidence, b.seed, perf.recall_at_precision,
                                  perf.calibration_bins)
    results = [check("performance", name, name, threshold, estimates[name].point,
                     (estimates[name].low, estimates[name].high), b.confidence,
                     detail=f"{name} {estimates[name].point:.4f} [{estimates[name].low:.4f}, "
                            f"{estimates[name].high:.4f}] on {len(y)} hold-out rows")
               for name, threshold in perf.thresholds.items()]
    return results, {name: e.to_dict() for name, e in estimates.items()}


def champion_gates(y: Any, p_challenger: Any, p_champion: Any, cfg: GatesConfig, champion_run: str,
                   fairness: list[dict[str, Any]],
                   latency_p50: tuple[float, float]) -> tuple[list[GateResult], dict[str, Any]]:
    """Challenger versus champion on the same hold-out: significance, fairness and latency non-inferiority.

    Args:
        fairness: paired-bootstrap disparity comparisons (``fairness.compare_disparities``). A disparity blocks
            promotion when it is clearly wider: the lower bound of its widening exceeds the tolerance (group
            rates on a hold-out are noisy; a point comparison would block good models on sampling noise alone).
        latency_p50: (challenger, champion) single-row median latency in ms (the median: p99 over a few hundred
            calls on a shared machine is too noisy to compare two models).
    """
    from steps import stats

    c = cfg.champion
    if c.method == "delong":
        comparison = stats.delong(y, p_champion, p_challenger)
    else:
        comparison = stats.paired_bootstrap(y, p_champion, p_challenger, cfg.primary_metric,
                                            max(cfg.bootstrap.samples, 500), cfg.bootstrap.confidence,
                                            cfg.bootstrap.seed)
    results = [GateResult(
        suite="champion", name=f"significantly_better[{comparison.metric}]",
        metric=f"{comparison.metric} difference (challenger - champion)",
        threshold=f">= {c.min_effect:g} and p < {c.alpha:g} ({comparison.method})",
        actual=comparison.difference, interval=(comparison.low, comparison.high),
        passed=comparison.significant(c.alpha, c.min_effect),
        detail=f"challenger {comparison.challenger:.4f} vs champion {comparison.champion:.4f} "
               f"(run {champion_run}), one-sided p = {comparison.p_value:.4f}")]
    for f in fairness:
        results.append(GateResult(
            "champion", f"not_less_fair[{f['name']}]", f"{f['name']} widening (challenger - champion)",
            f"lower bound <= {c.fairness_tolerance:g}", f["widening"], bool(f["low"] <= c.fairness_tolerance),
            interval=(f["low"], f["high"]),
            detail=f"challenger {f['challenger']:.4f} vs champion {f['champion']:.4f}"))
    limit = latency_p50[1] * (1 + c.latency_tolerance)
    results.append(GateResult("champion", "not_slower[p50_ms]", "p50_ms", f"<= {limit:.3f} (champion "
                              f"{latency_p50[1]:.3f} x {1 + c.latency_tolerance:g})", latency_p50[0],
                              bool(latency_p50[0] <= limit)))
    return results, comparison.to_dict()


# --------------------------------------------------------------------------------------------------- all suites
@dataclass(frozen=True)
class Assessment:
    """The verdict and the report behind it (JSON-able), for artifacts and cards."""

    verdict: Verdict
    report: dict[str, Any]


def _model_checks(model: Any, blob: bytes, holdout: pd.DataFrame, spec: DatasetConfig,
                  cfg: GatesConfig) -> tuple[np.ndarray, list[GateResult], dict[str, Any]]:
    """Every suite that looks at one model alone: performance, fairness, robustness, efficiency, review."""
    from steps import efficiency, fairness, models, robustness

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return models.predict_proba(model, frame, spec)

    y = holdout[spec.target.name].to_numpy()
    try:
        proba = predict(holdout)
        if not np.isfinite(proba).all():
            raise ValueError(f"{int((~np.isfinite(proba)).sum())} non-finite scores")
    except Exception as err:  # a model that cannot score the hold-out fails here, it never crashes the flow
        failed = GateResult("robustness", "holdout_scoring", "scores every hold-out row", "no error, all finite",
                            None, False, detail=f"{type(err).__name__}: {err}"[:500])
        return np.full(len(y), np.nan), [failed], {"performance": {}, "fairness": {}, "robustness": {},
                                                   "efficiency": {"p50_ms": float("nan"), "p99_ms": float("nan")}}
    perf, perf_report = performance_gates(y, proba, cfg)
    fair, fair_report = fairness.fairness_gates(y, proba, holdout[spec.sensitive], cfg.fairness,
                                                cfg.decision_threshold)
    robust, robust_report = robustness.robustness_gates(predict, holdout, spec, cfg.robustness, cfg.bootstrap.seed)
    with threadpool_limits(limits=1):  # one limit around the loop: per-call limits would add ~4 ms per row
        measured = efficiency.measure(lambda f: model.predict_proba(f[spec.features])[:, 1], holdout, blob,
                                      cfg.efficiency)
    eff = efficiency.efficiency_gates(measured, cfg.efficiency)
    review = efficiency.review_gates(proba, cfg.review)
    report = {"performance": perf_report, "fairness": fair_report, "robustness": robust_report,
              "efficiency": measured}
    return proba, [*perf, *fair, *robust, *eff, *review], report


def assess(model: Any, blob: bytes, holdout: pd.DataFrame, spec: DatasetConfig, cfg: GatesConfig,
           champion: tuple[str, Any, bytes] | None = None) -> Assessment:
    """Run every gate suite on ``model`` and, when a champion ``(run_id, model, blob)`` exists, compare the two.

    With no champion the absolute gates decide; with one, the challenger must also be significantly better on
    the primary metric and no worse beyond tolerance on fairness and latency.
    """
    y = holdout[spec.target.name].to_numpy()
    proba, results, report = _model_checks(model, blob, holdout, spec, cfg)
    report["curves"] = {"challenger": _curves(y, proba, cfg)}
    if champion is not None and np.isfinite(proba).all():
        run_id, champ_model, champ_blob = champion
        champ_proba, champ_results, champ_report = _model_checks(champ_model, champ_blob, holdout, spec, cfg)
        from steps.fairness import compare_disparities

        widening = compare_disparities(y, champ_proba, proba, holdout[spec.sensitive], cfg.fairness,
                                       cfg.decision_threshold, cfg.bootstrap.samples, cfg.bootstrap.seed,
                                       cfg.bootstrap.confidence)
        comparison, compared = champion_gates(
            y, proba, champ_proba, cfg, run_id, widening,
            (report["efficiency"]["p50_ms"], champ_report["efficiency"]["p50_ms"]))
        results += comparison
        report["champion"] = {"run_id": run_id, "comparison": compared, "performance": champ_report["performance"],
                              "efficiency": champ_report["efficiency"]}
        report["curves"]["champion"] = _curves(y, champ_proba, cfg)
    return Assessment(Verdict(results), report)


def _curves(y: np.ndarray, proba: np.ndarray, cfg: GatesConfig) -> dict[str, Any]:
    """ROC and calibration curves for the card."""
    from sklearn.calibration import calibration_curve

    from steps.evaluate import curves

    observed, predicted = calibration_curve(y, proba, n_bins=cfg.performance.calibration_bins, strategy="quantile")
    return {**curves(y, proba, 100), "calibration": {"predicted": predicted.tolist(), "observed": observed.tolist()}}
