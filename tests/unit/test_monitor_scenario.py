"""The monitor's statistics over generated production days (the generator's drift knobs), scored in process.

A LightGBM trained on 2025 data watches 2026 days: stable ones, then covariate drift, then (separately) concept
drift with late labels. Each day is judged as a MonitorFlow run would judge it: against the history before it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.data.scenario import Scenario, day_frame
from steps.monitoring.state import false_alarm_rate
from steps.ops.scenario import Setting, replay, trained_setting, write_and_score

ROOT = Path(__file__).resolve().parents[2]
STABLE_DAYS = 12
DRIFTED_FEATURES = {"amount", "amount_to_avg_ratio", "card_present", "channel", "device_type",
                    "txn_count_1h", "txn_count_24h"}


@pytest.fixture(scope="module")
def setting() -> Setting:
    return trained_setting(ROOT / "config")


def _replay(setting: Setting, s: Scenario, out: Path) -> list[dict]:
    """Score every day, then judge them one run per day, as the daily schedule would; returns each day's result."""
    write_and_score(setting, s, out)
    return replay(setting, s.dates(), out)


@pytest.fixture(scope="module")
def covariate(setting, tmp_path_factory) -> list[dict]:
    s = Scenario(first_day="2026-01-01", days=STABLE_DAYS + 3, covariate_drift_day="2026-01-13")
    return _replay(setting, s, tmp_path_factory.mktemp("covariate"))


@pytest.fixture(scope="module")
def concept(setting, tmp_path_factory) -> list[dict]:
    s = Scenario(first_day="2026-02-01", days=9, concept_drift_day="2026-02-05")
    return _replay(setting, s, tmp_path_factory.mktemp("concept"))


def test_stable_days_raise_no_critical_and_at_most_one_warning(covariate) -> None:
    stable = covariate[:STABLE_DAYS]
    events = [e for day in stable for e in day["events"]]
    assert [e.id for e in events if e.tier == "critical"] == []
    assert len([e for e in events if e.tier == "warning"]) <= 1
    rate = false_alarm_rate(stable)
    print(f"false-alarm rate over {len(stable)} stable days: {rate:.3f}")
    assert rate <= 1 / STABLE_DAYS


def test_covariate_drift_is_detected_on_the_first_drifted_day(covariate) -> None:
    first = covariate[STABLE_DAYS]
    assert first["period"] == "2026-01-13"
    assert first["signals"]["feature_drift"]["breach"]
    # the README's claim: the generator's covariate drift moves these seven features, and the score with them
    assert set(first["signals"]["feature_drift"]["detail"].split(", ")) == DRIFTED_FEATURES
    assert first["signals"]["prediction_drift"]["breach"]
    assert "drift_detected-2026-01-13-fired" in [e.id for e in first["events"]]


def test_persistent_drift_escalates_to_a_warning_on_the_third_day(covariate) -> None:
    fired = {e.id for day in covariate for e in day["events"]}
    assert "feature_drift-2026-01-15-fired" in fired and "feature_drift-2026-01-14-fired" not in fired


def test_concept_drift_is_declared_once_three_labelled_days_degrade(concept) -> None:
    by_day = {d["period"]: d for d in concept}
    assert not any(d["signals"].get("concept_drift", {}).get("breach") for p, d in by_day.items() if p < "2026-02-07")
    declared = [p for p, d in by_day.items() if any(e.rule == "concept_drift" and e.kind == "fired"
                                                     for e in d["events"])]
    assert declared and "2026-02-07" <= declared[0] <= "2026-02-09"
    assert not any(d["signals"]["feature_drift"]["breach"] for p, d in by_day.items() if p < "2026-02-05")


def test_covariate_drift_strength_reaches_the_generator() -> None:
    day, rows = "2026-01-05", 500
    stable = day_frame(Scenario(rows_per_day=rows), day)
    off = day_frame(Scenario(rows_per_day=rows, covariate_drift_day=day,
                             covariate_drift_strength=0.0), day)
    strong = day_frame(Scenario(rows_per_day=rows, covariate_drift_day=day,
                                covariate_drift_strength=2.0), day)
    assert off.equals(stable)
    assert strong["amount"].mean() > stable["amount"].mean()
