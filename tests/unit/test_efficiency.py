"""Efficiency gates (latency, throughput, size, memory) and the review-band gate."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from steps.config import CandidateConfig, DatasetConfig, EfficiencyGates, GatesConfig, ReviewGates, load_file
from steps.core.decision import in_band
from steps.data import synth
from steps.gates.assess import assess
from steps.gates.efficiency import efficiency_gates, measure, paired_latency, unmeasured
from steps.gates.review import review_gates
from steps.modeling import models
from steps.reporting import cards

ROOT = Path(__file__).resolve().parents[2]
CFG = EfficiencyGates(latency_rows=20, batch_rows=200)
KEYS = {"p50_ms", "p99_ms", "rows_per_s", "size_mb", "peak_memory_mb", "latency_rows", "latency_in_turn",
        "batch_rows", "clock"}
GATES = ["latency_p50_ms", "latency_p99_ms", "throughput_rows_per_s", "serialized_size_mb", "peak_memory_mb"]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """300 raw synthetic rows."""
    return synth.generate(synth.SynthSpec(rows=300, seed=9))


def fast(frame: pd.DataFrame) -> np.ndarray:
    """A constant scorer: microseconds per call."""
    return np.full(len(frame), 0.5)


def slow(frame: pd.DataFrame) -> np.ndarray:
    """30 ms of CPU work per call, whatever the batch size."""
    end = time.process_time() + 0.03
    while time.process_time() < end:
        pass
    return np.full(len(frame), 0.5)


def waiting(frame: pd.DataFrame) -> np.ndarray:
    """30 ms of waiting per call (I/O, a lock, another process on the core): no CPU work."""
    time.sleep(0.03)
    return np.full(len(frame), 0.5)


def hungry(frame: pd.DataFrame) -> np.ndarray:
    """Allocates about 40 MB (traced by tracemalloc through NumPy) while scoring."""
    scratch = np.ones((len(frame), 5_000_000 // max(len(frame), 1)))
    return np.full(len(frame), float(scratch[0, 0]) / 2)


def by_name(results: list) -> dict:
    """Gate results keyed by name."""
    return {r.name: r for r in results}


def test_a_fast_predict_passes_every_gate(rows):
    measured = measure(fast, rows, b"x" * 1000, CFG)
    assert set(measured) == KEYS
    assert measured["size_mb"] == pytest.approx(0.001)
    assert measured["batch_rows"] == 200 and measured["latency_rows"] == 20
    results = efficiency_gates(measured, CFG)
    assert [r.name for r in results] == GATES
    assert all(r.suite == "efficiency" and r.passed for r in results), [r for r in results if not r.passed]


def test_a_slow_predict_fails_latency_and_throughput(rows):
    cfg = EfficiencyGates(latency_rows=10, batch_rows=100)
    measured = measure(slow, rows, b"x", cfg)
    assert measured["p50_ms"] >= 30.0
    results = by_name(efficiency_gates(measured, cfg))
    assert not results["latency_p50_ms"].passed and not results["throughput_rows_per_s"].passed
    assert results["serialized_size_mb"].passed and results["peak_memory_mb"].passed
    assert "10 single-row calls" in results["latency_p50_ms"].detail and "CPU time" in results["latency_p50_ms"].detail


@pytest.mark.parametrize(("clock", "passes"), [("cpu", True), ("wall", False)])
def test_waiting_is_latency_on_the_wall_clock_only(rows, clock, passes):
    cfg = EfficiencyGates(latency_rows=10, batch_rows=100, clock=clock)
    measured = measure(waiting, rows, b"x", cfg)
    assert measured["clock"] == clock
    assert by_name(efficiency_gates(measured, cfg))["latency_p50_ms"].passed is passes


def test_peak_memory_counts_numpy_allocations_of_one_batch(rows):
    measured = measure(hungry, rows, b"x", CFG)
    assert 30.0 < measured["peak_memory_mb"] < 200.0
    assert not by_name(efficiency_gates(measured, EfficiencyGates(max_peak_memory_mb=10)))["peak_memory_mb"].passed


def test_tracing_started_elsewhere_is_left_running(rows):
    tracemalloc.start()
    try:
        measure(fast, rows, b"x", CFG)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    measure(fast, rows, b"x", CFG)
    assert not tracemalloc.is_tracing()


def test_single_row_calls_reuse_rows_when_there_are_few(rows):
    seen: list[int] = []

    def spy(frame: pd.DataFrame) -> np.ndarray:
        seen.append(len(frame))
        return fast(frame)

    measured = measure(spy, rows.iloc[:3], b"x", CFG)
    assert measured["batch_rows"] == 3
    assert seen.count(1) == 5 + CFG.latency_rows  # warm-up calls, then the timed ones


def test_latency_measured_elsewhere_is_not_measured_again(rows):
    seen: list[int] = []

    def spy(frame: pd.DataFrame) -> np.ndarray:
        seen.append(len(frame))
        return fast(frame)

    measured = measure(spy, rows, b"x", CFG, latency={"p50_ms": 7.0, "p99_ms": 9.0})
    assert (measured["p50_ms"], measured["p99_ms"]) == (7.0, 9.0) and 1 not in seen


def test_paired_latency_times_both_models_on_the_same_rows(rows):
    seen: dict[str, list[int]] = {"slow": [], "fast": []}

    def spy(name, predict):
        def call(frame: pd.DataFrame) -> np.ndarray:
            seen[name].append(int(frame.index[0]))
            return predict(frame)
        return call

    cfg = EfficiencyGates(latency_rows=10, batch_rows=200, clock="cpu")
    slow_latency, fast_latency = paired_latency([spy("slow", slow), spy("fast", fast)], rows, cfg)
    assert seen["slow"] == seen["fast"] == [0, 1, 2, 3, 4, *range(10)]  # warm-up turns, then one turn per row
    assert slow_latency["p50_ms"] >= 25.0 > fast_latency["p99_ms"]


def test_empty_rows_are_an_error():
    with pytest.raises(ValueError, match="at least one row"):
        measure(fast, pd.DataFrame(), b"x", CFG)


@pytest.mark.parametrize(("error", "kept"), [(None, None), ("", None), ("ValueError: bad row", "ValueError: bad row"),
                                             ("x" * 500, "x" * 300)])
def test_unmeasured_latencies_are_nan_and_keep_why(error, kept):
    out = unmeasured(error)
    assert np.isnan(out["p50_ms"]) and np.isnan(out["p99_ms"])
    assert out.get("error") == kept
    gates = {g.name: g for g in efficiency_gates({**measure(fast, pd.DataFrame({"a": [1]}), b"", CFG), **out}, CFG)}
    assert not gates["latency_p50_ms"].passed and not gates["latency_p99_ms"].passed
    assert ("not measured" in gates["latency_p50_ms"].detail) == (kept is not None)


def test_a_fitted_pipeline_is_measured(rows):
    spec = load_file(DatasetConfig, ROOT / "config" / "dataset.yaml")
    candidate = CandidateConfig(name="logreg", type="logistic_regression", params={"C": 0.5})
    pipeline, _ = models.fit(models.build_pipeline(candidate, spec, seed=0, threads=1), rows, spec, threads=1)
    blob = models.serialize(pipeline)
    measured = measure(lambda f: pipeline.predict_proba(f[spec.features])[:, 1], rows, blob, CFG)
    assert measured["size_mb"] == len(blob) / 1e6
    assert 0 < measured["p50_ms"] <= measured["p99_ms"] and measured["rows_per_s"] > 0
    assert measured["peak_memory_mb"] > 0


class SingleRowCounter:
    """A fitted pipeline that counts the one-row frames it scores."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline, self.single_rows = pipeline, 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.single_rows += len(frame) == 1
        return self.pipeline.predict_proba(frame)


