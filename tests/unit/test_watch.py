"""The monitor review's tables (notebook 04): signals, breaches, one signal's history, realized performance."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from steps.reporting import watch


def _m(signal: str, subject: str, statistic: str, value: float, threshold: float, breach: bool) -> dict[str, Any]:
    return {"signal": signal, "subject": subject, "statistic": statistic, "value": value, "p_value": 0.001,
            "baseline": threshold / 2, "threshold": threshold, "method": "moving", "breach": breach}


def _period(day: str, measurements: list[dict[str, Any]], signals: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"period": day, "rows": 100, "measurements": measurements,
            "signals": signals if signals is not None else {
                "feature_drift": {"breach": any(m["breach"] for m in measurements), "value": 0.0,
                                  "detail": ", ".join(m["subject"] for m in measurements if m["breach"])}}}


PERIODS = [
    _period("2026-01-01", [_m("feature_drift", "amount", "psi", 0.01, 0.1, False),
                           _m("prediction_drift", "score", "ks", 0.02, 0.05, False)]),
    _period("2026-01-02", [_m("feature_drift", "amount", "psi", 0.30, 0.1, True),
                           _m("feature_drift", "hour", "psi", 0.50, 0.1, True),
                           _m("prediction_drift", "score", "ks", 0.04, 0.05, False)]),
    _period("2026-01-03", [_m("feature_drift", "amount", "psi", 0.12, 0.1, True)]),
    _period("2026-01-04", [], {"scoring_failed": {"breach": True, "value": 1.0, "detail": "no trusted partition"}}),
]


def test_signal_table_marks_breaches_with_what_breached_and_leaves_unjudged_cells_empty() -> None:
    table = watch.signal_table(PERIODS)
    assert list(table.index) == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert table.loc["2026-01-01", "feature_drift"] == "ok"
    assert table.loc["2026-01-02", "feature_drift"] == "BREACH: amount, hour"
    assert table.loc["2026-01-04", "scoring_failed"] == "BREACH: no trusted partition"
    assert table.loc["2026-01-04", "feature_drift"] == "" and table.loc["2026-01-01", "scoring_failed"] == ""


@pytest.mark.parametrize(("signal", "rows"), [(None, 6), ("feature_drift", 4), ("prediction_drift", 2),
                                              ("null_rate", 0)])
def test_measurements_one_row_each_of_the_signal_asked(signal: str | None, rows: int) -> None:
    found = watch.measurements(PERIODS, signal)
    assert len(found) == rows and list(found.columns) == watch.MEASUREMENT_COLUMNS
    if signal:
        assert set(found["signal"]) <= {signal}


def test_breaches_newest_period_first_then_furthest_over_the_threshold() -> None:
    found = watch.breaches(PERIODS)
    assert list(zip(found["period"], found["subject"], strict=True)) == [
        ("2026-01-03", "amount"), ("2026-01-02", "hour"), ("2026-01-02", "amount")]
    assert list(found["x threshold"]) == pytest.approx([1.2, 5.0, 3.0])


def test_breaches_of_a_quiet_window_is_empty_with_the_columns() -> None:
    found = watch.breaches(PERIODS[:1])
    assert found.empty and "x threshold" in found.columns


@pytest.mark.parametrize(("subject", "statistic", "signal", "values"), [
    ("amount", "psi", "feature_drift", [0.01, 0.30, 0.12]),
    ("hour", "psi", "feature_drift", [0.50]),
    ("score", "ks", "prediction_drift", [0.02, 0.04]),
])
def test_series_follows_one_statistic_of_one_subject(subject: str, statistic: str, signal: str,
                                                     values: list[float]) -> None:
    frame = watch.series(PERIODS, subject, statistic, signal)
    assert list(frame["value"]) == values
    assert list(frame.columns) == ["value", "baseline", "threshold", "method", "breach"]


def test_series_of_an_unknown_subject_names_the_ones_there_are() -> None:
    with pytest.raises(KeyError, match="no feature_drift psi of 'amout'; subjects with one: amount, hour"):
        watch.series(PERIODS, "amout")


STATE = {"performance": [
    {"period": "2026-01-01", "rows": 500, "positives": 20, "roc_auc": 0.90, "auc_interval": [0.85, 0.95],
     "precision": 0.5, "recall": 0.4, "groups": {"region": {"europe": {"roc_auc": 0.91}, "apac": {"roc_auc": 0.88}}}},
    {"period": "2026-01-02", "rows": 400, "positives": 3, "roc_auc": 0.70, "auc_interval": None,
     "precision": 0.2, "recall": 0.3, "groups": {"region": {"europe": {"roc_auc": 0.72}}}},
]}


@pytest.mark.parametrize("reference", [None, 0.92])
def test_performance_per_period_with_its_interval_and_against_the_reference(reference: float | None) -> None:
    frame = watch.performance(STATE, reference)
    assert list(frame.index) == ["2026-01-01", "2026-01-02"]
    assert frame.loc["2026-01-01", "AUC low"] == 0.85 and pd.isna(frame.loc["2026-01-02", "AUC high"])
    if reference is None:
        assert "vs reference" not in frame.columns
    else:
        assert list(frame["vs reference"]) == pytest.approx([-0.02, -0.22])


def test_group_performance_one_column_per_level_missing_where_a_level_had_no_labels() -> None:
    frame = watch.group_performance(STATE, "region")
    assert sorted(frame.columns) == ["apac", "europe"]
    assert frame.loc["2026-01-01", "apac"] == 0.88 and pd.isna(frame.loc["2026-01-02", "apac"])
    assert watch.group_performance(STATE, "country").empty


@pytest.mark.parametrize(("given", "expected"), [
    ({}, ("feature_drift", "amount", "psi")),  # the newest period's furthest breach
    ({"subject": "hour"}, ("feature_drift", "hour", "psi")),
    ({"signal": "prediction_drift", "subject": "score", "statistic": "ks"}, ("prediction_drift", "score", "ks")),
])
def test_pick_series_takes_what_is_given_else_the_first_breach(given: dict[str, str],
                                                               expected: tuple[str, str, str]) -> None:
    assert watch.pick_series(watch.breaches(PERIODS), PERIODS, **given) == expected


def test_pick_series_of_a_quiet_window_follows_the_first_feature_and_says_when_nothing_was_measured() -> None:
    assert watch.pick_series(watch.breaches(PERIODS[:1]), PERIODS[:1]) == ("feature_drift", "amount", "psi")
    with pytest.raises(KeyError, match="no period measured feature_drift psi: nothing to follow"):
        watch.pick_series(watch.breaches(PERIODS[3:]), PERIODS[3:])


def _run(retraining: dict[str, Any] | None) -> Any:
    from types import SimpleNamespace

    data = SimpleNamespace(
        window=["2026-01-07", "2026-01-08"], champion={"run": "TrainFlow/1", "reference_auc": 0.91},
        active_alerts=[{"tier": "warning", "rule": "feature_drift", "since": "2026-01-08"}],
        events=[{"tier": "warning"}, {"tier": "info"}, {"tier": "info"}], state_uri="out/monitor/state.json",
        decision={"strategy": "hybrid", "fire": retraining is not None, "reason": "feature_drift breached",
                  "signals": ["feature_drift"], "cooldown_until": None},
        retraining=retraining)
    return SimpleNamespace(pathspec="MonitorFlow/9", data=data)


def test_overview_is_the_runs_cli_summary_with_the_reference_auc() -> None:
    shown = watch.overview(_run(None))
    assert shown["run"] == "MonitorFlow/9" and shown["window"] == "2026-01-07 to 2026-01-08 (2 dates)"
    assert shown["active alerts"] == "warning feature_drift (since 2026-01-08)"
    assert shown["events"] == "2 info, 1 warning" and shown["reference AUC"] == 0.91
    assert shown["retraining"] == "hybrid: feature_drift breached" and shown["state"] == "out/monitor/state.json"


@pytest.mark.parametrize("record", [None, {"run": "TrainFlow/5", "status": "successful", "gates_passed": False,
                                           "promoted": False}])
def test_retraining_says_what_was_decided_and_started(record: dict[str, Any] | None) -> None:
    shown = watch.retraining(_run(record))
    assert shown["fired"] == (record is not None) and shown["signals"] == "feature_drift"
    assert shown["run started"] == (record["run"] if record else "-")
    assert shown["promoted"] == (record["promoted"] if record else "-")
