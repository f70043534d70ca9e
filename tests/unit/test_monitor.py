"""Drift statistics, moving baselines, signals and concept drift (steps/monitor.py)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from support import assert_a_save_between_check_and_write_loses

from steps.config import BaselineConfig, DriftConfig, FeedbackConfig, ReferenceConfig, StatisticThreshold
from steps.core.errors import UserError
from steps.data.contract import ScoreInputError, label_counts, label_values
from steps.modeling.reference import (
    _categorical_reference,
    _numeric_reference,
    categorical_shares,
    numeric_shares,
    sorted_shares,
)
from steps.monitoring.baseline import judge, judge_all, period_signals
from steps.monitoring.drift import (
    Measurement,
    _rate_measurement,
    chi2_p,
    feature_measurements,
    js_distance,
    ks_test,
    psi,
    schema_changes,
    window_dates,
)
from steps.monitoring.feedback import as_prediction_ids, concept_signals, read_labels
from steps.monitoring.state import false_alarm_rate, rules_before, window_signals

LIMIT = StatisticThreshold(static=0.2, floor=0.1)


def test_psi_of_identical_distributions_is_zero() -> None:
    shares = np.array([0.1, 0.2, 0.3, 0.4])
    assert psi(shares, shares) == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_the_textbook_formula() -> None:
    e, a = np.array([0.25, 0.25, 0.5]), np.array([0.1, 0.4, 0.5])
    expected = float(np.sum((a - e) * np.log(a / e)))
    assert psi(e, a) == pytest.approx(expected)


def test_psi_stays_finite_when_a_bin_empties() -> None:
    assert math.isfinite(psi(np.array([0.5, 0.5]), np.array([1.0, 0.0])))


@pytest.mark.parametrize(("e", "a", "expected"), [
    ([0.5, 0.5], [0.5, 0.5], 0.0),
    ([1.0, 0.0], [0.0, 1.0], 1.0),
    ([0.2, 0.8], [0.6, 0.4], float(jensenshannon([0.2, 0.8], [0.6, 0.4], base=2))),
])
def test_js_distance(e, a, expected) -> None:
    assert js_distance(np.array(e), np.array(a)) == pytest.approx(expected, abs=1e-9)


def test_numeric_shares_ignore_nulls_and_sum_to_one() -> None:
    shares = numeric_shares(np.array([0.0, 1.0, 2.0, 3.0, np.nan]), [1.5])
    assert shares.tolist() == [0.5, 0.5]


def _samples(kind: str, rng: np.random.Generator, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A reference and a period sample: continuous, tied integers, disjoint ranges, one repeated value."""
    if kind == "continuous":
        return rng.normal(size=m), rng.normal(rng.normal(), 1.0, size=n)
    if kind == "ties":
        return rng.integers(0, 5, m).astype(float), rng.integers(0, 7, n).astype(float)
    if kind == "period_above":
        return rng.integers(0, 3, m).astype(float), rng.normal(5.0, 1.0, n)
    if kind == "period_below":
        return rng.normal(5.0, 1.0, m), rng.integers(0, 3, n).astype(float)
    return np.full(m, 1.0), rng.integers(0, 3, n).astype(float)


@pytest.mark.parametrize("kind", ["continuous", "ties", "period_above", "period_below", "constant_reference"])
@pytest.mark.parametrize(("m", "n"), [(1, 1), (7, 3), (40, 900), (300, 5000)])
def test_ks_test_returns_what_scipy_ks_2samp_returns(kind, m, n) -> None:
    """Exactly (NaN p-values where scipy gives NaN: one value against one)."""
    rng = np.random.default_rng(m * n)
    for _ in range(20):
        reference, values = _samples(kind, rng, m, n)
        expected = stats.ks_2samp(reference, values, method="asymp")
        np.testing.assert_array_equal(ks_test(reference, np.sort(values)), (expected.statistic, expected.pvalue))


@pytest.mark.parametrize("edges", [[1.5], [0.0, 1.0, 1.0, 2.5], [-5.0], [10.0], [0.5, 1.5, 2.5, 3.5]])
def test_sorted_shares_equal_numeric_shares(edges) -> None:
    values = np.random.default_rng(len(edges)).integers(0, 4, 1000).astype(float)
    assert sorted_shares(np.sort(values), edges).tolist() == numeric_shares(values, edges).tolist()
    assert sorted_shares(np.array([]), edges).tolist() == numeric_shares(np.array([]), edges).tolist()


