"""MonitorFlow end to end: stable days stay quiet; drift is detected, alerted (log, JSON, webhook) and retrained on.

The champion is ``train_run``; eight generated days were scored with it (drift from 2026-01-07). The first run
backfills the six stable days; the second sees the drifted days and a day that was never scored.
"""

from __future__ import annotations

import json

import pytest
from metaflow import Run, namespace
from support import card_text, run_cli, run_flow

from steps.monitoring.state import load_state
from steps.reporting.runs import card_html

# the monitor's runs (session fixtures in conftest.py) are made once, on one worker: the card tests in a browser
# (test_cards_in_a_browser.py) read them too
pytestmark = pytest.mark.xdist_group("monitor")

DRIFT_DAY = "2026-01-07"


def test_stable_days_are_clean_and_quiet(monitor_stable) -> None:
    data = monitor_stable.run.data
    assert [p["period"] for p in data.periods] == [f"2026-01-0{i}" for i in range(1, 7)]
    breached = {(p["period"], name) for p in data.periods for name, s in p["signals"].items() if s["breach"]}
    assert breached == set()
    assert [e for e in data.events if e["kind"] == "fired"] == []
    assert data.decision["fire"] is False and data.retraining is None


def test_the_reference_profile_comes_from_the_model_that_scored(monitor_stable, train_run) -> None:
    champion = monitor_stable.run.data.champion
    assert champion["run"] == train_run.pathspec
    assert champion["profile"] == train_run.data.reference_profile
    assert 0.5 < champion["reference_auc"] <= 1.0


def test_covariate_drift_is_detected_in_the_first_run_that_sees_it(monitor_drift) -> None:
    result, _ = monitor_drift
    by_day = {p["period"]: p for p in result.run.data.periods}
    assert by_day[DRIFT_DAY]["signals"]["feature_drift"]["breach"]
    drifted = set(by_day[DRIFT_DAY]["signals"]["feature_drift"]["detail"].split(", "))
    assert {"amount", "channel"} <= drifted
    ids = [e["id"] for e in result.run.data.events]
    assert f"drift_detected-{DRIFT_DAY}-fired" in ids


def test_a_day_without_a_trusted_partition_is_a_critical_scoring_failure(monitor_drift, production) -> None:
    result, _ = monitor_drift
    events = {e["id"]: e for e in result.run.data.events}
    failed = events["scoring_failed-2026-01-09-fired"]
    assert failed["tier"] == "critical"
    where = production["predictions"] / "dt=2026-01-09"
    assert failed["detail"].startswith(f"no trusted partition: {where} has no _manifest.json (")  # (streak)
    assert "scoring_failed" in {a["rule"] for a in result.run.data.active_alerts}


def test_events_are_json_objects_in_the_state_root_and_on_the_webhook(monitor_drift, production) -> None:
    result, posted = monitor_drift
    stored = production["state"] / "events" / f"dt={DRIFT_DAY}" / f"drift_detected-{DRIFT_DAY}-fired.json"
    body = json.loads(stored.read_text())
    assert body["rule"] == "drift_detected" and body["run"] == result.run.pathspec
    texts = [a["text"] for payload in posted for a in payload["attachments"]]
    assert any("drift_detected FIRING on 2026-01-07" in t for t in texts)
    assert any("scoring_failed FIRING on 2026-01-09" in t for t in texts)
    assert set(result.run.data.delivered) == {e["id"] for e in result.run.data.events}


def test_retraining_was_started_and_decided_by_the_gates(monitor_drift, train_run) -> None:
    result, _ = monitor_drift
    record = result.run.data.retraining
    assert result.run.data.decision["fire"] and "feature_drift breached" in result.run.data.decision["reason"]
    assert record["launcher"] == "runner" and record["status"] == "successful"
    namespace(None)
    retrained = Run(record["run"])
    assert retrained.successful and "candidate" in retrained.tags
    # the retraining repeats the monitored run's own data and configs (tests/flows/conftest.py): the same model, so
    # the gates reach the same verdict on it (the tiny data's model misses the shipped performance gates: FORCE_TINY)
    performance = {f for f in retrained.data.gate_summary["failed"] if f.startswith("performance/")}
    assert performance and performance == {f for f in train_run.data.gate_summary["failed"]
                                           if f.startswith("performance/")}
    assert retrained.data.model_name == train_run.data.model_name
    assert record["promoted"] is False and retrained.data.gates_passed is False
    assert retrained.data.registry_event is None and "champion" not in retrained.tags
    assert retrained.data.lineage["rows"] == train_run.data.lineage["rows"]  # the configured retraining data
    assert any(e["rule"] == "retraining_started" for e in result.run.data.events)
    log = result.run["launch_retraining"].task.stderr  # the retraining's id and its steps, as they happened
    assert f"retraining started: {record['run']}" in log
    relayed = [line for line in log.splitlines() if f"[{record['run']}]" in line]
    for step_name in ("start", "split", "train_candidate", "join", "judge", "end"):
        assert any(f"/{step_name}/" in line and "Task is starting" in line for line in relayed), step_name


