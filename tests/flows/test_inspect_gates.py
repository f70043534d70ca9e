"""steps.inspect's gate and registry helpers (notebook 02) against the planted runs of ``gates_scenario``.

Only the runs' own artifacts are asserted on, not who is champion now: test_gates_flow.py rolls the branch back
from ``good`` to ``weak`` in the same session.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from support import GATES_BRANCH

from steps.registry.registry import Registry, RegistryError
from steps.reporting import runs as runs_api

pytestmark = pytest.mark.xdist_group("gates")  # gates_scenario's six TrainFlow runs are made once, on one worker

BRANCH = f"test.{GATES_BRANCH}"
SIGNIFICANCE = "champion/significantly_better[roc_auc]"


@pytest.fixture(scope="module")
def runs(gates_scenario):
    """The six runs, by name."""
    return gates_scenario


def gates_data(run):
    return run["judge"].task.data


def test_challenger_run_by_id_with_and_without_a_branch(runs) -> None:
    worse = runs["worse"]
    assert runs_api.challenger_run("TrainFlow", BRANCH, worse.id).pathspec == worse.pathspec
    assert runs_api.challenger_run("TrainFlow", None, worse.id).pathspec == worse.pathspec
    assert runs_api.run_branch(worse) == BRANCH
    with pytest.raises(RegistryError, match="not 'test.elsewhere'"):
        runs_api.challenger_run("TrainFlow", "test.elsewhere", worse.id)


def test_challenger_run_defaults_to_the_newest_candidate_that_is_not_champion(runs) -> None:
    assert runs_api.challenger_run("TrainFlow", BRANCH).id == runs["worse"].id
    with pytest.raises(runs_api.RunNotFound, match="test.no_such_branch"):
        runs_api.challenger_run("TrainFlow", "test.no_such_branch")


def test_verdict_and_suite_summary(runs) -> None:
    worse, good = runs_api.verdict(runs["worse"]), runs_api.verdict(runs["good"])
    assert worse["passed"] is False and SIGNIFICANCE in worse["failed"]
    assert worse["champion_run_id"] == runs["good"].id and worse["model_name"] == "worse"
    assert worse["checks"] == len(gates_data(runs["worse"]).gate_results) >= worse["gated"] > 0
    assert "candidate" in worse["tags"] and "champion" not in worse["tags"]
    assert good["passed"] is True and good["failed"] == [] and good["champion_run_id"] == runs["weak"].id
    suites = runs_api.suite_summary(runs["worse"])
    assert suites["checks"].sum() == worse["checks"] and suites.loc["champion", "failed"] >= 1
    assert suites["failed"].sum() == len(worse["failed"])


def test_gate_table_has_one_row_per_result(runs) -> None:
    results = gates_data(runs["worse"]).gate_results
    table = runs_api.gate_table(runs["worse"])
    assert list(table.columns) == runs_api.GATE_COLUMNS
    assert list(zip(table["suite"], table["name"], strict=True)) == [(r["suite"], r["name"]) for r in results]
    for row, result in zip(table.to_dict("records"), results, strict=True):
        low, high = result["interval"] or (None, None)
        assert (row["low"], row["high"]) == (low, high) or (math.isnan(row["low"]) and low is None)
        assert row["passed"] == result["passed"] and row["gated"] == result["gated"]
    failed = table[table["gated"] & ~table["passed"]]
    assert SIGNIFICANCE in {f"{s}/{n}" for s, n in zip(failed["suite"], failed["name"], strict=True)}
    champion = runs_api.gate_table(runs["worse"], suite="champion")
    assert set(champion["suite"]) == {"champion"} and len(champion) == sum(r["suite"] == "champion" for r in results)
    assert runs_api.gate_table(runs["weak"], suite="champion").empty


def test_comparison_of_a_challenger_with_its_champion(runs) -> None:
    compared = runs_api.comparison(runs["worse"])
    assert compared is not None and compared["run_id"] == runs["good"].id
    assert {"performance", "efficiency"} <= set(compared)
    table = runs_api.comparison_table(runs["worse"])
    assert len(table) == 1
    row = table.iloc[0]
    assert row["champion_run_id"] == runs["good"].id and row["metric"] == "roc_auc"
    assert row["difference"] < 0 and row["low"] <= row["difference"] <= row["high"]
    assert row["challenger"] < row["champion"] and 0 <= row["p_value"] <= 1 and row["method"] == "delong"
    assert row["gate"] == SIGNIFICANCE and not row["passed"]


def test_no_comparison_without_a_champion(runs) -> None:
    assert runs_api.comparison(runs["weak"]) is None
    empty = runs_api.comparison_table(runs["weak"])
    assert empty.empty and {"difference", "low", "high", "p_value", "method", "gate"} <= set(empty.columns)
    assert list(runs_api.efficiency_table(runs["weak"]).columns) == ["challenger"]
    assert list(runs_api.performance_table(runs["weak"]).columns) == ["challenger", "challenger_low", "challenger_high"]


def test_performance_and_efficiency_side_by_side(runs) -> None:
    report = gates_data(runs["worse"]).gate_report
    performance = runs_api.performance_table(runs["worse"])
    assert set(performance.index) == set(report["performance"])
    assert performance.loc["roc_auc", "challenger"] == report["performance"]["roc_auc"]["point"]
    assert performance.loc["roc_auc", "champion"] == report["champion"]["performance"]["roc_auc"]["point"]
    assert performance.loc["roc_auc", "champion"] > performance.loc["roc_auc", "challenger"]
    efficiency = runs_api.efficiency_table(runs["worse"])
    assert list(efficiency.columns) == ["challenger", "champion"]
    assert efficiency.loc["p50_ms", "champion"] == report["champion"]["efficiency"]["p50_ms"]
    assert {"p50_ms", "p99_ms", "rows_per_s", "size_mb", "peak_memory_mb"} <= set(efficiency.index)


def test_group_table_flattens_the_fairness_report(runs) -> None:
    report = gates_data(runs["unfair"]).gate_report["fairness"]
    table = runs_api.group_table(runs["unfair"])
    assert list(table.columns) == runs_api.GROUP_COLUMNS
    assert len(table) == sum(len(groups) for groups in report.values())
    assert list(table["attribute"].unique()) == list(report)
    region = table[table["attribute"] == "region"].set_index("group")
    assert "north_america" in region.index and region.loc["north_america", "gated"]
    na = next(g for g in report["region"] if g["group"] == "north_america")
    assert region.loc["north_america", "tpr"] == na["tpr"] and region.loc["north_america", "rows"] == na["rows"]


def test_registry_state_and_history(runs) -> None:
    ids = {name: run.id for name, run in runs.items()}
    state = runs_api.registry_state("TrainFlow", BRANCH)
    assert state["branch"] == BRANCH and state["problems"] == []
    assert state["champion"]["run_id"] in {ids["weak"], ids["good"]}
    table = runs_api.registry_table(state)
    assert list(table.columns) == runs_api.REGISTRY_COLUMNS
    assert list(table["role"]).count("champion") == 1
    candidates = set(table[table["role"] == "candidate"]["run_id"])
    assert {ids["worse"], ids["slow"], ids["unfair"], ids["no_impute"]} <= candidates
    assert set(table["run_id"]) == set(ids.values())
    history = runs_api.registry_history("TrainFlow", BRANCH)
    assert list(history.columns) == runs_api.HISTORY_COLUMNS
    promotions = history[history["kind"] == "promote"]
    assert list(promotions["to"])[:2] == [ids["weak"], ids["good"]]
    assert pd.isna(promotions["from"].iloc[0]) and promotions["from"].iloc[1] == ids["weak"]
    assert runs_api.registry_history("TrainFlow", "test.no_such_branch").empty


def test_a_run_without_gates_is_refused() -> None:
    class NoGates:
        pathspec = "TrainFlow/1"

        def __getitem__(self, step: str):
            raise KeyError(step)

    with pytest.raises(LookupError, match="no judge step"):
        runs_api.gate_table(NoGates())


def test_gate_view_says_not_gated_where_the_table_says_passed(runs) -> None:
    results = gates_data(runs["worse"]).gate_results
    view = runs_api.gate_view(runs["worse"])
    assert "passed" not in view.columns and list(view.columns[:3]) == ["result", "suite", "name"]
    assert list(view["result"]) == [runs_api.result_label(r) for r in results]
    ungated = view[view["result"] == "not gated"]
    assert len(ungated) == sum(not r["gated"] for r in results) > 0  # the intersection slices are too small
    assert set(ungated[ungated["actual"] == "-"]["name"]) == {r["name"] for r in results if r["actual"] is None}
    assert list(view[view["result"] == "FAIL"]["name"]) == [r["name"] for r in results
                                                            if r["gated"] and not r["passed"]]


def test_champion_or_latest_prefers_the_registry_champion(runs) -> None:
    champion = Registry("TrainFlow", BRANCH).champion()
    run, why = runs_api.champion_or_latest("TrainFlow", BRANCH)
    assert (run.id, why) == (champion.id, "champion")
    run, why = runs_api.champion_or_latest("TrainFlow", "test.no_such_branch")
    assert run.successful and why.startswith("latest successful run: no champion on branch test.no_such_branch")


def test_report_writes_the_champions_cards_and_names_their_run(runs, tmp_path) -> None:
    from steps.reporting.report import report

    champion = Registry("TrainFlow", BRANCH).champion()
    lines = report(tmp_path, branch=BRANCH)
    assert f"TrainFlow: champion {champion.pathspec} (started " in "\n".join(lines)
    assert f"  notebook: notebooks/01-inspect-training-run.ipynb (TRAIN_RUN_ID={champion.id})" in lines
    for step, card in (("join", "training"), ("judge", "gates")):
        path = (tmp_path / f"trainflow_{step}_card.html").resolve()
        assert f"  {card} card: {path} (from {champion.pathspec}, step {step})" in lines
        assert runs_api.card_data(path.read_text())["metadata"]["pathspec"].startswith(f"{champion.pathspec}/{step}/")
