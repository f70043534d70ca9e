"""Every gate suite on one model, and the champion comparison: the only module that imports the suites."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from steps.config.dataset import DatasetConfig
from steps.config.gates import GatesConfig
from steps.core.progress import timed
from steps.gates.champion import champion_gates, unscored_gate
from steps.gates.efficiency import efficiency_gates, measure, paired_latency, unmeasured
from steps.gates.performance import _curves, performance_gates
from steps.gates.result import GateResult, Verdict
from steps.gates.review import review_gates

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    """The verdict and the report behind it (JSON-able), for artifacts and cards."""

    verdict: Verdict
    report: dict[str, Any]
    scores: np.ndarray | None = None  # the model's hold-out scores (NaN when it could not score), for the profile


def _serving(model: Any, spec: DatasetConfig) -> Callable[[pd.DataFrame], np.ndarray]:
    """``model``'s scores as the efficiency gates time them: the pipeline itself, no thread limit per call."""
    return lambda frame: model.predict_proba(frame[spec.features])[:, 1]


def _model_checks(model: Any, blob: bytes, holdout: pd.DataFrame, spec: DatasetConfig, cfg: GatesConfig,
                  threshold: float, alone: bool = True, threads: int = 1,
                  latency: dict[str, float] | None = None) -> tuple[np.ndarray, list[GateResult], dict[str, Any]]:
    """Every suite that looks at one model alone: performance, fairness, robustness, efficiency, review.

    ``alone=False`` (the champion, whose own results are not gated): only what the comparison reports, performance
    and efficiency. ``threads`` score the hold-out and run the performance bootstrap's resamples; the efficiency
    gates measure one. ``latency``: single-row percentiles already measured (paired with the challenger's), not
    measured again.
    """
    from steps.gates import fairness, robustness
    from steps.modeling import models

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return models.predict_proba(model, frame, spec, threads)

    y = holdout[spec.target.name].to_numpy()
    try:
        with timed(logger, f"gates: scoring {len(holdout):,} hold-out rows on {threads} thread(s)"):
            proba = predict(holdout)
        if not np.isfinite(proba).all():
            raise ValueError(f"{int((~np.isfinite(proba)).sum())} non-finite scores")
    except Exception as err:  # a model that cannot score the hold-out fails here, it never crashes the flow
        failed = GateResult("robustness", "holdout_scoring", "scores every hold-out row", "no error, all finite",
                            None, False, detail=f"{type(err).__name__}: {err}"[:500])
        return np.full(len(y), np.nan), [failed], {"performance": {}, "fairness": {}, "robustness": {},
                                                   "efficiency": unmeasured()}
    with timed(logger, "gates: performance"):
        perf, perf_report = performance_gates(y, proba, cfg, threads)
    fair: list[GateResult] = []
    robust: list[GateResult] = []
    fair_report: dict[str, Any] = {}
    robust_report: dict[str, Any] = {}
    if alone:
        with timed(logger, "gates: fairness"):
            fair, fair_report = fairness.fairness_gates(y, proba, holdout[spec.sensitive], cfg.fairness, threshold)
        with timed(logger, "gates: robustness"), threadpool_limits(limits=1):  # ~100 small calls: one limit
            robust, robust_report = robustness.robustness_gates(_serving(model, spec), holdout, spec,
                                                                cfg.robustness, cfg.bootstrap.seed)
    with timed(logger, "gates: efficiency"), threadpool_limits(limits=1):  # per-call limits would add ~4 ms a row
        measured = measure(_serving(model, spec), holdout, blob, cfg.efficiency, latency)
    eff = efficiency_gates(measured, cfg.efficiency)
    review = review_gates(proba, cfg.review) if alone else []
    report = {"performance": perf_report, "fairness": fair_report, "robustness": robust_report,
              "efficiency": measured}
    return proba, [*perf, *fair, *robust, *eff, *review], report


