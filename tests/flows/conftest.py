"""Fixtures of the MonitorFlow tests: generated production days scored with the champion, and the monitor's runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from support import run_flow

from steps.config import DatasetConfig, ScoreConfig, load_file
from steps.core.decision import decision_in_use
from steps.data.scenario import Scenario, write
from steps.scoring.resolve import resolve_model
from steps.scoring.shard import score_in_process

FIRST_DAY, STABLE, DRIFTED = "2026-01-01", 6, 2  # six stable days, then two with covariate drift
DRIFT_DAY = "2026-01-07"
MISSING_DAY = "2026-01-09"  # never scored: the drift run's window ends on it


@pytest.fixture(scope="session")
def spec(config_paths) -> DatasetConfig:
    """The default dataset config, parsed."""
    return load_file(DatasetConfig, config_paths["dataset"])


@pytest.fixture(scope="session")
def production(root: Path, workspace: Path, train_run, tmp_path_factory) -> dict[str, Path]:
    """Eight generated days (drift from day 7) with labels, scored in process by ``train_run``, the champion."""
    out = tmp_path_factory.mktemp("production")
    s = Scenario(first_day=FIRST_DAY, days=STABLE + DRIFTED, rows_per_day=1500,
                 covariate_drift_day=DRIFT_DAY)
    write(s, out)
    spec = load_file(DatasetConfig, root / "config" / "dataset.yaml")
    branch = next(t.split(":", 1)[1] for t in train_run.system_tags if t.startswith("project_branch:"))
    model = resolve_model(train_run.pathspec, branch, "tabular_mlops", spec)
    cfg = load_file(ScoreConfig, root / "config" / "score.yaml")
    for day in s.dates():
        score_in_process(str(out / "incoming" / f"dt={day}"), str(out / "predictions"), day, model, spec, cfg,
                         decision_in_use(model.decision))  # the champion's own threshold and review band
    return {"root": out, "predictions": out / "predictions", "labels": out / "labels", "state": out / "monitor"}


@pytest.fixture(scope="session")
def monitor_configs(root, production, tiny_configs, tiny_data, tmp_path_factory) -> dict[str, Path]:
    """The monitor config of the tests: their folders, every alert delivered, retraining with TrainFlow's tiny set
    (the champion's own data and configs: the retrained model is the same, so the gates must keep the champion)."""
    doc = yaml.safe_load((root / "config" / "monitor.yaml").read_text())
    doc |= {"predictions_root": str(production["predictions"]), "state_root": str(production["state"])}
    doc["feedback"] |= {"labels": str(production["labels"])}
    doc["alerts"]["webhook"] |= {"url_env": "MLOPS_TEST_MONITOR_HOOK", "min_tier": "info", "retries": 1,
                                 "backoff_s": 0.05}
    doc["retrain"] |= {"strategy": "hybrid", "launcher": "runner", "cooldown_days": 7, "every_days": 365,
                       "params": {"data": str(tiny_data)},
                       "configs": {k: str(v) for k, v in tiny_configs.items()}}
    path = tmp_path_factory.mktemp("monitor-config") / "monitor.yaml"
    path.write_text(yaml.safe_dump(doc))
    return {"dataset": tiny_configs["dataset"], "profile": tiny_configs["profile"], "monitor": path}


@pytest.fixture(scope="session")
def hook_env(webhook_session):
    """Point the monitor's webhook variable at the session's local webhook (the Runner's subprocesses inherit it)."""
    os.environ["MLOPS_TEST_MONITOR_HOOK"] = webhook_session.url
    yield webhook_session
    os.environ.pop("MLOPS_TEST_MONITOR_HOOK", None)


@pytest.fixture(scope="session")
def monitor_stable(root, workspace, monitor_configs, hook_env):
    """MonitorFlow over the six stable days (a backfill in one run)."""
    result = run_flow(root, workspace, "monitor_flow.py", monitor_configs, date=f"2026-01-0{STABLE}", days=STABLE)
    assert result.status == "successful", result.stdout[-4000:]
    return result


@pytest.fixture(scope="session")
def monitor_drift(root, workspace, monitor_configs, monitor_stable, hook_env):
    """MonitorFlow over the two drifted days and a day that was never scored; it retrains."""
    delivered_before = len(hook_env.received)
    result = run_flow(root, workspace, "monitor_flow.py", monitor_configs, date=MISSING_DAY, days=3)
    assert result.status == "successful", result.stdout[-4000:]
    return result, hook_env.received[delivered_before:]