class Unservable:
    """A champion whose schema no longer matches the data: it cannot score any row."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        raise KeyError("column 'legacy_feature' not in the frame")


class BatchOnly(SingleRowCounter):
    """A champion that scores batches but raises on a single row."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 1:
            raise ValueError("needs at least 2 rows")
        return self.pipeline.predict_proba(frame)


@pytest.fixture(scope="module")
def fitted() -> tuple[DatasetConfig, GatesConfig, pd.DataFrame, Any, bytes]:
    spec = load_file(DatasetConfig, ROOT / "config" / "dataset.yaml")
    gates = load_file(GatesConfig, ROOT / "tests" / "flows" / "configs" / "gates-small.yaml")
    frame = synth.generate(synth.SynthSpec(rows=3000, seed=4))
    candidate = CandidateConfig(name="logreg", type="logistic_regression", params={"C": 0.5})
    pipeline, _ = models.fit(models.build_pipeline(candidate, spec, seed=0, threads=1), frame, spec, threads=1)
    return spec, gates, frame, pipeline, models.serialize(pipeline)


def test_a_champion_is_compared_on_latencies_timed_in_turn_with_the_challengers(fitted):
    spec, gates, frame, pipeline, blob = fitted
    report = assess(pipeline, blob, frame, spec, gates, champion=("7", pipeline, blob), threshold=0.3)
    gate = next(r for r in report.verdict.results if r.name == "not_slower[p50_ms]")
    mine, theirs = report.report["efficiency"], report.report["champion"]["efficiency"]
    assert mine["latency_in_turn"] and theirs["latency_in_turn"]
    assert gate.actual == mine["p50_ms"] and f"champion {theirs['p50_ms']:.3f}" in gate.threshold
    assert gate.detail == (f"{gates.efficiency.latency_rows} single-row calls each, the two models in turn on the "
                           "same rows")
    own = next(r for r in report.verdict.results if r.name == "latency_p50_ms")  # its own gates read the same
    assert own.actual == mine["p50_ms"] and "in turn with the model compared" in own.detail


