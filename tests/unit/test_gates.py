"""GateResult, thresholds on interval bounds, the verdict, and the performance and champion gates on both sides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from steps.config import GatesConfig, Threshold
from steps.gates.champion import champion_gates
from steps.gates.performance import performance_gates
from steps.gates.result import GateResult, Verdict, describe, judge


@pytest.mark.parametrize("threshold,point,interval,passed,judged", [
    (Threshold(min=0.8, bound="lower"), 0.85, (0.79, 0.9), False, 0.79),  # the point clears it, the bound does not
    (Threshold(min=0.8, bound="lower"), 0.85, (0.81, 0.9), True, 0.81),
    (Threshold(min=0.8, bound="point"), 0.85, (0.70, 0.9), True, 0.85),
    (Threshold(max=0.1, bound="upper"), 0.05, (0.02, 0.11), False, 0.11),
    (Threshold(max=0.1, bound="upper"), 0.05, (0.02, 0.09), True, 0.09),
    (Threshold(max=0.1), 0.1, None, True, 0.1),  # limits are inclusive
])
def test_judge_uses_the_named_bound(threshold, point, interval, passed, judged):
    assert judge(threshold, point, interval) == (passed, pytest.approx(judged))


@pytest.mark.parametrize("threshold,confidence,text", [
    (Threshold(min=0.8, bound="lower"), 0.95, ">= 0.8 (lower 95% bound)"),
    (Threshold(max=0.02, bound="upper"), 0.9, "<= 0.02 (upper 90% bound)"),
    (Threshold(max=5), None, "<= 5"),
])
def test_describe(threshold, confidence, text):
    assert describe(threshold, confidence) == text


def test_threshold_needs_exactly_one_side():
    with pytest.raises(ValueError, match="exactly one of min or max"):
        Threshold(min=0.1, max=0.2)
    with pytest.raises(ValueError, match="exactly one of min or max"):
        Threshold()


def test_verdict_ignores_ungated_failures_and_summarizes_by_suite():
    results = [GateResult("performance", "roc_auc", "roc_auc", ">= 0.8", 0.9, True),
               GateResult("fairness", "dp[tiny]", "dp", "<= 0.1", 0.5, False, gated=False),
               GateResult("efficiency", "latency_p50_ms", "p50", "<= 10", 20.0, False)]
    verdict = Verdict(results)
    assert not verdict.passed and [r.name for r in verdict.failed] == ["latency_p50_ms"]
    summary = verdict.summary()
    assert summary["suites"]["fairness"] == {"checks": 1, "failed": 0}
    assert summary["failed"] == ["efficiency/latency_p50_ms"]
    assert json.loads(verdict.to_json())["results"][1]["gated"] is False
    assert Verdict(results[:2]).passed


@pytest.fixture(scope="module")
def cfg() -> GatesConfig:
    return GatesConfig.model_validate({
        "bootstrap": {"samples": 100},
        "performance": {"thresholds": {"roc_auc": {"min": 0.75, "bound": "lower"},
                                       "brier": {"max": 0.1, "bound": "upper"}}},
    })


def _data(signal: float, n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.1).astype(int)
    logit = -2.5 + signal * (y - 0.1) * 4 + rng.normal(size=n)
    return y, 1 / (1 + np.exp(-logit))


@pytest.mark.parametrize("signal,passes", [(1.5, True), (0.2, False)])
def test_performance_gates_on_both_sides(cfg, signal, passes):
    y, p = _data(signal)
    results, report = performance_gates(y, p, cfg)
    auc = next(r for r in results if r.name == "roc_auc")
    assert auc.passed is passes
    assert auc.interval[0] <= auc.actual <= auc.interval[1]
    assert set(report) == {*cfg.performance.thresholds, "base_rate"}  # only what is gated is computed


@pytest.mark.parametrize("method,test", [("auto", "delong"), ("delong", "delong"),
                                         ("paired_bootstrap", "paired_bootstrap")])
@pytest.mark.parametrize("champion_signal,challenger_signal,significant", [(0.5, 1.5, True), (1.0, 1.0, False)])
def test_champion_gate_significance_on_both_sides(cfg, method, test, champion_signal, challenger_signal,
                                                  significant):
    y, p_champ = _data(champion_signal, seed=1)
    _, p_chal = _data(challenger_signal, seed=1) if champion_signal != challenger_signal else (y, p_champ.copy())
    chosen = cfg.model_copy(update={"champion": cfg.champion.model_copy(update={"method": method})})
    results, comparison = champion_gates(y, p_chal, p_champ, chosen, "42", [], (1.0, 1.0))
    assert results[0].name == "significantly_better[roc_auc]" and results[0].passed is significant
    assert "run 42" in results[0].detail and comparison["method"] == test and f"({test})" in results[0].threshold


@pytest.mark.parametrize("metric,method,test", [
    ("roc_auc", "auto", "delong"),
    ("average_precision", "auto", "paired_bootstrap"),  # DeLong's test is for AUCs only
    ("average_precision", "paired_bootstrap", "paired_bootstrap"),
    ("roc_auc", "paired_bootstrap", "paired_bootstrap"),
])
def test_champion_test_follows_the_primary_metric(metric, method, test):
    gates = GatesConfig.model_validate({"primary_metric": metric, "champion": {"method": method},
                                        "performance": {"thresholds": {"roc_auc": {"min": 0.5}}}})
    assert gates.champion_test() == test


def test_delong_on_another_primary_metric_is_refused():
    with pytest.raises(ValueError, match="champion.method: delong tests ROC AUCs, but primary_metric is "
                                         "average_precision: use auto or paired_bootstrap"):
        GatesConfig.model_validate({"primary_metric": "average_precision", "champion": {"method": "delong"},
                                    "performance": {"thresholds": {"roc_auc": {"min": 0.5}}}})


@pytest.mark.parametrize("low,passes", [(0.01, True), (0.03, False)])
def test_champion_fairness_widening_on_both_sides(cfg, low, passes):
    y, p = _data(1.0)
    widening = [{"name": "equalized_odds_difference[region]", "champion": 0.1, "challenger": 0.2,
                 "widening": 0.1, "low": low, "high": 0.2}]
    results, _ = champion_gates(y, p, p, cfg, "1", widening, (1.0, 1.0))
    fair = next(r for r in results if r.name.startswith("not_less_fair"))
    assert fair.passed is passes and fair.interval == (low, 0.2)


@pytest.mark.parametrize("latency,passes", [((1.4, 1.0), True), ((1.6, 1.0), False)])
def test_champion_latency_on_both_sides(cfg, latency, passes):
    y, p = _data(1.0)
    results, _ = champion_gates(y, p, p, cfg, "1", [], latency)
    assert next(r for r in results if r.name == "not_slower[p50_ms]").passed is passes


def test_champion_latency_switched_off_is_reported_not_gated(cfg):
    y, p = _data(1.0)
    off = cfg.model_copy(update={"champion": cfg.champion.model_copy(update={"latency_tolerance": None})})
    results, _ = champion_gates(y, p, p, off, "1", [], (9.0, 1.0))  # nine times slower
    latency = next(r for r in results if r.name == "not_slower[p50_ms]")
    assert latency.gated is False and latency.actual == 9.0 and "off" in latency.threshold
