"""DistillFlow through real Runner runs on the gates branch: the teacher is the planted ``good`` TrainFlow run
(LightGBM, 60 trees) of the session fixture ``gates_scenario``, passed as ``--teacher-run`` so a later rollback of
the champion does not change it."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from support import GATES_BRANCH, card_text, run_flow

from steps.modeling import models
from steps.registry import registry
from steps.registry.registry import Registry

pytestmark = pytest.mark.xdist_group("gates")  # gates_scenario's six TrainFlow runs are made once, on one worker

BRANCH = f"test.{GATES_BRANCH}"
STUDENTS = [
    {"name": "lgbm_small", "type": "lightgbm", "params": {"n_estimators": 30, "num_leaves": 7}},
    {"name": "mlp", "type": "mlp", "params": {"hidden_layer_sizes": [32], "max_iter": 80,
                                              "learning_rate_init": 0.003}},
    {"name": "linear", "type": "linear"},
]
# The 60-tree test teacher is too cheap for the production cost rule (a student at <= 0.10 of its per-row cost):
# MAX_COST_RATIO is set from the ratios measured here instead (see its comment); benchmarks/bench_distill.py checks
# the production rule against the TrainFlow champion of the default data.
MAX_COST_RATIO = 0.6  # measured ONNX cost ratios of the three students against this teacher: see below
PASSING = {"min_auc_ratio": 0.98, "max_cost_ratio": MAX_COST_RATIO, "cost_rows": 3000, "latency_rows": 50,
           "students": STUDENTS}
FAILING = {**PASSING, "min_auc_ratio": 0.9999, "max_cost_ratio": 0.01, "students": [STUDENTS[2]]}


@pytest.fixture(scope="module")
def distill_runs(root, workspace, config_paths, gates_scenario, tmp_path_factory):
    """A DistillFlow run that registers a student, then one whose quality floor no student meets."""
    directory = tmp_path_factory.mktemp("distill-config")
    gates = yaml.safe_load((root / "tests" / "flows" / "configs" / "gates-small.yaml").read_text())
    # ~25 positives per age band on this hold-out: the equalized-odds TPR gap of any model is mostly noise here;
    # the teacher-vs-student comparison (champion/not_less_fair) still gates a widening.
    gates["fairness"]["equalized_odds_difference"] = {"max": 0.45}
    # The 60-tree teacher and a 30-tree student both score one row in ~6 ms natively: the teacher-vs-student
    # latency comparison (champion/not_slower) is a coin toss at this size, above all with another xdist worker
    # busy, so it is switched off here (reported, not gated); a really slower model is the gates tests' planted
    # `slow` run, and tests/unit/test_gates.py covers the check on both sides.
    gates["champion"] = {**gates.get("champion", {}), "latency_tolerance": None}
    (directory / "gates.yaml").write_text(yaml.safe_dump(gates))
    runs = {}
    for name, cfg in (("passing", PASSING), ("failing", FAILING)):
        (directory / f"distill-{name}.yaml").write_text(yaml.safe_dump(cfg))
        configs = {**{k: v for k, v in config_paths.items() if k != "train"}, "gates": directory / "gates.yaml",
                   "distill": directory / f"distill-{name}.yaml"}
        result = run_flow(root, workspace, "distill_flow.py", configs, branch=GATES_BRANCH,
                          teacher_run=gates_scenario["good"].id)
        assert result.status == "successful", f"{name}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        runs[name] = result.run
    return runs, gates_scenario["good"]


def test_teacher_is_the_given_run_and_verified(distill_runs):
    runs, good = distill_runs
    data = runs["passing"].data
    assert data.teacher_run_id == good.id
    assert data.teacher_fingerprint == good.data.model_fingerprint


def test_parity_holds_for_every_exported_model(distill_runs):
    data = distill_runs[0]["passing"].data
    assert data.teacher_eval["parity"]["onnx"]["passed"]
    assert {c["name"] for c in data.candidates} == {s["name"] for s in STUDENTS}
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
    assert costs[data.model_name] <= MAX_COST_RATIO
    assert not any(n.startswith("significantly_better") for n in gated)
    model = registry.load_model(run)  # fingerprint-verified
    assert model.predict_proba(data.holdout_df.iloc[:5]).shape == (5, 2)
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
    assert run.data.quantized["parity"] is not None or not run.data.quantized["changed"]


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