def test_with_a_champion_the_challenger_is_timed_once(fitted):
    spec, gates, frame, pipeline, blob = fitted
    alone, compared = SingleRowCounter(pipeline), SingleRowCounter(pipeline)
    assess(alone, blob, frame, spec, gates, threshold=0.3)
    assess(compared, blob, frame, spec, gates, champion=("7", pipeline, blob), threshold=0.3)
    assert compared.single_rows == alone.single_rows > gates.efficiency.latency_rows  # edge cases, warm-up, timed


def test_a_champion_that_cannot_score_blocks_promotion_and_says_why(fitted):
    spec, gates, frame, pipeline, blob = fitted
    report = assess(pipeline, blob, frame, spec, gates, champion=("7", Unservable(), b"old"), threshold=0.3)
    results = {r.name: r for r in report.verdict.results}
    assert np.isfinite(report.report["efficiency"]["p50_ms"]) and not report.report["efficiency"]["latency_in_turn"]
    assert results["latency_p50_ms"].actual == report.report["efficiency"]["p50_ms"]  # timed alone instead
    gate = results["champion_scored"]
    assert not gate.passed and "champion run 7: KeyError" in gate.detail and "legacy_feature" in gate.detail
    assert "registry promote" in gate.detail and not report.verdict.passed
    assert not any(name.startswith(("significantly_better", "not_slower")) for name in results)  # nothing compared
    assert report.report["champion"]["comparison"] is None
    card = json.dumps([c.render() for c in cards.gates_card([r.to_dict() for r in report.verdict.results],
                                                            report.verdict.summary(), report.report)])
    assert "Champion (run 7) not compared" in card


