"""Retraining strategies, cooldown and launch options (steps/retrain.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from steps.config import RetrainConfig
from steps.monitoring import retrain

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
FRESH = NOW - timedelta(days=1)  # the serving model was trained yesterday
DRIFT = {"feature_drift": {"breach": True}, "concept_drift": {"breach": False}}
PERF = {"feature_drift": {"breach": False}, "concept_drift": {"breach": True}}
QUIET = {"feature_drift": {"breach": False}}


@pytest.mark.parametrize(("strategy", "signals", "fire"), [
    ("off", DRIFT, False),
    ("drift", DRIFT, True), ("drift", PERF, False),
    ("performance", PERF, True), ("performance", DRIFT, False),
    ("hybrid", DRIFT, True), ("hybrid", PERF, True), ("hybrid", QUIET, False),
    ("scheduled", DRIFT, False),
])
def test_strategies(strategy, signals, fire) -> None:
    decision = retrain.decide(RetrainConfig(strategy=strategy), signals, None, NOW, FRESH)
    assert decision.fire is fire


def test_scheduled_fires_on_age() -> None:
    cfg = RetrainConfig(strategy="scheduled", every_days=30)
    assert retrain.decide(cfg, QUIET, None, NOW, NOW - timedelta(days=31)).fire
    assert not retrain.decide(cfg, QUIET, None, NOW, NOW - timedelta(days=29)).fire
    assert retrain.decide(cfg, QUIET, {"at": (NOW - timedelta(days=40)).isoformat()}, NOW, FRESH).fire


def test_cooldown_blocks_a_second_retraining_and_says_until_when() -> None:
    cfg = RetrainConfig(strategy="drift", cooldown_days=7)
    last = {"at": (NOW - timedelta(days=2)).isoformat()}
    blocked = retrain.decide(cfg, DRIFT, last, NOW, FRESH)
    assert not blocked.fire and "cooldown until" in blocked.reason and blocked.signals == ("feature_drift",)
    assert retrain.decide(cfg, DRIFT, {"at": (NOW - timedelta(days=8)).isoformat()}, NOW, FRESH).fire


def test_naive_times_are_taken_as_utc() -> None:
    last = {"at": "2026-02-28T12:00:00"}
    assert not retrain.decide(RetrainConfig(strategy="drift"), DRIFT, last, NOW, FRESH).fire


def test_decision_round_trips() -> None:
    d = retrain.decide(RetrainConfig(), DRIFT, None, NOW, FRESH)
    assert retrain.Decision.from_dict(d.to_dict()) == d


@pytest.mark.parametrize(("branch", "options"), [
    ("user.ci", {}), ("test.monitor", {"branch": "monitor"}), ("prod", {"production": True}),
    ("prod.blue", {"production": True, "branch": "blue"}),
])
def test_branch_options(branch, options) -> None:
    assert retrain.branch_options(branch) == options


def test_no_launch_without_a_decision_and_a_record_for_launcher_none() -> None:
    quiet = retrain.Decision(False, "no trigger", "hybrid")
    assert retrain.launch(RetrainConfig(), quiet, "user.ci") is None
    due = retrain.Decision(True, "feature_drift breached", "hybrid")
    assert retrain.launch(RetrainConfig(launcher="none"), due, "user.ci")["run"] is None


def test_a_failed_launch_is_recorded_not_raised() -> None:
    due = retrain.Decision(True, "feature_drift breached", "hybrid")
    record = retrain.launch(RetrainConfig(launcher="deployer", orchestrator="argo-workflows"), due, "user.ci")
    assert record["status"].startswith("launch failed: ValueError") and "retrain.deployment" in record["status"]


def test_train_configs_are_absolute_defaults_with_overrides(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLOPS_PROFILE", raising=False)
    own = tmp_path / "train.yaml"
    configs, values = retrain.train_configs(RetrainConfig(configs={"train": str(own)}))
    assert configs["train"] == str(own) and values == {}
    assert configs["dataset"] == str(retrain.PROJECT_ROOT / "config" / "dataset.yaml")
    assert configs["profile"] == str(retrain.PROJECT_ROOT / "config" / "profiles" / "local.yaml")
    assert all(Path(p).is_absolute() for p in configs.values())


def test_retraining_inherits_the_monitors_dataset_and_gates_unless_retrain_names_them(tmp_path) -> None:
    dataset, gates = {"name": "other", "path": "x.parquet"}, {"primary_metric": "roc_auc"}
    own_gates = tmp_path / "gates.yaml"
    configs, values = retrain.train_configs(RetrainConfig(configs={"gates": str(own_gates)}),
                                            {"dataset": dataset, "gates": gates})
    assert values == {"dataset": dataset}  # the monitor's dataset: a monitor of "other" retrains "other"
    assert configs["gates"] == str(own_gates) and "dataset" not in configs
    assert configs["train"] == str(retrain.PROJECT_ROOT / "config" / "train.yaml")


def test_with_data_overrides_only_the_data_parameter() -> None:
    cfg = RetrainConfig(params={"data": "old.parquet", "data-rev": ""})
    assert retrain.with_data(cfg, "new.parquet").params == {"data": "new.parquet", "data-rev": ""}
    assert retrain.with_data(cfg, "") is cfg
