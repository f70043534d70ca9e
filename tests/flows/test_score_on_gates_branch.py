"""ScoreFlow on the gates branch: the champion of the planted-regression runs (``gates_scenario``) with top-k
contributions and a shadow model, and the ONNX runtime against the native pipeline on the same partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support import assert_user_error, logs, score_configs as configs_for, score_flow

from steps.modeling import models
from steps.registry import registry
from steps.scoring.partition import read_manifest, read_partition

pytestmark = pytest.mark.xdist_group("gates")  # gates_scenario's runs are made once, on one worker
D_GATES = "2026-01-09"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("score-gates")


def test_champion_with_top_k_contributions_and_a_shadow(root, workspace, config_paths, scratch, tiny_data,
                                                       gates_scenario):
    champion = registry.Registry("TrainFlow", "test.gates", "tabular_mlops").champion()
    shadow = gates_scenario["worse"]
    output = scratch / "out-champion"
    assert not shadow.data.gates_passed  # the one-stump model: a shadow of it must be forced, and it is recorded
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "champion", top_k=3), branch="gates",
                        input=str(tiny_data), output=str(output), date=D_GATES, shadow_run=shadow.id,
                        model_run=champion.id,  # the LightGBM teacher itself, even when a student serves for it
                        force="canary: how far the stump is from the champion")
    assert result.status == "successful", logs(result)[-4000:]
    run = result.run
    assert read_manifest(str(output), D_GATES)["forced"] == {
        "reason": "canary: how far the stump is from the champion", "by": "ci",
        "overrides": {"shadow": ["it did not pass its gates"]}}
    assert run.data.model_run_used == champion.pathspec
    assert run.data.model_fingerprint == champion.data.model_fingerprint
    table = read_partition(str(output), D_GATES, verify=True).to_pandas()
    assert len(table) == 6000
    names = set(run.data.feature_names)
    for i in (1, 2, 3):
        assert set(table[f"top{i}_feature"]) <= names
    assert (table["top1_contribution"].abs() >= table["top3_contribution"].abs()).all()
    agree = float((table["decision"] == table["shadow_decision"]).mean())
    report = run.data.shadow_report
    assert report["run"] == shadow.pathspec and report["rows"] == 6000
    assert report["agreement_rate"] == pytest.approx(agree)
    assert report["mean_abs_diff"] == pytest.approx(float((table["score"] - table["shadow_score"]).abs().mean()))
    assert "shadow " + shadow.pathspec in logs(result)


def test_onnx_runtime_matches_native_on_the_same_partition(root, workspace, config_paths, scratch, tiny_data,
                                                           gates_scenario, spec):
    good = gates_scenario["good"]
    output = scratch / "out-onnx"
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "onnx", runtime="onnx"),
                        branch="gates", input=str(tiny_data), output=str(output), date=D_GATES, model_run=good.id)
    assert result.status == "successful", logs(result)[-4000:]
    parity = result.run.data.onnx_parity
    assert parity["rows"] == 2000 and parity["max_abs_diff"] < 1e-4 and parity["decision_flips"] == 0
    onnx_rows = read_partition(str(output), D_GATES, verify=True).to_pandas()
    frame = pd.read_parquet(tiny_data).set_index("transaction_id").loc[onnx_rows["transaction_id"]].reset_index()
    pipeline = models.deserialize(good.data.model_blob, good.data.model_fingerprint)
    native = models.predict_proba(pipeline, frame, spec)
    assert len(onnx_rows) == 6000
    assert np.abs(onnx_rows["score"].to_numpy() - native).max() < 1e-4
    assert ((onnx_rows["score"] >= 0.3) == (native >= 0.3)).all()


@pytest.mark.parametrize("option", ["model_run", "shadow_run"])
def test_a_run_that_failed_its_gates_is_refused_without_force(root, workspace, config_paths, scratch, tiny_data,
                                                              gates_scenario, option):
    worse = gates_scenario["worse"]  # fails champion/significantly_better by construction
    output = scratch / f"out-refused-{option}"
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "refused"), branch="gates",
                        input=str(tiny_data), output=str(output), date=D_GATES, **{option: worse.id})
    assert_user_error(result, "start", f"run {worse.pathspec}: it did not pass its gates; refusing to score with it "
                                       "(give --force REASON to override")
    assert not output.exists()


def test_a_run_of_another_flow_is_refused_without_force(root, workspace, config_paths, scratch, tiny_data,
                                                        gates_scenario):
    good = gates_scenario["good"]
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "otherflow"), branch="gates",
                        input=str(tiny_data), output=str(scratch / "out-otherflow"), date=D_GATES,
                        model_run=f"ScoreFlow/{good.id}")
    assert_user_error(result, "start", f"run ScoreFlow/{good.id} not found")
