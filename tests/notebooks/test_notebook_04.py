"""Execute notebook 04 headless on the session's drift MonitorFlow run and check what it shows against the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from notebook_cells import ROOT, assert_ran_on_the_venv_kernel_in, charts, data, execute, table, text

from steps.monitoring.state import load_state

pytestmark = pytest.mark.xdist_group("monitor")  # the monitor's runs are made once, on one worker

NOTEBOOK = ROOT / "notebooks" / "04-review-monitoring.ipynb"


@pytest.fixture(scope="module")
def drift_run(monitor_drift) -> Any:
    """The MonitorFlow run over the two drifted days and a day never scored (it retrained)."""
    return monitor_drift[0].run


@pytest.fixture(scope="module")
def executed(drift_run, workspace: Path, kernel_dir: Path) -> dict[str, Any]:
    """Notebook 04 executed in the workspace on ``drift_run``; its code cells by id."""
    return execute(NOTEBOOK, workspace, kernel_dir,  # the signal followed: the notebook's default
                   {"MONITOR_RUN_ID": drift_run.id, "SUBJECT": "", "STATISTIC": "", "SIGNAL": ""})


def test_runs_on_the_venv_kernel_in_the_workspace(executed, workspace: Path) -> None:
    assert_ran_on_the_venv_kernel_in(executed, workspace)


def test_overview_names_the_run_its_window_and_model(executed, drift_run, train_run) -> None:
    assert f"run: {drift_run.pathspec} (successful: True)" in text(executed["run"])
    overview = {row[""]: row["value"] for row in table(data(executed["run"], "text/html"))}
    assert overview["window"] == "2026-01-07 to 2026-01-09 (3 dates)"
    assert overview["model judged"] == train_run.pathspec
    assert overview["state"] == drift_run.data.state_uri


def test_signals_show_the_drift_and_the_day_never_scored(executed, drift_run) -> None:
    rows = {row[""]: row for row in table(data(executed["signals"], "text/html")) if row[""]}
    assert sorted(rows) == ["2026-01-07", "2026-01-08", "2026-01-09"]
    drifted = drift_run.data.periods[0]["signals"]["feature_drift"]["detail"]
    assert rows["2026-01-07"]["feature_drift"] == f"BREACH: {drifted}"
    assert rows["2026-01-09"]["scoring_failed"].startswith("BREACH")
    assert rows["2026-01-09"]["feature_drift"] == ""  # not judged: nothing was scored that day


def test_breaches_are_the_runs_breached_measurements_furthest_first(executed, drift_run) -> None:
    expected = {(p["period"], m["signal"], m["subject"], m["statistic"])
                for p in drift_run.data.periods for m in p["measurements"] if m["breach"]}
    rows = table(data(executed["breaches"], "text/html"))
    assert f"{len(expected)} breached measurements in the window" in text(executed["breaches"])
    assert {(r["period"], r["signal"], r["subject"], r["statistic"]) for r in rows} == expected
    for newer, older in zip(rows, rows[1:], strict=False):
        assert (newer["period"], float(newer["x threshold"])) >= (older["period"], float(older["x threshold"]))
    assert all(float(r["value"]) > float(r["threshold"]) for r in rows)


def test_the_furthest_breach_is_followed_over_the_stored_history(executed, drift_run) -> None:
    top = table(data(executed["breaches"], "text/html"))[0]
    assert text(executed["series"]).startswith(f"{top['signal']}: {top['subject']} {top['statistic']} over ")
    state = load_state(drift_run.data.roots["state"])
    values = {p["period"]: m["value"] for p in state["periods"] for m in p["measurements"]
              if (m["signal"], m["subject"], m["statistic"]) == (top["signal"], top["subject"], top["statistic"])}
    rows = {r[""]: r for r in table(data(executed["series"], "text/html")) if r[""]}
    assert sorted(rows) == sorted(values) and len(rows) >= 8  # six stable days, then the two drifted ones
    assert all(float(rows[day]["value"]) == pytest.approx(v, abs=1e-6) for day, v in values.items())  # 6 decimals
    assert rows[top["period"]]["breach"] == "True"
    (plot,) = charts(executed["series-plot"])
    assert {r["period"]: r["y"] for r in plot["data"]["values"] if r["line"] == "value"} == pytest.approx(values)
    (heatmap,) = charts(executed["heatmap"])
    assert {r["period"] for r in heatmap["data"]["values"]} == {
        p["period"] for p in state["periods"] if any(m["signal"] == "feature_drift" for m in p["measurements"])}


def test_realized_performance_per_period_and_group(executed, drift_run) -> None:
    state = load_state(drift_run.data.roots["state"])
    rows = {r[""]: r for r in table(data(executed["performance"], "text/html")) if r[""]}
    assert sorted(rows) == [p["period"] for p in state["performance"]] and rows
    reference = drift_run.data.champion["reference_auc"]
    for p in state["performance"]:
        assert float(rows[p["period"]]["AUC"]) == pytest.approx(p["roc_auc"], abs=1e-6)
        assert float(rows[p["period"]]["vs reference"]) == pytest.approx(p["roc_auc"] - reference, abs=1e-6)
    (plot,) = charts(executed["performance-plot"])
    assert [r["period"] for r in plot["data"]["values"]] == [p["period"] for p in state["performance"]
                                                             if p["roc_auc"] is not None]
    sensitive = list(drift_run.data.dataset["sensitive"])
    assert [line for line in text(executed["groups"]).splitlines()] == [f"AUC by {a}" for a in sensitive]
    tables = [o.data["text/html"] for o in executed["groups"].outputs if o.output_type == "display_data"]
    assert len(tables) == len(sensitive)
    levels = set(state["performance"][-1]["groups"][sensitive[0]])
    assert set(table(tables[0])[0]) - {""} == levels


def test_events_of_the_run_and_of_every_run(executed, drift_run) -> None:
    mine = table(data(executed["events"], "text/html"))
    assert len(mine) == len(drift_run.data.events)
    assert {(r["rule"], r["kind"], r["period"]) for r in mine} == {
        (e["rule"], e["kind"], e["period"]) for e in drift_run.data.events}
    stored = table(data(executed["event-history"], "text/html"))
    assert {(r["rule"], r["kind"], r["period"], r["run"]) for r in stored} >= {
        ("drift_detected", "fired", "2026-01-07", drift_run.pathspec)}
    assert [r["period"] for r in stored] == sorted(r["period"] for r in stored)


def test_retraining_names_the_run_it_started(executed, drift_run) -> None:
    shown = {row[""]: row["value"] for row in table(data(executed["retraining"], "text/html"))}
    record = drift_run.data.retraining
    assert shown["fired"] == "True" and shown["strategy"] == drift_run.data.decision["strategy"]
    assert shown["run started"] == record["run"] and shown["status"] == record["status"] == "successful"
    assert shown["promoted"] == str(record["promoted"])
