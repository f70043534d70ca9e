"""Robustness gates: edge cases, perturbations and quality with missing values, on both sides of each gate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.config import CandidateConfig, DatasetConfig, RobustnessGates, load_file
from steps.data import synth
from steps.data.contract import validate
from steps.gates.robustness import UNSEEN, edge_cases, is_discrete, robustness_gates
from steps.modeling import models

ROOT = Path(__file__).resolve().parents[2]
CFG = RobustnessGates(sample_rows=600)
GATES = ["edge_cases_no_error", "edge_cases_finite_in_unit_interval", "perturbation_mean_abs_change",
         "perturbation_p99_abs_change", "auc_with_missing_values"]


@pytest.fixture(scope="module")
def spec() -> DatasetConfig:
    """The real ``config/dataset.yaml``."""
    return load_file(DatasetConfig, ROOT / "config" / "dataset.yaml")


@pytest.fixture(scope="module")
def frame(spec: DatasetConfig) -> pd.DataFrame:
    """6,000 validated synthetic rows (float numerics, object categoricals, as the flows see them)."""
    return validate(synth.generate(synth.SynthSpec(rows=6000, seed=5, row_group_rows=3000)), spec, "fixture")


@pytest.fixture(scope="module")
def holdout(frame: pd.DataFrame) -> pd.DataFrame:
    """The most recent 2,000 rows."""
    return frame.iloc[4000:].reset_index(drop=True)


@pytest.fixture(scope="module")
def predict(frame: pd.DataFrame, spec: DatasetConfig) -> Callable[[pd.DataFrame], np.ndarray]:
    """A logistic-regression pipeline fitted on the first 4,000 rows, as a predict callable."""
    candidate = CandidateConfig(name="logreg", type="logistic_regression", params={"C": 0.5})
    pipeline, _ = models.fit(models.build_pipeline(candidate, spec, seed=0, threads=1), frame.iloc[:4000], spec, 1)
    return lambda f: pipeline.predict_proba(f[spec.features])[:, 1]  # no threadpool_limits: ~4 ms less per call


def by_name(results: list) -> dict:
    """Gate results keyed by name."""
    return {r.name: r for r in results}


# ------------------------------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("case, column, expected", [
    ("min:amount", "amount", 0.0),
    ("max:amount", "amount", 100_000.0),
    ("10x_max:amount", "amount", 1_000_000.0),
    ("below_min:hour", "hour", -23.0),
    ("missing:km_from_home", "km_from_home", None),
    ("missing:channel", "channel", None),
    ("unseen:channel", "channel", UNSEEN),
    ("empty:merchant_category", "merchant_category", ""),
    ("time:epoch", "event_time", pd.Timestamp(0, unit="s", tz="UTC")),
    ("time:far_future", "event_time", pd.Timestamp("2262-01-01", tz="UTC")),
])
def test_each_edge_case_changes_one_value_of_the_base_row(spec, holdout, case, column, expected):
    cases = edge_cases(spec, holdout.iloc[[3]]).set_index("case")
    row, base = cases.loc[case], cases.loc["base"]
    assert pd.isna(row[column]) if expected is None else row[column] == expected
    unchanged = [c for c in holdout.columns if c != column]
    pd.testing.assert_series_equal(row[unchanged], base[unchanged], check_names=False)


def test_edge_cases_cover_every_feature_once_per_kind(spec, holdout):
    cases = edge_cases(spec, holdout.iloc[[0]])
    labels = cases["case"].tolist()
    assert len(labels) == len(set(labels))
    assert {f"missing:{f}" for f in spec.features} <= set(labels)
    assert {f"{k}:{n}" for n in spec.numeric for k in ("min", "max", "10x_max", "below_min")} <= set(labels)
    assert {f"{k}:{c}" for c in spec.categorical for k in ("unseen", "empty")} <= set(labels)
    assert cases.set_index("case").loc["all_missing", spec.features].isna().all()
    assert list(cases.columns[:-1]) == list(holdout.columns)


def test_numeric_without_range_gets_only_the_missing_case(spec, holdout):
    open_spec = spec.model_copy(update={"numeric": {"amount": spec.numeric["amount"].model_copy(
        update={"min": None, "max": None})}})
    labels = set(edge_cases(open_spec, holdout.iloc[[0]])["case"])
    assert "missing:amount" in labels and not {"min:amount", "max:amount", "10x_max:amount"} & labels


def test_whole_number_columns_are_detected_whatever_the_dtype(holdout):
    assert is_discrete(holdout["txn_count_1h"]) and holdout["txn_count_1h"].dtype == "float64"
    assert not is_discrete(holdout["amount"])


# ------------------------------------------------------------------------------------------------- gates
def test_a_sound_model_passes_every_gate(predict, holdout, spec):
    results, report = robustness_gates(predict, holdout, spec, CFG, seed=0)
    assert [r.name for r in results] == GATES
    assert all(r.suite == "robustness" and r.gated and r.passed for r in results), [r for r in results if not r.passed]
    json.dumps(report, allow_nan=False)
    assert report["missing"]["rows"] == CFG.sample_rows
    assert all(c["error"] is None and 0.0 <= c["score"] <= 1.0 for c in report["edge_cases"]["cases"])


def _raise_on_missing(predict):
    def wrapped(f):
        if f.isna().any().any():
            raise ValueError("missing values are not supported")
        return predict(f)
    return wrapped


def _nan_on_missing(predict):
    return lambda f: np.where(f.isna().any(axis=1), np.nan, predict(f))


def _raise_on_unseen(predict):
    def wrapped(f):
        if f["channel"].eq(UNSEEN).any():
            raise KeyError("unknown channel")
        return predict(f)
    return wrapped


def _shifted(predict):
    return lambda f: predict(f) - 0.5  # most scores below 0


def _wrong_length(predict):
    return lambda f: np.append(predict(f), 0.5)


def _jittery(predict):
    rng = np.random.default_rng(1)
    return lambda f: np.clip(predict(f) + rng.normal(0, 0.2, len(f)), 0, 1)


def _random_when_missing(predict):
    rng = np.random.default_rng(2)
    return lambda f: np.where(f[["amount", "hour"]].isna().any(axis=1), rng.uniform(size=len(f)), predict(f))


@pytest.mark.parametrize("wrap, failing, detail", [
    (_raise_on_missing, {"edge_cases_no_error", "perturbation_mean_abs_change", "perturbation_p99_abs_change",
                         "auc_with_missing_values"},
     "first failing case 'missing:amount': ValueError: missing values are not supported"),
    (_nan_on_missing, {"edge_cases_finite_in_unit_interval", "auc_with_missing_values",
                       "perturbation_mean_abs_change", "perturbation_p99_abs_change"}, "missing:amount"),
    (_raise_on_unseen, {"edge_cases_no_error"}, "first failing case 'unseen:channel': KeyError"),
    (_shifted, {"edge_cases_finite_in_unit_interval"}, "non-finite or outside [0, 1]: base"),
    (_wrong_length, {"edge_cases_no_error", "edge_cases_finite_in_unit_interval", "perturbation_mean_abs_change",
                     "perturbation_p99_abs_change", "auc_with_missing_values"}, "predict returned 2 scores for 1 rows"),
    (_jittery, {"perturbation_mean_abs_change", "perturbation_p99_abs_change"}, "noise std 0.01"),
    (_random_when_missing, {"auc_with_missing_values"}, "10% of each feature's cells missing"),
], ids=["raise_on_missing", "nan_on_missing", "raise_on_unseen", "shifted", "wrong_length", "jittery",
        "random_when_missing"])
def test_a_fragile_model_fails_the_right_gates(predict, holdout, spec, wrap, failing, detail):
    results = by_name(robustness_gates(wrap(predict), holdout, spec, CFG, seed=0)[0])
    assert {n for n, r in results.items() if not r.passed} == failing
    assert any(detail in results[n].detail for n in failing), {n: results[n].detail for n in failing}


def test_nan_scores_fail_only_the_finite_gate_on_edge_cases(predict, holdout, spec):
    results = by_name(robustness_gates(_nan_on_missing(predict), holdout, spec, CFG, seed=0)[0])
    assert results["edge_cases_no_error"].passed
    finite = results["edge_cases_finite_in_unit_interval"]
    assert finite.actual == len(spec.features) + 1  # one missing:<feature> case each, plus all_missing
    assert "missing:amount" in finite.detail and "unseen:channel" not in finite.detail


def test_raising_cases_are_not_double_counted_as_invalid_scores(predict, holdout, spec):
    results = by_name(robustness_gates(_raise_on_missing(predict), holdout, spec, CFG, seed=0)[0])
    assert results["edge_cases_finite_in_unit_interval"].passed
    assert "not checked" in results["edge_cases_finite_in_unit_interval"].detail
    assert results["auc_with_missing_values"].actual is None


def test_a_predict_that_always_raises_fails_every_gate_without_raising(holdout, spec):
    def broken(f):
        raise RuntimeError("model file is corrupt")
    results = robustness_gates(broken, holdout, spec, CFG, seed=0)[0]
    assert not any(r.passed for r in results) and len(results) == len(GATES)
    details = {r.name: r.detail for r in results}
    assert details.pop("edge_cases_finite_in_unit_interval").startswith("no edge case produced a score")
    assert all("RuntimeError: model file is corrupt" in d for d in details.values()), details


def test_one_class_sample_reports_the_missing_gate_without_gating_it(predict, holdout, spec):
    negatives = holdout[holdout[spec.target.name] == 0]
    results = by_name(robustness_gates(predict, negatives, spec, CFG, seed=0)[0])
    assert not results["auc_with_missing_values"].gated
    assert "one class" in results["auc_with_missing_values"].detail


def test_results_are_reproducible_for_a_seed(predict, holdout, spec):
    first = [r.actual for r in robustness_gates(predict, holdout, spec, CFG, seed=4)[0]]
    assert first == [r.actual for r in robustness_gates(predict, holdout, spec, CFG, seed=4)[0]]
