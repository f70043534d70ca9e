"""Execute notebook 02 headless on the planted ``worse`` challenger of ``gates_scenario`` and check what it shows.

Only the ``worse`` run's own gates are asserted on: other tests may move the champion of the branch (a rollback to
``weak``) before this one runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from notebook_cells import ROOT, assert_ran_on_the_venv_kernel_in, body_rows, charts, data, execute, table, text

pytestmark = pytest.mark.xdist_group("gates")  # gates_scenario's six TrainFlow runs are made once, on one worker

NOTEBOOK = ROOT / "notebooks" / "02-compare-champion-challenger.ipynb"
BRANCH = "test.gates"
CHART_CELLS = ("curves", "group-bars")


@pytest.fixture(scope="module")
def executed(gates_scenario, workspace: Path, kernel_dir: Path) -> dict[str, Any]:
    """Notebook 02 executed in the workspace on the ``worse`` challenger; its code cells by id."""
    return execute(NOTEBOOK, workspace, kernel_dir, {"CHALLENGER_RUN_ID": gates_scenario["worse"].id,
                                                     "REGISTRY_BRANCH": BRANCH})


@pytest.fixture(scope="module")
def worse(gates_scenario) -> Any:
    """The ``worse`` run's gates task data (compared with champion ``good``, failed the significance gate)."""
    return gates_scenario["worse"]["judge"].task.data


def test_ends_with_how_to_promote_or_roll_back() -> None:
    last = nbformat.read(NOTEBOOK, as_version=4).cells[-1]
    assert last.cell_type == "markdown" and "promote" in last.source and "--force --reason" in last.source
    assert "rollback" in last.source and "python -m steps.registry" in last.source


def test_runs_on_the_venv_kernel_in_the_workspace(executed, workspace: Path) -> None:
    assert_ran_on_the_venv_kernel_in(executed, workspace)


def test_reads_the_requested_challenger(executed, gates_scenario) -> None:
    out = text(executed["run"])
    assert f"run: {gates_scenario['worse'].pathspec} (started " in out and f"branch: {BRANCH}\n" in out


def test_verdict_names_the_failed_gate(executed, worse) -> None:
    out = text(executed["verdict"])
    assert "gates passed: False" in out
    assert "champion/significantly_better[roc_auc]" in out
    assert f"failed gates: {', '.join(worse.gate_summary['failed'])}\n" in out
    suites = table(data(executed["suites"], "text/html"))
    assert {row[""] for row in suites} == set(worse.gate_summary["suites"])


def test_comparison_with_the_champion_it_was_compared_with(executed, gates_scenario, worse) -> None:
    good = gates_scenario["good"].id
    assert worse.champion_run_id == good
    assert f"champion: {good}\n" in text(executed["comparison"])
    rows = table(data(executed["comparison"], "text/html"))
    assert len(rows) == 1
    row = rows[0]
    assert row["champion_run_id"] == good and row["metric"] == "roc_auc"
    assert row["gate"] == "champion/significantly_better[roc_auc]" and row["passed"] == "False"
    assert float(row["difference"]) < 0 and float(row["low"]) <= float(row["difference"]) <= float(row["high"])
    assert 0 <= float(row["p_value"]) <= 1 and row["method"] == "delong"
    champion_gates = table(data(executed["champion-gates"], "text/html"))
    assert {r["suite"] for r in champion_gates} == {"champion"}
    assert {"significantly_better[roc_auc]", "not_slower[p50_ms]"} <= {r["name"] for r in champion_gates}
    performance = table(data(executed["performance"], "text/html"))
    assert {"challenger", "champion"} <= set(performance[0])
    assert {r[""] for r in performance} == set(worse.gate_report["performance"])


def test_gate_table_has_one_row_per_gate_result(executed, worse) -> None:
    html = data(executed["gates"], "text/html")
    assert body_rows(html) == len(worse.gate_results) > 20
    rows = table(html)
    assert [(r["suite"], r["name"]) for r in rows] == [(g["suite"], g["name"]) for g in worse.gate_results]
    assert {"result", "threshold", "actual", "low", "high", "detail", "gated"} <= set(rows[0])
    assert "passed" not in rows[0]
    expected = ["not gated" if not g["gated"] else "PASS" if g["passed"] else "FAIL" for g in worse.gate_results]
    assert [r["result"] for r in rows] == expected and "not gated" in expected  # the intersection slices
    assert all(r["actual"] == "-" for r, g in zip(rows, worse.gate_results, strict=True) if g["actual"] is None)
    assert "NaN" not in {r["actual"] for r in rows}


def test_charts_are_displayed(executed, worse) -> None:
    counts = {cell: len(charts(executed[cell])) for cell in CHART_CELLS}
    assert counts == {"curves": 1, "group-bars": len(worse.gate_report["fairness"])}
    assert [c["title"] for c in charts(executed["group-bars"])] == [f"by {a}" for a in worse.gate_report["fairness"]]
    roc = charts(executed["curves"])[0]["hconcat"][0]["data"]["values"]
    assert {r["model"] for r in roc} == set(worse.gate_report["curves"])  # the challenger, and the champion it met


def test_group_table(executed, worse) -> None:
    rows = table(data(executed["groups"], "text/html"))
    assert len(rows) == sum(len(groups) for groups in worse.gate_report["fairness"].values())
    assert {r["attribute"] for r in rows} == set(worse.gate_report["fairness"])
    assert {"group", "rows", "positives", "selection_rate", "tpr", "fpr", "auc", "gated"} <= set(rows[0])


def test_efficiency_side_by_side(executed, worse) -> None:
    rows = {r[""]: r for r in table(data(executed["efficiency"], "text/html"))}
    assert {"p50_ms", "p99_ms", "rows_per_s", "size_mb", "peak_memory_mb"} <= set(rows)
    assert set(rows["p50_ms"]) == {"", "challenger", "champion"}


def test_registry_state_and_history(executed, gates_scenario) -> None:
    ids = {name: run.id for name, run in gates_scenario.items()}
    out = text(executed["registry"])
    assert "problems: none" in out
    registry = table(data(executed["registry"], "text/html"))
    champion = [r["run_id"] for r in registry if r["role"] == "champion"]
    assert len(champion) == 1 and f"champion: {champion[0]}\n" in out and champion[0] in {ids["weak"], ids["good"]}
    assert ids["worse"] in {r["run_id"] for r in registry if r["role"] == "candidate"}
    history = table(data(executed["history"], "text/html"))
    promotions = [(r["kind"], r["to"]) for r in history if r["kind"] == "promote"]
    assert ("promote", ids["weak"]) in promotions and ("promote", ids["good"]) in promotions
