"""Planted regressions through real TrainFlow runs (session fixture ``gates_scenario`` in tests/conftest.py):
each is rejected by the gate that should catch it, a better model is promoted, and one registry command rolls
the promotion back (then the test promotes ``good`` again: other modules of the group expect it as champion)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support import GATES_BRANCH as BRANCH

from steps.registry.registry import Registry

pytestmark = pytest.mark.xdist_group("gates")  # gates_scenario's six TrainFlow runs are made once, on one worker


@pytest.fixture(scope="module")
def scenario(gates_scenario):
    """The six runs, by name."""
    return gates_scenario


def failed_gates(run) -> set[str]:
    """Names of the gated checks that failed in a run, as 'suite/name'."""
    return set(run["judge"].task.data.gate_summary["failed"])


def tags(run) -> set[str]:
    return set(run.user_tags)


def test_first_model_is_promoted_by_the_absolute_gates(scenario):
    weak = scenario["weak"]["judge"].task.data
    assert weak.champion_run_id is None and weak.gates_passed
    assert "candidate" in tags(scenario["weak"])


def test_a_significantly_better_model_is_promoted(scenario):
    good = scenario["good"]["judge"].task.data
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
    assert not run["judge"].task.data.gates_passed
    assert "candidate" in tags(run) and "champion" not in tags(run)


def test_gate_details_name_the_culprit(scenario):
    unfair = {r["name"]: r for r in scenario["unfair"]["judge"].task.data.gate_results}
    assert "north_america" in unfair["equalized_odds_difference[region]"]["detail"]
    no_impute = {r["name"]: r for r in scenario["no_impute"]["judge"].task.data.gate_results}
    detail = no_impute["edge_cases_no_error"]["detail"]
    assert "missing:" in detail and "NaN" in detail


def test_verdict_is_stored_as_json_and_rendered_in_a_card(scenario):
    from metaflow.cards import get_cards
    from support import card_text

    task = scenario["unfair"]["judge"].task
    verdict = json.loads(task.data.gate_report_json)
    assert verdict["passed"] is False and "fairness/equalized_odds_difference[region]" in verdict["failed"]
    fields = {"suite", "name", "metric", "threshold", "actual", "interval", "passed", "detail"}
    assert fields <= set(verdict["results"][0])
    text = card_text(get_cards(task, id="gates")[0].get())
    assert "equalized_odds_difference[region]" in text and "versus challenger" in text


def test_registry_keeps_the_better_model_and_rollback_restores_the_previous_champion(root, workspace, scenario):
    registry = Registry("TrainFlow", f"test.{BRANCH}")
    assert registry.champion().id == scenario["good"].id
    assert registry.show()["problems"] == []
    try:
        proc = _registry_cli(root, workspace, "rollback", "--reason", "planted test")
        assert proc.returncode == 0, proc.stderr
        assert registry.champion().id == scenario["weak"].id
        assert "archived" in tags(Registry("TrainFlow", f"test.{BRANCH}").run(scenario["good"].id))
        kinds = [(e["kind"], e["from"], e["to"]) for e in registry.history()]
        assert kinds[-3:] == [("promote", None, scenario["weak"].id),
                              ("promote", scenario["weak"].id, scenario["good"].id),
                              ("rollback", scenario["good"].id, scenario["weak"].id)]
    finally:  # the branch as the other gates-group modules expect it, whatever order they run in: `good` champion
        if registry.champion().id != scenario["good"].id:
            restored = _registry_cli(root, workspace, "promote", scenario["good"].id, "--reason", "test cleanup")
            assert restored.returncode == 0, restored.stderr
    assert registry.champion().id == scenario["good"].id


def _registry_cli(root, workspace, *args: str) -> subprocess.CompletedProcess:
    """``python -m steps.registry --branch test.gates ARGS`` from the test workspace."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "steps.registry", "--branch", f"test.{BRANCH}", *args],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
