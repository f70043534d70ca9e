"""Planted regressions through real TrainFlow runs: each is rejected by the gate that should catch it, a better
model is promoted, and one registry command rolls the promotion back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run_flow
from steps import data, synth
from steps.config import DatasetConfig, SplitConfig, load_file
from steps.registry import Registry

BRANCH = "gates"
SPLIT = {"validation_fraction": 0.2, "holdout_fraction": 0.2}
MODELS = {  # planted models, one candidate per run
    "weak": {"type": "lightgbm", "params": {"n_estimators": 3, "num_leaves": 4}},
    "good": {"type": "lightgbm", "params": {"n_estimators": 60, "num_leaves": 15}},
    "slow": {"type": "random_forest", "params": {"n_estimators": 600, "min_samples_leaf": 20}},
    "unfair": {"type": "lightgbm", "params": {"n_estimators": 60, "num_leaves": 15}},
    "no_impute": {"type": "logistic_regression", "params": {}, "impute": False},
    "worse": {"type": "lightgbm", "params": {"n_estimators": 1, "num_leaves": 2}},  # a single stump
}


def _train_config(directory: Path, name: str) -> Path:
    path = directory / f"train-{name}.yaml"
    path.write_text(yaml.safe_dump({"split": SPLIT, "seed": 1, "threads": 1, "curve_points": 50,
                                    "candidates": [{"name": name, **MODELS[name]}]}))
    return path


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, config_paths) -> dict[str, Path]:
    """30k rows; a copy whose training-period labels are zeroed for north_america; a copy with no missing values."""
    directory = tmp_path_factory.mktemp("gates-data")
    spec = load_file(DatasetConfig, config_paths["dataset"])
    frame = synth.generate(synth.SynthSpec(rows=30_000, seed=21, row_group_rows=10_000))
    holdout_start = data.temporal_split(data.validate(frame, spec, "x"), spec, SplitConfig(**SPLIT)).holdout[
        spec.time].min()
    unfair = frame.copy()
    unfair.loc[(unfair[spec.time] < holdout_start) & (unfair["region"] == "north_america"), "is_fraud"] = 0
    complete = frame.assign(km_from_home=frame["km_from_home"].fillna(10.0),
                            device_type=frame["device_type"].fillna("terminal"))
    paths = {}
    for name, table in (("normal", frame), ("unfair", unfair), ("complete", complete)):
        paths[name] = directory / f"{name}.parquet"
        table.to_parquet(paths[name])
    return paths


@pytest.fixture(scope="module")
def scenario(root, workspace, config_paths, datasets, tmp_path_factory):
    """Six TrainFlow runs in order on one branch; returns {name: Run}."""
    directory = tmp_path_factory.mktemp("gates-config")
    plan = [("weak", "normal"), ("good", "normal"), ("slow", "normal"), ("unfair", "unfair"),
            ("no_impute", "complete"), ("worse", "normal")]
    runs = {}
    for name, dataset in plan:
        configs = {**config_paths, "train": _train_config(directory, name),
                   "gates": root / "tests" / "flows" / "configs" / "gates-small.yaml"}
        result = run_flow(root, workspace, "train_flow.py", configs, branch=BRANCH, data=str(datasets[dataset]))
        assert result.status == "successful", f"{name}: {result.stdout[-3000:]}"
        runs[name] = result.run
    return runs


def failed_gates(run) -> set[str]:
    """Names of the gated checks that failed in a run, as 'suite/name'."""
    return set(run["gates"].task.data.gate_summary["failed"])


def tags(run) -> set[str]:
    return set(run.user_tags)


def test_first_model_is_promoted_by_the_absolute_gates(scenario):
    weak = scenario["weak"]["gates"].task.data
    assert weak.champion_run_id is None and weak.gates_passed
    assert "candidate" in tags(scenario["weak"])


def test_a_significantly_better_model_is_promoted(scenario):
    good = scenario["good"]["gates"].task.data
    assert good.champion_run_id == scenario["weak"].id
    assert good.gates_passed and failed_gates(scenario["good"]) == set()
    significance = next(r for r in good.gate_results if r["name"] == "significantly_better[roc_auc]")
    assert significance["passed"] and significance["interval"][0] > 0


@pytest.mark.parametrize("name,gate", [
    ("worse", "champion/significantly_better[roc_auc]"),
    ("unfair", "fairness/equalized_odds_difference[region]"),
    ("slow", "efficiency/latency_p50_ms"),
    ("no_impute", "robustness/edge_cases_no_error"),
])
def test_planted_regression_is_rejected_by_its_gate(scenario, name, gate):
    run = scenario[name]
    assert gate in failed_gates(run)
    assert not run["gates"].task.data.gates_passed
    assert "candidate" in tags(run) and "champion" not in tags(run)


def test_gate_details_name_the_culprit(scenario):
    unfair = {r["name"]: r for r in scenario["unfair"]["gates"].task.data.gate_results}
    assert "north_america" in unfair["equalized_odds_difference[region]"]["detail"]
    no_impute = {r["name"]: r for r in scenario["no_impute"]["gates"].task.data.gate_results}
    assert "missing:" in no_impute["edge_cases_no_error"]["detail"] and "NaN" in no_impute["edge_cases_no_error"]["detail"]


def test_verdict_is_stored_as_json_and_rendered_in_a_card(scenario):
    from metaflow.cards import get_cards

    from conftest import card_text

    task = scenario["unfair"]["gates"].task
    verdict = json.loads(task.data.gate_report_json)
    assert verdict["passed"] is False and "fairness/equalized_odds_difference[region]" in verdict["failed"]
    assert {"suite", "name", "metric", "threshold", "actual", "interval", "passed", "detail"} <= set(verdict["results"][0])
    text = card_text(get_cards(task, id="gates")[0].get())
    assert "equalized_odds_difference[region]" in text and "versus challenger" in text


def test_registry_keeps_the_better_model_and_rollback_restores_the_previous_champion(root, workspace, scenario):
    registry = Registry("TrainFlow", f"test.{BRANCH}")
    assert registry.champion().id == scenario["good"].id
    assert registry.show()["problems"] == []
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-m", "steps.registry", "--branch", f"test.{BRANCH}", "rollback",
                           "--reason", "planted test"], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert registry.champion().id == scenario["weak"].id
    assert "archived" in tags(Registry("TrainFlow", f"test.{BRANCH}").run(scenario["good"].id))
    kinds = [(e["kind"], e["from"], e["to"]) for e in registry.history()]
    assert kinds[-3:] == [("promote", None, scenario["weak"].id), ("promote", scenario["weak"].id, scenario["good"].id),
                          ("rollback", scenario["good"].id, scenario["weak"].id)]
