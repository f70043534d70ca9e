"""DistillFlow through real Runner runs on the gates branch: the teacher is the planted ``good`` TrainFlow run
(LightGBM, 60 trees) of the session fixture ``gates_scenario``, passed as ``--teacher-run`` so a later rollback of
the champion does not change it."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from support import DISTILL_MAX_COST_RATIO, DISTILL_STUDENTS, GATES_BRANCH, card_text, run_cli, run_flow

from steps.data.table import read_part
from steps.modeling import models
from steps.registry import registry
from steps.registry.registry import Registry

pytestmark = pytest.mark.xdist_group("gates")  # gates_scenario's six TrainFlow runs are made once, on one worker

BRANCH = f"test.{GATES_BRANCH}"
# the runs are the session fixture ``distill_runs`` (tests/conftest.py): the card tests in a browser read them too


def test_teacher_is_the_given_run_and_verified(distill_runs):
    runs, good = distill_runs
    data = runs["passing"].data
    assert data.teacher_run_id == good.id
    assert data.teacher_fingerprint == good.data.model_fingerprint


def test_rows_stay_by_reference_and_every_student_fits_the_rows_the_teacher_labelled(distill_runs):
    import pandas as pd

    runs, good = distill_runs
    run = runs["passing"]
    assert run.data.split_ref["table"] == good.data.split_ref["table"]  # the teacher's table, not a copy
    assert (run.data.split_ref["codes"] == good.data.split_ref["codes"]).all()
    for step in run:
        for task in step:
            frames = [a.id for a in task if isinstance(a.data, pd.DataFrame)]
            assert not frames, f"{task.pathspec} stores frames: {frames}"
    start = run["start"].task.data
    assert len(start.transfer_logit) == int((good.data.split_ref["codes"] == 0).sum())  # every training row
    fitted = [t.data.student["fit"] for t in run["train_student"]]  # fitted on the rebuilt, fingerprint-checked rows
    assert len(fitted) == len(DISTILL_STUDENTS) and all(f["fit_seconds"] > 0 for f in fitted)


def test_parity_holds_for_every_exported_model(distill_runs):
    data = distill_runs[0]["passing"].data
    assert data.teacher_eval["parity"]["onnx"]["passed"]
    assert {c["name"] for c in data.candidates} == {s["name"] for s in DISTILL_STUDENTS}
    for c in data.candidates:
        onnx = c["parity"]["onnx"]
        assert onnx["passed"] and onnx["max_abs_diff"] <= 1e-4 and onnx["decision_flips"] == 0, c["name"]
        assert set(c["runtimes"]) >= {"native", "onnx", "quantized"}


def test_quantized_mlp_is_smaller_and_trees_are_not_quantized(distill_runs):
    rows = {c["name"]: c for c in distill_runs[0]["passing"].data.candidates}
    mlp = rows["mlp"]["quantization"]
    assert mlp["changed"] and mlp["quantized_size_bytes"] < mlp["size_bytes"]
    assert not rows["lgbm_small"]["quantization"]["changed"]


def test_selected_student_is_registered_serving_and_verifies(distill_runs):
    run = distill_runs[0]["passing"]
    data = run.data
    assert data.model_name and data.gates_passed, data.gate_summary
    assert {"serving", "candidate"} <= set(run.user_tags)
    gated = {g["name"] for g in data.gate_results if g["gated"]}
    assert {"quality_floor[auc_ratio]", "cost_ceiling[per_row]"} <= gated
    latency = next(g for g in data.gate_results if g["name"] == "not_slower[p50_ms]")
    assert latency["gated"] is False and latency["actual"] > 0  # switched off in this test, still measured
    costs = {c["name"]: round(c["cost_ratio"], 3) for c in data.candidates}
    print(f"ONNX cost ratios against the 60-tree teacher: {costs}")
    assert costs[data.model_name] <= DISTILL_MAX_COST_RATIO
    assert not any(n.startswith("significantly_better") for n in gated)
    model = registry.load_model(run)  # fingerprint-verified
    assert model.predict_proba(read_part(data.split_ref, "holdout").iloc[:5]).shape == (5, 2)
    assert hashlib.sha256(data.onnx_model).hexdigest() == data.onnx_fingerprint
    assert models.fingerprint(data.model_blob) == data.model_fingerprint
    events = Registry("DistillFlow", BRANCH).history()
    assert data.registry_event["event_id"] in {e["event_id"] for e in events}  # move_tag's event, as recorded
    assert (data.registry_event["kind"], data.registry_event["to"]) == ("serve", run.id)
    assert data.registry_event["gate_summary"] == data.gate_summary


def test_student_below_the_quality_floor_is_not_registered(distill_runs):
    runs, _ = distill_runs
    failing = runs["failing"]
    assert failing.data.model_name is None and not failing.data.gates_passed
    reasons = failing.data.candidates[0]["reasons"]
    assert len(reasons) == 2 and "auc_ratio" in reasons[0] and "cost_ratio" in reasons[1]  # both checks can fail
    assert "serving" not in failing.user_tags and "candidate" in failing.user_tags
    assert "serving" in Registry("DistillFlow", BRANCH).run(runs["passing"].id).user_tags


def test_card_plots_quality_against_cost(distill_runs):
    from metaflow.cards import get_cards

    run = distill_runs[0]["passing"]
    cards = get_cards(run["join"].task, id="distill")
    text = card_text(cards[0].get())
    assert "AUC ratio" in text and "onnx us/row" in text and "quality_floor[auc_ratio]" in text
    assert f"{run.data.model_name} will serve:" in text
    failing = get_cards(distill_runs[0]["failing"]["join"].task, id="distill")[0].get()
    assert "No student serves from this run:" in card_text(failing)
    assert run.data.quantized["parity"] is not None or not run.data.quantized["changed"]


def test_runs_cli_shows_the_teacher_the_students_and_who_serves(workspace, distill_runs):
    runs, good = distill_runs
    passing = run_cli(workspace, "steps.reporting.runs", "DistillFlow", "--run-id", runs["passing"].id)
    assert passing.returncode == 0, passing.stderr
    assert f"teacher: TrainFlow/{good.id} (" in passing.stdout
    assert all(f"  {s['name']} (" in passing.stdout for s in DISTILL_STUDENTS)
    assert f"serving: {runs['passing'].data.model_name} (this run is tagged serving)" in passing.stdout
    failing = run_cli(workspace, "steps.reporting.runs", "DistillFlow", "--run-id", runs["failing"].id)
    assert failing.returncode == 0 and "serving: not this run; no student met the rule" in failing.stdout


def test_score_flow_serves_the_registered_student_of_the_champion(root, workspace, config_paths, distill_runs,
                                                                   gates_datasets, tmp_path):
    """With no --model-run, ScoreFlow scores with the champion's registered student (native and its ONNX graph)."""
    import json

    import pandas as pd


    passing, good = distill_runs[0]["passing"], distill_runs[1]
    # test_gates_flow.py's rollback test restores `good` as champion after rolling it back, in any order
    assert Registry("TrainFlow", f"test.{GATES_BRANCH}").champion().id == good.id
    score_cfg = tmp_path / "score.yaml"
    score_cfg.write_text(yaml.safe_dump({"shard_rows": 100_000, "runtime": "onnx"}))
    configs = {"dataset": config_paths["dataset"], "gates": config_paths["gates"],
               "profile": config_paths["profile"], "score": score_cfg}
    sample = tmp_path / "in.parquet"
    pd.read_parquet(gates_datasets["normal"]).head(3000).to_parquet(sample)
    result = run_flow(root, workspace, "score_flow.py", configs, branch=GATES_BRANCH, input=str(sample),
                      output=str(tmp_path / "out"), date="2026-01-31")
    assert result.status == "successful", result.stdout[-3000:]
    manifest = json.loads((tmp_path / "out" / "dt=2026-01-31" / "_manifest.json").read_text())
    assert manifest["model"]["run"] == passing.pathspec
    assert manifest["model"]["fingerprint"] == passing.data.model_fingerprint
    assert manifest["onnx_parity"]["rows"] > 0 and manifest["totals"]["rows_out"] > 0