def test_state_holds_the_history_and_the_retraining(monitor_drift, production) -> None:
    state = load_state(str(production["state"]))
    assert [p["period"] for p in state["periods"]] == [f"2026-01-0{i}" for i in range(1, 10)]
    assert state["retrain"]["run"] == monitor_drift[0].run.data.retraining["run"]
    assert state["performance"] and {p["period"] for p in state["performance"]} <= {
        f"2026-01-0{i}" for i in range(1, 9)}


def test_the_card_shows_drift_alerts_and_performance(monitor_drift) -> None:
    result, _ = monitor_drift
    text = card_text(card_html(result.run, step="end"))
    for fragment in ("Feature drift over time", "drift_detected", "scoring_failed", "Realized performance",
                     "Retraining", "active alert", "labelled rows"):
        assert fragment in text
    labelled = [p for p in result.run.data.performance if p["auc_interval"]]
    assert labelled and f"{labelled[-1]['auc_interval'][0]:.4f}, " in text  # the AUC table shows the interval


def test_runs_cli_shows_the_window_and_the_alerts(monitor_drift, workspace) -> None:
    run = monitor_drift[0].run
    proc = run_cli(workspace, "steps.reporting.runs", "MonitorFlow", "--run-id", run.id)
    assert proc.returncode == 0, proc.stderr
    window = run.data.window
    assert f"window: {window[0]} to {window[-1]} ({len(window)} dates)" in proc.stdout
    assert "active alerts: " in proc.stdout and "critical scoring_failed" in proc.stdout
    assert f"state: {run.data.state_uri}" in proc.stdout


@pytest.mark.parametrize(("params", "message"), [
    ({"days": -3}, ("invalid configuration in --days:", "- window_days: Input should be greater than or equal to 1")),
    ({"model_run": "TrainFlow/123"}, ("model run TrainFlow/123 not found",)),
    ({"model_run": "ScoreFlow/123"},
     ("model run 'ScoreFlow/123': expected TrainFlow/<run id> or DistillFlow/<run id>",)),
    ({"predictions": "<a file>"}, ("state.json is a file: give ScoreFlow's output folder (its dt=<date> partitions)",)),
])
def test_bad_input_stops_at_start_with_its_message_without_a_retry(root, workspace, monitor_configs, production,
                                                                    monitor_drift, params, message) -> None:
    before = production["state"].joinpath("state.json").read_bytes()
    params = {k: str(production["state"] / "state.json") if v == "<a file>" else v for k, v in params.items()}
    result = run_flow(root, workspace, "monitor_flow.py", monitor_configs, date=DRIFT_DAY, **params)
    assert result.status == "failed"
    out = result.stdout + result.stderr
    assert all(line in out for line in message)  # a multi-line message is logged line by line
    assert "This failed task will not be retried" in out and "Internal error" not in out
    assert production["state"].joinpath("state.json").read_bytes() == before  # nothing written


@pytest.mark.parametrize(("origin", "step"), [("monitor_stable", "end"), ("monitor_drift", "launch_retraining")])
def test_a_run_resumed_after_a_later_one_saved_the_state_changes_nothing(root, workspace, monitor_drift, production,
                                                                         hook_env, request, origin, step) -> None:
    from metaflow import Flow, Runner

    result = request.getfixturevalue(origin)
    run = (result[0] if isinstance(result, tuple) else result).run
    state_file = production["state"] / "state.json"
    namespace(None)
    before, posted, trained = state_file.read_bytes(), len(hook_env.received), len(list(Flow("TrainFlow").runs()))
    with Runner(str(root / "flows" / "monitor_flow.py"), show_output=False, cwd=str(workspace)) as runner, \
            runner.resume(origin_run_id=run.id, step_to_rerun=step) as resumed:
        assert resumed.status == "failed"
        out = resumed.stdout + resumed.stderr
    assert f"{state_file} changed since MonitorFlow/" in out and f"[{resumed.run.id}/{step}/" in out
    assert f"{monitor_drift[0].run.pathspec} saved it at " in out and "this run stops here" in out
    assert "will not be retried" in out and "Internal error" not in out
    assert state_file.read_bytes() == before  # the drift run's history, alert states and retraining record stand
    assert len(hook_env.received) == posted  # no event sent
    assert len(list(Flow("TrainFlow").runs())) == trained  # no retraining started