def test_categorical_shares_pool_unseen_levels_into_other() -> None:
    shares = categorical_shares(pd.Series(["a", "b", "zzz", None]), ["a", "b"])
    assert shares.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])


@pytest.mark.parametrize("shape", [(2, 2), (2, 3), (2, 11), (3, 4)])
@pytest.mark.parametrize("scale", [3, 40, 5000])
def test_chi2_p_is_what_scipy_chi2_contingency_returns(shape, scale) -> None:
    """Yates' correction at one degree of freedom included; fractional counts too (shares times a row count)."""
    rng = np.random.default_rng(shape[1] * scale)
    for _ in range(20):
        table = rng.random(shape) * scale + 0.5
        assert chi2_p(table) == pytest.approx(stats.chi2_contingency(table).pvalue, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("values", [["a", "b", "zzz", None, "b"], [1.0, 2.0, 2.0, None, 7.0], ["x", None],
                                    [None, None]])
@pytest.mark.parametrize("levels", [["a", "b"], ["1", "2", "b"], []])
def test_a_categorical_is_counted_from_its_codes_as_its_plain_values_are(values, levels) -> None:
    """How the monitor reads levels (pandas categoricals, counted from their codes) gives the labels, counts and
    shares of the plain values (unused and integral-float categories included)."""
    plain = pd.Series(values, dtype=object)
    coded = pd.Series(pd.Categorical(values, categories=sorted({v for v in values if v is not None} | {"unused"},
                                                               key=str)))
    np.testing.assert_allclose(categorical_shares(coded, levels), categorical_shares(plain, levels), rtol=1e-15)
    assert label_counts(coded).sort_index().to_dict() == label_counts(plain).sort_index().to_dict()
    assert label_values(coded).tolist() == label_values(plain).tolist()


def _profile(rng: np.random.Generator) -> dict:
    frame = pd.DataFrame({"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], size=5000)})
    cfg = ReferenceConfig()
    return {"features": {"x": _numeric_reference(frame["x"], cfg, rng),
                         "c": _categorical_reference(frame["c"], cfg)}}


def test_feature_measurements_see_a_shift_and_not_a_resample() -> None:
    rng = np.random.default_rng(0)
    profile = _profile(rng)
    same = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b", "c"], size=2000)})
    shifted = pd.DataFrame({"x": rng.normal(1.0, size=2000), "c": rng.choice(["a", "d"], size=2000)})
    quiet = {(m.subject, m.statistic): m.value for m in feature_measurements(profile, same)}
    loud = {(m.subject, m.statistic): m.value for m in feature_measurements(profile, shifted)}
    assert quiet[("x", "psi")] < 0.05 and loud[("x", "psi")] > 0.5
    assert quiet[("x", "ks")] < 0.05 and loud[("x", "ks")] > 0.3
    assert quiet[("c", "js")] < 0.05 and loud[("c", "js")] > 0.5


def test_null_rate_change_is_measured() -> None:
    profile = _profile(np.random.default_rng(1))
    frame = pd.DataFrame({"x": [np.nan] * 30 + [0.0] * 70, "c": ["a"] * 100})
    found = {(m.subject, m.statistic): m.value for m in feature_measurements(profile, frame)}
    assert found[("x", "null_rate_change")] == pytest.approx(0.3)


def test_schema_changes_name_the_missing_and_retyped_columns() -> None:
    profile = _profile(np.random.default_rng(2))
    problems = schema_changes(profile, ["x"], pd.DataFrame({"x": ["text"]}))
    assert len(problems) == 2 and problems[0] == "missing column c"
    assert problems[1].startswith("column x is ") and problems[1].endswith(", expected numeric")


@pytest.mark.parametrize(("values", "flagged"), [
    (["1.5", "2", None], None),  # numeric strings are numbers, as training and scoring read them
    ([None, None, None], None),
    ([True, False, True], None),
    (["1", "x", "x"], "'x'"),
    (["", "3", "n/a"], "'', 'n/a'"),
])
def test_a_numeric_column_is_retyped_only_when_it_holds_values_that_are_not_numbers(values, flagged) -> None:
    profile = _profile(np.random.default_rng(2))
    problems = schema_changes(profile, ["x", "c"], pd.DataFrame({"x": pd.Series(values, dtype=object), "c": "a"}))
    assert problems == ([] if flagged is None else
                        [f"column x is object with values that are not numbers ({flagged}), expected numeric"])


def _history(values: list[float], start: str = "2026-01-01") -> list[tuple[str, float]]:
    days = window_dates(pd.Timestamp(start).date().isoformat(), 1)
    first = pd.Timestamp(days[0])
    return [((first + pd.Timedelta(days=i)).date().isoformat(), v) for i, v in enumerate(values)]


def test_short_history_uses_the_static_threshold() -> None:
    breach, threshold, baseline, method = judge(0.25, _history([0.01] * 3), "2026-02-01", LIMIT,
                                                BaselineConfig())
    assert (breach, threshold, baseline, method) == (True, 0.2, None, "static")


def test_moving_baseline_flags_an_outlier_above_the_floor() -> None:
    history = _history([0.02, 0.03, 0.025, 0.03, 0.02, 0.028, 0.022])
    assert judge(0.15, history, "2026-02-01", LIMIT, BaselineConfig())[0] is True
    assert judge(0.035, history, "2026-02-01", LIMIT, BaselineConfig())[0] is False


def test_the_floor_stops_tiny_changes_from_breaching_a_flat_history() -> None:
    history = _history([0.001] * 10)
    breach, threshold, _, method = judge(0.05, history, "2026-02-01", LIMIT, BaselineConfig())
    assert (breach, threshold, method) == (False, 0.1, "moving")


def test_a_noisy_history_raises_its_own_threshold() -> None:
    history = _history([0.05, 0.3, 0.1, 0.4, 0.08, 0.35, 0.12])
    breach, threshold, _, _ = judge(0.45, history, "2026-02-01", LIMIT, BaselineConfig())
    assert threshold > 0.45 and not breach  # the static 0.2 would have fired


def test_only_earlier_periods_count_as_history() -> None:
    history = _history([0.01] * 5 + [0.9] * 5)  # the later, large values are in the future of 2026-01-06
    breach, _, baseline, method = judge(0.5, history, "2026-01-06", LIMIT, BaselineConfig())
    assert method == "moving" and baseline == pytest.approx(0.01) and breach


def test_percentile_method() -> None:
    history = _history(list(np.linspace(0.1, 0.2, 20)))
    cfg = BaselineConfig(method="percentile", percentile=90.0, history=20)
    assert judge(0.195, history, "2026-03-01", LIMIT, cfg)[1] == pytest.approx(np.percentile(
        np.linspace(0.1, 0.2, 20), 90))


def test_seasonal_baseline_compares_the_same_weekday() -> None:
    # Mondays are always high (0.5), other days low: a Monday at 0.5 is normal only for the seasonal baseline.
    values = [(d.date().isoformat(), 0.5 if d.weekday() == 0 else 0.01)
              for d in pd.date_range("2026-01-01", periods=60, freq="D")]
    monday = "2026-03-02"
    seasonal = BaselineConfig(seasonal=True, min_history=5, history=14)
    assert judge(0.5, values, monday, LIMIT, seasonal)[0] is False
    assert judge(0.5, values, monday, LIMIT, BaselineConfig(min_history=5, history=14))[0] is True


def test_ignored_features_are_reported_not_judged() -> None:
    m = Measurement("feature_drift", "day_of_week", "psi", 5.0)
    judged = judge_all([m], {}, "2026-01-01", DriftConfig(ignore=["day_of_week"]), BaselineConfig())
    assert judged[0].method == "ignored" and not judged[0].breach and judged[0].value == 5.0


def test_an_insignificant_rate_change_does_not_breach() -> None:
    small = _rate_measurement("review_rate", np.array([True] * 3 + [False] * 97),
                              np.array([True] * 1 + [False] * 99))
    big = _rate_measurement("review_rate", np.array([True] * 300 + [False] * 700),
                            np.array([True] * 10 + [False] * 990))
    drift = DriftConfig()
    assert not judge_all([small], {}, "2026-01-01", drift, BaselineConfig())[0].breach  # x3, 3 rows
    assert judge_all([big], {}, "2026-01-01", drift, BaselineConfig())[0].breach


def _judged(signal: str, subject: str, breach: bool) -> Measurement:
    return Measurement(signal, subject, "psi", 1.0 if breach else 0.0, breach=breach)


def test_period_signals_roll_up_features() -> None:
    ms = [_judged("feature_drift", "a", True), _judged("feature_drift", "b", False),
          _judged("prediction_drift", "score", False)]
    signals = period_signals(ms, [], rows=1000, drift=DriftConfig())
    assert signals["feature_drift"] == {"breach": True, "value": 1.0, "detail": "a"}
    assert signals["prediction_drift"]["breach"] is False
    assert period_signals(ms, [], 1000, DriftConfig(min_features=2))["feature_drift"]["breach"] is False


def test_small_periods_are_not_judged_and_unscored_ones_are_failures() -> None:
    assert "feature_drift" not in period_signals([_judged("feature_drift", "a", True)], [], 10, DriftConfig())
    missing = "no trusted partition: out/predictions/dt=2026-01-09 has no _manifest.json"
    assert period_signals([], [], 0, DriftConfig(), missing=missing) == {
        "scoring_failed": {"breach": True, "value": 1.0, "detail": missing}}


def _perf(day: str, auc: float, upper: float, positives: int = 50) -> dict:
    return {"period": day, "roc_auc": auc, "auc_interval": [auc - 0.05, upper], "positives": positives}


def test_concept_drift_needs_consecutive_degraded_periods() -> None:
    cfg = FeedbackConfig()
    bad = [_perf(f"2026-01-0{i}", 0.80, 0.84) for i in range(1, 4)]
    assert concept_signals(bad, 0.90, cfg)["concept_drift"]["breach"] is True
    broken = [*bad[:2], _perf("2026-01-03", 0.89, 0.93)]
    assert concept_signals(broken, 0.90, cfg)["concept_drift"]["breach"] is False


def test_concept_drift_judges_the_upper_bound_and_skips_thin_periods() -> None:
    cfg = FeedbackConfig()
    noisy = [_perf(f"2026-01-0{i}", 0.80, 0.95) for i in range(1, 4)]  # low points, wide intervals
    assert concept_signals(noisy, 0.90, cfg)["concept_drift"]["breach"] is False
    assert concept_signals(noisy, 0.90, FeedbackConfig(use_interval=False))["concept_drift"]["breach"]
    thin = [_perf("2026-01-01", 0.5, 0.55, positives=3)]
    assert concept_signals(thin, 0.90, cfg) == {}


def test_auc_drop_is_critical_only_when_far_and_certain() -> None:
    cfg = FeedbackConfig()
    assert concept_signals([_perf("2026-01-01", 0.70, 0.80)], 0.90, cfg)["auc_drop"]["breach"] is True
    assert concept_signals([_perf("2026-01-01", 0.70, 0.95)], 0.90, cfg)["auc_drop"]["breach"] is False


def test_rerun_restores_the_rule_states_before_the_window() -> None:
    state = {"periods": [{"period": "2026-01-01", "rules_after": {"r": {"active": False, "streak": 1}}},
                         {"period": "2026-01-02", "rules_after": {"r": {"active": True, "streak": 2}}}],
             "rules": {"r": {"active": True, "streak": 2}}}
    assert rules_before(state, "2026-01-02") == {"r": {"active": False, "streak": 1}}
    assert rules_before(state, "2026-01-03") == {"r": {"active": True, "streak": 2}}
    assert rules_before(state, "2026-01-01") == {}


def test_window_dates() -> None:
    assert window_dates("2026-03-01", 3) == ["2026-02-27", "2026-02-28", "2026-03-01"]


@pytest.mark.parametrize(("days", "expected"), [
    (0, 1), (7, 7), (366, 366),
    (-3, "invalid configuration in --days:\n  - window_days: Input should be greater than or equal to 1"),
    (367, "invalid configuration in --days:\n  - window_days: Input should be less than or equal to 366"),
])
def test_window_length_holds_days_to_the_configs_own_bounds(days: int, expected: int | str) -> None:
    from steps.config import MonitorConfig, load_file
    from steps.config.base import ConfigError
    from steps.monitoring.drift import window_length

    cfg = load_file(MonitorConfig, Path(__file__).resolve().parents[2] / "config" / "monitor.yaml")
    assert cfg.window_days == 1
    if isinstance(expected, int):
        assert window_length(cfg, days) == expected
    else:
        with pytest.raises(ConfigError) as err:
            window_length(cfg, days)
        assert str(err.value) == expected


@pytest.mark.parametrize("pathspec", ["123", "ScoreFlow/123", "TrainFlow/", "TrainFlow/123/start", "/123"])
def test_a_model_run_that_is_not_a_model_runs_pathspec_is_refused(pathspec: str) -> None:
    from steps.monitoring.model import _model_run

    with pytest.raises(UserError, match="expected TrainFlow/<run id> or DistillFlow/<run id>"):
        _model_run(pathspec)


def test_false_alarm_rate() -> None:
    periods = [{"signals": {"feature_drift": {"breach": b}}} for b in (True, False, False, False)]
    assert false_alarm_rate(periods) == 0.25


def test_window_signals_breach_when_any_period_breached() -> None:
    periods = [{"period": "2026-01-01", "signals": {"feature_drift": {"breach": True, "detail": "amount"}}},
               {"period": "2026-01-02", "signals": {"feature_drift": {"breach": False, "detail": ""},
                                                    "scoring_failed": {"breach": True, "detail": ""}}}]
    merged = window_signals(periods)
    assert merged["feature_drift"]["breach"] and merged["feature_drift"]["period"] == "2026-01-01"
    assert merged["scoring_failed"]["breach"]


def test_binned_statistics_carry_a_homogeneity_p_value() -> None:
    rng = np.random.default_rng(3)
    profile = _profile(rng)
    same = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(["a", "b", "c"], size=2000)})
    shifted = pd.DataFrame({"x": rng.normal(1.0, size=2000), "c": rng.choice(["a", "d"], size=2000)})
    quiet = {(m.subject, m.statistic): m.p_value for m in feature_measurements(profile, same)}
    loud = {(m.subject, m.statistic): m.p_value for m in feature_measurements(profile, shifted)}
    assert quiet[("x", "psi")] > 0.001 and quiet[("c", "js")] > 0.001
    assert loud[("x", "psi")] < 1e-10 and loud[("c", "js")] < 1e-10 and loud[("x", "ks")] < 1e-10


def test_a_large_but_insignificant_statistic_does_not_breach() -> None:
    m = Measurement("feature_drift", "x", "psi", 0.9, p_value=0.2)  # a big PSI from a handful of rows
    assert not judge_all([m], {}, "2026-01-01", DriftConfig(), BaselineConfig())[0].breach


@pytest.mark.parametrize("total, limit", [(0, 10), (50, 100), (10_000, 1_000), (10_000, 9_999)])
def test_sample_rows_is_a_sorted_sample_without_replacement(total, limit):
    from steps.monitoring.drift import sample_rows

    rows = sample_rows(total, limit, seed=3)
    assert rows.size == min(total, limit) and np.all(np.diff(rows) > 0)
    assert rows.size == 0 or (rows[0] >= 0 and rows[-1] < total)


def test_sample_rows_is_uniform():
    from steps.monitoring.drift import sample_rows

    counts = np.bincount(np.concatenate([sample_rows(100, 10, seed) for seed in range(4000)]), minlength=100)
    assert counts.min() > 300 and counts.max() < 500  # 400 expected per row


@pytest.mark.parametrize("limit", [7, 500, 10**9])
@pytest.mark.parametrize("group_rows", [None, 40, 0], ids=["groups-whole", "mixed", "groups-in-batches"])
def test_streamed_sample_is_the_chosen_rows_of_every_file(tmp_path, monkeypatch, limit, group_rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from steps.monitoring import drift
    from steps.monitoring.drift import sample_rows, stream_sample

    if group_rows is not None:  # row groups of 50 (and the last ones of 20 and 33) larger than this stream in 16s
        monkeypatch.setattr(drift, "GROUP_ROWS", group_rows)
        monkeypatch.setattr(drift, "BATCH_ROWS", 16)
    paths = []
    for i, n in enumerate((120, 0, 333)):
        path = tmp_path / f"f{i}.parquet"
        pq.write_table(pa.table({"x": np.arange(n) + 1000 * i, "y": np.arange(n) * 2.0}), path, row_group_size=50)
        paths.append(path)
    files = [pq.ParquetFile(p) for p in paths]
    got = list(stream_sample(files, [["x"]] * 3, limit, seed=1))
    assert pa.concat_tables([t for _, t, _ in got]).num_rows == sum(t.num_rows for _, t, _ in got)  # one schema
    everything = np.concatenate([np.arange(120), np.arange(333) + 2000])
    expected = everything[sample_rows(everything.size, limit, 1)]
    assert np.array_equal(np.concatenate([t["x"].to_numpy() for _, t, _ in got]), expected)
    assert all(t.column_names == ["x"] for _, t, _ in got)
    assert all(np.array_equal(t["x"].to_numpy() - 1000 * i, rows) for i, t, rows in got)  # row numbers in the file
    bare = list(stream_sample(files, [[]] * 3, limit, seed=1))  # no column: a caller that adds only row keys
    assert [t.num_rows for _, t, _ in bare] == [rows.size for _, _, rows in bare]
    assert np.array_equal(np.concatenate([rows + 1000 * i for i, _, rows in bare]), expected)


@pytest.mark.parametrize("columns", [["row_key"], ["not_in_the_file"], ["x", "row_key"]])
def test_read_inputs_keeps_every_sampled_row_whatever_columns_it_reads(tmp_path, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from steps.monitoring.drift import read_inputs

    path = tmp_path / "day.parquet"
    pq.write_table(pa.table({"x": np.arange(120)}), path, row_group_size=50)
    manifest = {"partition": "dt=2026-01-05", "input": {"input": str(tmp_path), "files": [
        {"path": str(path), "row_groups": [50, 50, 20]}]}}
    frame, names = read_inputs(manifest, columns, 30, seed=2)
    assert len(frame) == 30 and names == ["x"]
    if "row_key" in columns:  # a dataset without an id: keys as ScoreFlow wrote them
        assert frame["row_key"].str.startswith("day.parquet#").all() and frame["row_key"].is_unique


def test_read_inputs_levels_come_back_as_categoricals_with_the_same_measurements(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from steps.monitoring.drift import read_inputs

    rng = np.random.default_rng(4)
    files = []
    for i, n in enumerate((300, 170)):  # two files: their dictionaries differ
        path = tmp_path / f"day{i}.parquet"
        c = rng.choice(["a", "b", "c", "", None] if i == 0 else ["b", "d"], size=n).tolist()
        pq.write_table(pa.table({"c": c, "x": rng.normal(size=n), "k": rng.integers(0, 3, n)}), path,
                       row_group_size=64)
        files.append({"path": str(path), "row_groups": [pq.ParquetFile(path).metadata.row_group(g).num_rows
                                                        for g in range(pq.ParquetFile(path).num_row_groups)]})
    manifest = {"partition": "dt=2026-01-05", "input": {"input": str(tmp_path), "files": files}}
    plain, _ = read_inputs(manifest, ["c", "x", "k"], 200, seed=3)
    coded, names = read_inputs(manifest, ["c", "x", "k"], 200, seed=3, levels=["c", "k", "absent"])
    assert names == ["c", "k", "x"] and pd.api.types.is_integer_dtype(coded["k"])  # only strings are coded
    pd.testing.assert_series_equal(coded["c"].astype(object), plain["c"].astype(object))
    single, _ = read_inputs({**manifest, "input": {**manifest["input"], "files": files[:1]}}, ["c"], 200, seed=3,
                            levels=["c"])
    assert isinstance(single["c"].dtype, pd.CategoricalDtype)
    cfg = ReferenceConfig()
    profile = {"features": {"c": _categorical_reference(pd.Series(["a", "b", "c", None] * 10), cfg),
                            "x": _numeric_reference(pd.Series(rng.normal(size=500)), cfg, rng)}}
    assert feature_measurements(profile, coded) == feature_measurements(profile, plain)


# --------------------------------------------------------------------------------------------------- late labels
def _labels(tmp_path, **columns) -> str:
    folder = tmp_path / "labels" / "dt=2026-01-01"
    folder.mkdir(parents=True)
    pd.DataFrame(columns).to_parquet(folder / "labels.parquet")
    return str(folder / "labels.parquet")


@pytest.mark.parametrize("values", [[1, 0, None, 1], [True, False, None, True], [1.0, 0.0, np.nan, 1.0]])
def test_labels_are_0_1_and_a_missing_one_is_not_a_label_yet(tmp_path, values) -> None:
    _labels(tmp_path, transaction_id=[1, 2, 3, 4], label=values)
    labels = read_labels(str(tmp_path / "labels"), "transaction_id", FeedbackConfig())
    assert labels["transaction_id"].tolist() == [1, 2, 4] and labels["label"].tolist() == [1, 0, 1]
    assert str(labels["label"].dtype) == "int64" and labels["_row"].tolist() == [0, 1, 3]


def test_labels_other_than_0_1_name_the_file_rows_and_values(tmp_path) -> None:
    path = _labels(tmp_path, transaction_id=[1, 2, 3, 4], label=["1", "yes", "0", "no"])
    with pytest.raises(ScoreInputError) as err:
        read_labels(str(tmp_path / "labels"), "transaction_id", FeedbackConfig())
    assert str(err.value) == (f"{path}: label column 'label' holds values other than 0/1 ('yes', 'no') at 2 row(s), "
                              "first [1, 3]")


@pytest.mark.parametrize(("written", "predicted", "expected"), [
    ([3, 1], [1, 2, 3], [3, 1]),
    (["3", "1"], [1, 2, 3], [3, 1]),  # integer ids written as text
    ([3.0, 1.0], [1, 2, 3], [3, 1]),
    ([3, 1], ["a#1", "3"], ["3", "1"]),  # text ids (row keys): compared as text
])
def test_label_ids_take_the_predictions_type(tmp_path, written, predicted, expected) -> None:
    _labels(tmp_path, transaction_id=written, label=[1, 0])
    labels = read_labels(str(tmp_path / "labels"), "transaction_id", FeedbackConfig())
    ids = pd.Series(predicted)
    out = as_prediction_ids(labels, "transaction_id", ids)
    assert out.tolist() == expected and out.dtype == ids.dtype


@pytest.mark.parametrize("bad", ["abc", 2.5])
def test_a_label_id_that_cannot_be_a_prediction_id_names_its_file_and_row(tmp_path, bad) -> None:
    path = _labels(tmp_path, transaction_id=pd.Series(["7", str(bad)] if isinstance(bad, str) else [7.0, bad]),
                   label=[1, 0])
    labels = read_labels(str(tmp_path / "labels"), "transaction_id", FeedbackConfig())
    with pytest.raises(ScoreInputError) as err:
        as_prediction_ids(labels, "transaction_id", pd.Series([7, 8]))
    assert str(err.value) == (f"{path}: row 1: transaction_id {bad!r} is not an id of the predictions (they are "
                              "int64); 1 label id(s) like it")


def test_the_state_is_saved_only_over_the_one_the_run_loaded(tmp_path) -> None:
    from steps.monitoring.state import StateChanged, check_unchanged, empty_state, load_state, save_state

    root = str(tmp_path)
    assert check_unchanged(root, empty_state(), "MonitorFlow/1") is None  # nothing stored yet, nothing stored now
    mine = {**empty_state(), "last_run": {"run": "MonitorFlow/1", "at": "2026-01-02T05:00:00+00:00"}}
    save_state(root, mine, empty_state(), "MonitorFlow/1")
    loaded = load_state(root)
    assert loaded == mine
    assert check_unchanged(root, loaded, "MonitorFlow/2") == hashlib.sha256(
        (tmp_path / "state.json").read_bytes()).hexdigest()  # unchanged since run 2 loaded it: its version
    save_state(root, {**loaded, "last_run": {"run": "MonitorFlow/3", "at": "2026-01-03T05:00:00+00:00"}}, loaded,
               "MonitorFlow/3")
    with pytest.raises(StateChanged, match=r"state.json changed since MonitorFlow/2 loaded it: MonitorFlow/3 saved "
                                           r"it at 2026-01-03T05:00:00\+00:00\. .*this run stops here"):
        check_unchanged(root, loaded, "MonitorFlow/2")
    stored = (tmp_path / "state.json").read_bytes()
    with pytest.raises(StateChanged, match="MonitorFlow/3 saved it"):
        save_state(root, {**loaded, "last_run": {"run": "MonitorFlow/2"}}, loaded, "MonitorFlow/2")
    assert (tmp_path / "state.json").read_bytes() == stored  # nothing written
    check_unchanged(root, loaded, "MonitorFlow/3")  # its own save (a retried end step)
    (tmp_path / "state.json").unlink()
    with pytest.raises(StateChanged, match="changed since MonitorFlow/2 loaded it: it was removed or replaced"):
        check_unchanged(root, loaded, "MonitorFlow/2")


def test_a_save_in_the_moment_between_the_check_and_the_write_is_not_undone(tmp_path, monkeypatch) -> None:
    """The check and the write are one compare-and-swap: another run saving just after the check still wins."""
    assert_a_save_between_check_and_write_loses(str(tmp_path), monkeypatch)


def _period(day: str, failed: bool) -> dict:
    return {"period": day, "scored": not failed, "rows": 0 if failed else 100, "measurements": [], "model": None,
            "signals": {"scoring_failed": {"breach": failed, "value": float(failed), "detail": ""}}}


def test_a_backfill_replays_the_later_periods_so_a_later_alert_stays_active(tmp_path) -> None:
    """Rerunning 01-05 after 01-07 fired a critical alert must not clear it (it was rewound to 01-05's states), nor
    raise 01-07's event again."""
    from steps.config.monitor import AlertRule
    from steps.monitoring import alerts
    from steps.monitoring.state import empty_state, finished_state, periods_after

    rules = [AlertRule(name="scoring_failed", tier="critical", signal="scoring_failed")]
    history = [_period("2026-01-05", False), _period("2026-01-06", False), _period("2026-01-07", True)]
    states, events, snapshots = alerts.evaluate(rules, {}, history)
    alerts.store_events(events, str(tmp_path), "MonitorFlow/1")
    saved = finished_state(empty_state(), history, snapshots, states, [], None, [], "MonitorFlow/1", 90)
    assert [a["rule"] for a in alerts.active(saved["rules"], rules)] == ["scoring_failed"]

    window = [_period("2026-01-05", False)]  # the backfill
    replayed = periods_after(saved, "2026-01-05")
    assert [p["period"] for p in replayed] == ["2026-01-06", "2026-01-07"]
    states, events, snapshots = alerts.evaluate(rules, rules_before(saved, "2026-01-05"), window + replayed)
    again = finished_state(saved, window, snapshots, states, [], None, [], "MonitorFlow/2", 90, replayed)
    assert [a["rule"] for a in alerts.active(again["rules"], rules)] == ["scoring_failed"]  # still firing
    assert [p["period"] for p in again["periods"]] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert again["periods"][-1]["rules_after"] == saved["periods"][-1]["rules_after"]
    assert [(e.rule, e.period) for e in events] == [("scoring_failed", "2026-01-07")]
    assert alerts.unraised(events, str(tmp_path), ["2026-01-06", "2026-01-07"]) == []  # stored: not raised again
    assert periods_after(saved, "2026-01-07") == []  # the usual run: nothing to replay


def test_a_label_location_that_cannot_be_listed_is_an_error_not_no_labels_yet(monkeypatch) -> None:
    from steps.scoring.plan import InputsUnreadable

    monkeypatch.setenv("METAFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(InputsUnreadable, match=r"^cannot list s3://my-bucket/labels/"):
        read_labels("s3://my-bucket/labels/", "transaction_id", FeedbackConfig())


def test_the_summary_says_why_no_retraining_started_without_a_none() -> None:
    from steps.monitoring.state import summary

    record = {"run": None, "status": "not started (launcher none)"}
    text = summary([], [], [], {"reason": "drift in feature_drift"}, record, "out/state.json")
    assert "retraining: drift in feature_drift (not started (launcher none))" in text and "None" not in text
    started = summary([], [], [], {"reason": "scheduled"}, {"run": "TrainFlow/7", "status": "running"}, "s")
    assert "retraining: scheduled -> TrainFlow/7 running" in started


@pytest.mark.parametrize(("end", "refused"), [("2026-12-02", False), ("2026-12-03", False), ("2026-12-04", True),
                                              ("2030-01-01", True), ("2026-01-06", False)])
def test_a_date_in_the_future_is_refused(end, refused) -> None:
    """A stray future period would stay the newest of the history, replayed by every later run."""
    from datetime import date

    from steps.core.errors import UserError
    from steps.monitoring.drift import not_future

    today = date(2026, 12, 2)
    if refused:
        with pytest.raises(UserError, match=rf"^--date {end} is in the future \(today is 2026-12-02 UTC\)"):
            not_future(end, today)
    else:
        assert not_future(end, today) == end