def test_a_champion_without_single_row_latency_is_not_reported_as_timed_in_turn(fitted):
    spec, gates, frame, pipeline, blob = fitted
    report = assess(pipeline, blob, frame, spec, gates, champion=("7", BatchOnly(pipeline), blob), threshold=0.3)
    mine, theirs = report.report["efficiency"], report.report["champion"]["efficiency"]
    assert np.isfinite(mine["p50_ms"]) and not mine["latency_in_turn"]  # the challenger timed alone
    assert np.isnan(theirs["p50_ms"]) and not theirs["latency_in_turn"] and np.isfinite(theirs["rows_per_s"])
    gate = next(r for r in report.verdict.results if r.name == "not_slower[p50_ms]")
    assert not gate.passed and "not compared: single-row calls of the two models in turn failed: ValueError: " \
        "needs at least 2 rows" in gate.detail and "--force" in gate.detail and not report.verdict.passed
    card = json.dumps([c.render() for c in cards.gates_card([r.to_dict() for r in report.verdict.results],
                                                            report.verdict.summary(), report.report)])
    assert "not compared: single-row calls of the two models in turn failed" in card


def test_a_model_that_fails_on_one_row_fails_its_latency_gates_instead_of_crashing(fitted):
    spec, gates, frame, pipeline, blob = fitted
    report = assess(BatchOnly(pipeline), blob, frame, spec, gates, threshold=0.3)
    results = {r.name: r for r in report.verdict.results}
    for name in ("latency_p50_ms", "latency_p99_ms"):
        assert not results[name].passed and np.isnan(results[name].actual)
        assert results[name].detail == "not measured: a single-row call failed (ValueError: needs at least 2 rows)"
    assert results["throughput_rows_per_s"].passed and not report.verdict.passed


BASE = {"p50_ms": 1.0, "p99_ms": 2.0, "rows_per_s": 1e5, "size_mb": 1.0, "peak_memory_mb": 10.0,
        "latency_rows": 200, "batch_rows": 20_000}


@pytest.mark.parametrize("key, gate, good, bad", [
    ("p50_ms", "latency_p50_ms", 20.0, 20.01),
    ("p99_ms", "latency_p99_ms", 50.0, 75.0),
    ("rows_per_s", "throughput_rows_per_s", 5_000.0, 4_999.0),
    ("size_mb", "serialized_size_mb", 50.0, 51.0),
    ("peak_memory_mb", "peak_memory_mb", 512.0, 600.0),
])
def test_each_gate_has_two_sides(key, gate, good, bad):
    cfg = EfficiencyGates()
    passing = by_name(efficiency_gates({**BASE, key: good}, cfg))
    failing = by_name(efficiency_gates({**BASE, key: bad}, cfg))
    assert all(r.passed for r in passing.values())
    assert {n for n, r in failing.items() if not r.passed} == {gate}
    assert failing[gate].actual == bad


# ------------------------------------------------------------------------------------------------- review
@pytest.mark.parametrize("proba, max_rate, passed, count", [
    ([0.1, 0.9, 0.2, 0.8], 0.0, True, 0),
    ([0.4, 0.6, 0.1, 0.9], 0.5, True, 2),  # both ends of the band are inside it
    ([0.4, 0.6, 0.5, 0.9], 0.5, False, 3),
    ([0.39, 0.61, np.nan, 0.5], 0.25, True, 1),  # NaN is never in the band
])
def test_review_rate_gate(proba, max_rate, passed, count):
    (result,) = review_gates(np.array(proba), ReviewGates(band=(0.4, 0.6), max_rate=max_rate))
    assert result.suite == "review" and result.passed is passed
    assert result.actual == pytest.approx(count / len(proba))
    assert result.detail.startswith(f"{count} of {len(proba)} scores in [0.4, 0.6]")


def test_in_band_is_the_flag_the_scorer_writes():
    assert in_band(np.array([0.3, 0.4, 0.55, 0.7]), (0.4, 0.6)).tolist() == [False, True, True, False]


def test_review_gate_on_no_scores_passes_with_zero_rate():
    (result,) = review_gates(np.array([]), ReviewGates())
    assert result.passed and result.actual == 0.0


def test_review_rate_without_a_budget_is_reported_not_gated():
    (result,) = review_gates(np.array([0.45, 0.5, 0.1]), ReviewGates())
    assert result.gated is False and result.actual == pytest.approx(2 / 3) and "no budget set" in result.detail