def _paired(model: Any, champ_model: Any, holdout: pd.DataFrame, spec: DatasetConfig,
            cfg: GatesConfig) -> tuple[dict[str, float] | None, dict[str, Any]]:
    """Single-row latencies of the challenger and the champion, the two called in turn on the same rows (a host
    that slows down does so for both), or (None, ``unmeasured(why)``) when either cannot score one row: the challenger
    is then timed alone by its own checks (whose failures say why) and the champion's latency stays unmeasured."""
    try:
        with timed(logger, "gates: single-row latency of the challenger and the champion, in turn"), \
                threadpool_limits(limits=1):
            mine, theirs = paired_latency([_serving(model, spec), _serving(champ_model, spec)], holdout,
                                          cfg.efficiency)
    except Exception as err:  # noqa: BLE001 - a model that cannot score is a gate result, not a crash
        logger.warning("gates: latencies not timed in turn (%s: %s)", type(err).__name__, str(err)[:200])
        return None, unmeasured(f"single-row calls of the two models in turn failed: {type(err).__name__}: {err}")
    return mine, theirs


def assess(model: Any, blob: bytes, holdout: pd.DataFrame, spec: DatasetConfig, cfg: GatesConfig,
           champion: tuple[str, Any, bytes] | None = None, threshold: float = 0.5, threads: int = 1) -> Assessment:
    """Run every gate suite on ``model`` and, when a champion ``(run_id, model, blob)`` exists, compare the two.

    ``threshold`` is the model's decision threshold (fairness rates are measured at it; the champion's decisions too,
    so both models are compared at the same operating point). With no champion the gates decide alone; with one, the
    challenger must also be significantly better on the primary metric and no worse beyond tolerance on fairness and
    latency; the two models' single-row latencies are then timed in turn, once, and both the challenger's own
    latency gates and the comparison read that measurement. ``threads``: the cores of the step (the hold-out is
    scored on them, and the performance and disparity bootstraps' resamples run on them).
    """
    y = holdout[spec.target.name].to_numpy()
    mine, theirs = _paired(model, champion[1], holdout, spec, cfg) if champion is not None else (None, unmeasured())
    proba, results, report = _model_checks(model, blob, holdout, spec, cfg, threshold, threads=threads,
                                           latency=mine)
    report["curves"] = {"challenger": _curves(y, proba, cfg)}
    if champion is not None and np.isfinite(proba).all():
        run_id, champ_model, champ_blob = champion
        champ_proba, champ_failed, champ_report = _model_checks(champ_model, champ_blob, holdout, spec, cfg,
                                                                threshold, alone=False, threads=threads,
                                                                latency=theirs)
        report["champion"] = {"run_id": run_id, "comparison": None, "performance": champ_report["performance"],
                              "efficiency": champ_report["efficiency"]}  # timed in turn or not: latency_in_turn
        if not np.isfinite(champ_proba).all():  # its failure (the only result) says why
            results.append(unscored_gate(run_id, champ_failed[0].detail))
            report["champion"].update(error=champ_failed[0].detail, performance={})
            return Assessment(Verdict(results), report, proba)
        from steps.gates.fairness import compare_disparities

        with timed(logger, f"gates: comparing with champion run {run_id}"):
            widening = compare_disparities(y, champ_proba, proba, holdout[spec.sensitive], cfg.fairness,
                                           threshold, cfg.bootstrap.samples, cfg.bootstrap.seed,
                                           cfg.bootstrap.confidence, threads)
            comparison, compared = champion_gates(
                y, proba, champ_proba, cfg, run_id, widening, (report["efficiency"]["p50_ms"], theirs["p50_ms"]),
                cfg.efficiency.latency_rows if mine is not None else None, theirs.get("error"))
        results += comparison
        report["champion"]["comparison"] = compared
        report["curves"]["champion"] = _curves(y, champ_proba, cfg)
    return Assessment(Verdict(results), report, proba)
