"""steps/distill.py: the sigmoid wrapper, student ONNX graphs and their parity, int8 quantization, the transfer set,
the selection rule and the distillation verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lightgbm.basic import LightGBMError
from sklearn.linear_model import Ridge

from steps.config import CandidateConfig, ConfigError, DistillConfig, StudentConfig, parse_distill
from steps.config.profile import StepResources
from steps.data import table
from steps.distill.onnx import parity_check, quantize, to_onnx
from steps.distill.selection import (
    TrainedStudent,
    distillation_verdict,
    evaluate_model,
    export_teacher,
    gate_selected,
    select,
    time_models,
)
from steps.distill.students import (
    DistilledClassifier,
    TransferSetMismatch,
    build_student,
    fit_student,
    frame_fingerprint,
    logit,
    sigmoid,
    student_resources,
    teacher_logits,
    transfer_frame,
    transfer_set,
)
from steps.gates.result import GateResult
from steps.modeling import models
from steps.modeling.onnx import OUTPUT, OnnxScorer

STUDENTS = {
    "lightgbm": StudentConfig(name="lgbm", type="lightgbm", params={"n_estimators": 20, "num_leaves": 7}),
    "mlp": StudentConfig(name="mlp", type="mlp", params={"hidden_layer_sizes": [16], "max_iter": 40}),
    "linear": StudentConfig(name="linear", type="linear"),
}


@pytest.fixture(scope="module")
def cfg() -> DistillConfig:
    return DistillConfig(students=list(STUDENTS.values()), cost_rows=500, latency_rows=20)


@pytest.fixture(scope="module")
def teacher(split, dataset_spec):
    candidate = CandidateConfig(name="t", type="lightgbm", params={"n_estimators": 40, "num_leaves": 15,
                                                                     "min_child_samples": 10})
    pipeline, _ = models.fit(models.build_pipeline(candidate, dataset_spec, 0, 1), split.train, dataset_spec, 1)
    return pipeline


@pytest.fixture(scope="module")
def students(teacher, split, dataset_spec, cfg):
    """Each student type fitted on the teacher's logits, with its ONNX bytes."""
    frame = transfer_set(split.train, dataset_spec, cfg)
    target = teacher_logits(teacher, frame, dataset_spec)
    out = {}
    for kind, student in STUDENTS.items():
        pipeline, _ = fit_student(build_student(student, dataset_spec, 0), frame, target,
                                  dataset_spec)
        out[kind] = (pipeline, to_onnx(pipeline, dataset_spec))
    return out


def test_wrapper_predict_proba_is_sigmoid_of_the_regressor():
    X = np.random.default_rng(0).normal(size=(200, 3))
    z = X @ np.array([1.0, -2.0, 0.5])
    clf = DistilledClassifier(Ridge(alpha=1e-6)).fit(X, z)
    proba = clf.predict_proba(X)
    assert list(clf.classes_) == [0, 1] and proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z)), atol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), (z >= 0).astype(int))
    np.testing.assert_allclose(logit(sigmoid(np.array([-3.0, 0.0, 5.0]))), [-3.0, 0.0, 5.0])


def test_student_pipeline_survives_serialization(students, split, dataset_spec):
    pipeline, _ = students["mlp"]
    blob = models.serialize(pipeline)
    again = models.deserialize(blob, models.fingerprint(blob))
    np.testing.assert_array_equal(models.predict_proba(again, split.holdout, dataset_spec),
                                  models.predict_proba(pipeline, split.holdout, dataset_spec))


@pytest.mark.parametrize("kind", list(STUDENTS))
def test_student_onnx_with_sigmoid_matches_native(kind, students, split, dataset_spec):
    pipeline, blob = students[kind]
    scorer = OnnxScorer(blob)
    native = models.predict_proba(pipeline, split.holdout, dataset_spec)
    result = parity_check(native, scorer.predict(split.holdout), 0.3, 1e-4, 1e-4)
    assert result["passed"], result
    assert result["max_abs_diff"] < 1e-5
    proba = scorer.session.run([OUTPUT], scorer.feed(split.holdout.iloc[:5]))[0]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)


def test_teacher_exports_through_export_module(teacher, split, dataset_spec):
    scorer = OnnxScorer(to_onnx(teacher, dataset_spec))
    native = models.predict_proba(teacher, split.holdout, dataset_spec)
    assert parity_check(native, scorer.predict(split.holdout), 0.3, 1e-4, 1e-4)["passed"]


def test_quantized_mlp_is_smaller_and_trees_and_linear_models_are_untouched(students, split, dataset_spec):
    q_mlp, mlp_info = quantize(students["mlp"][1])
    assert mlp_info["changed"] and mlp_info["quantized_size_bytes"] < mlp_info["size_bytes"]
    assert "MatMulInteger" in mlp_info["new_ops"]
    native = models.predict_proba(students["mlp"][0], split.holdout, dataset_spec)
    assert parity_check(native, OnnxScorer(q_mlp).predict(split.holdout), 0.3, 0.05, 0.01)["passed"]
    for kind in ("lightgbm", "linear"):  # a tree ensemble; single-column weights stay float
        _, info = quantize(students[kind][1])
        assert not info["changed"], kind


def test_parity_check_counts_flips_against_the_rate():
    native = np.full(20_000, 0.2)
    onnx = native.copy()
    onnx[:2] = 0.5  # two flips at 0.3 in 20,000 rows: allowed at 1 per 10,000
    assert parity_check(native, onnx, 0.3, 1.0, 1e-4)["passed"]
    onnx[:3] = 0.5
    assert not parity_check(native, onnx, 0.3, 1.0, 1e-4)["passed"]
    assert not parity_check(native, native + 1e-3, 0.3, 1e-4, 1e-4)["passed"]


def test_transfer_set_augmentation_is_off_by_default(split, dataset_spec, cfg):
    assert len(transfer_set(split.train, dataset_spec, cfg)) == len(split.train)
    aug = cfg.model_copy(update={"augmentation": cfg.augmentation.model_copy(update={"copies": 2})})
    frame = transfer_set(split.train, dataset_spec, aug)
    n = len(split.train)
    assert len(frame) == 3 * n and list(frame.columns) == dataset_spec.features
    assert not np.allclose(frame["amount"].iloc[n:2 * n].to_numpy(), frame["amount"].iloc[:n].to_numpy())
    assert frame["amount"].min() >= 0


@pytest.mark.parametrize(("limit", "copies"), [(None, 0), (700, 0), (700, 2)])
def test_the_transfer_set_read_by_reference_is_the_one_built_from_the_frame(
        split, dataset_spec, cfg, limit, copies, tmp_path, monkeypatch):
    """What each DistillFlow task rebuilds from the teacher's split_ref: the rows (the sample only, from the table
    as stored) and the seeded copies of transfer_set on the training frame; another frame fails its fingerprint."""
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 300)  # many row groups: the sample is kept from each one read
    ref = table.frames_ref({"train": split.train, "holdout": split.holdout}, str(tmp_path))
    settings = cfg.model_copy(update={"max_transfer_rows": limit, "augmentation": cfg.augmentation.model_copy(
        update={"copies": copies})})
    expected = transfer_set(split.train.reset_index(drop=True), dataset_spec, settings)
    built = transfer_frame(ref, dataset_spec, settings, frame_fingerprint(expected))
    pd.testing.assert_frame_equal(built, expected)
    assert len(built) == (limit or len(split.train)) * (copies + 1) and list(built.columns) == dataset_spec.features
    if limit is not None:  # DataFrame.sample's rows, in table order
        drawn = split.train.reset_index(drop=True).sample(n=limit, random_state=settings.seed).sort_index()
        pd.testing.assert_frame_equal(built.iloc[:limit], drawn[dataset_spec.features].reset_index(drop=True))
    other = settings.model_copy(update={"seed": settings.seed + 1}) if limit else settings.model_copy(
        update={"max_transfer_rows": 500})
    with pytest.raises(TransferSetMismatch, match=r"transfer set rebuilt from .*\.parquet .* is not the one the "
                                                  r"teacher labelled .* run DistillFlow again from `start`"):
        transfer_frame(ref, dataset_spec, other, frame_fingerprint(expected))


def test_an_older_teachers_frames_are_stored_once_and_read_by_reference(split, tmp_path, monkeypatch):
    """A teacher run from before references kept its parts as frames (the split step's ``train_df``, ``holdout_df``):
    DistillFlow stores them as one table under the datastore's tables root and reads them by reference."""
    from types import SimpleNamespace

    from steps.distill import selection
    from steps.registry.registry import RegistryError

    class Data(SimpleNamespace):
        def __contains__(self, name):
            return hasattr(self, name)

    run, data = SimpleNamespace(pathspec="TrainFlow/1"), Data(holdout_df=split.holdout)
    monkeypatch.setattr(selection, "step_data", lambda r, step: SimpleNamespace(train_df=split.train))
    ref = selection._rows(run, data, str(tmp_path))
    pd.testing.assert_frame_equal(table.read_part(ref, "holdout"), split.holdout.reset_index(drop=True))
    assert len(table.read_part(ref, "train")) == len(split.train) and ref["method"] == "frames"
    with pytest.raises(RegistryError, match="TrainFlow/1 keeps its rows as frames"):
        selection._rows(run, data, None)
    assert selection._rows(run, Data(split_ref=ref), None) == ref  # a run with references: its own


def test_a_frame_fingerprint_changes_with_any_cell_or_column_name(split, dataset_spec):
    frame = split.train[dataset_spec.features].head(200).reset_index(drop=True)
    assert frame_fingerprint(frame) == frame_fingerprint(frame.copy())
    changed = frame.copy()
    changed.iloc[17, 0] = changed.iloc[18, 0] if changed.iloc[17, 0] != changed.iloc[18, 0] else None
    assert frame_fingerprint(changed) != frame_fingerprint(frame)
    assert frame_fingerprint(frame.rename(columns={frame.columns[0]: "other"})) != frame_fingerprint(frame)


def test_a_lightgbm_student_whose_gpu_fit_fails_is_fitted_on_the_cpu(split, dataset_spec, teacher):
    frame = split.train[dataset_spec.features]
    target = teacher_logits(teacher, frame, dataset_spec)
    lgbm = STUDENTS["lightgbm"]
    no_platform = lgbm.model_copy(update={"params": {**lgbm.params, "gpu_platform_id": 99}})  # fails on any machine
    fitted, info = fit_student(build_student(no_platform, dataset_spec, 0, device="gpu"), frame, target, dataset_spec,
                               2, lambda: build_student(no_platform, dataset_spec, 0, threads=2))
    assert info["device"] == "cpu" and info["fallback"].startswith("LightGBMError: ") and info["threads"] == 2
    cpu, _ = fit_student(build_student(no_platform, dataset_spec, 0, threads=2), frame, target, dataset_spec, 2)
    assert models.fingerprint(models.serialize(fitted)) == models.fingerprint(models.serialize(cpu))
    with pytest.raises(LightGBMError):  # no CPU student to fall back to: LightGBM's own error
        fit_student(build_student(no_platform, dataset_spec, 0, device="gpu"), frame, target, dataset_spec)


@pytest.mark.parametrize("kind, requested, gpus, threads, expected", [
    ("lightgbm", "auto", 1, None, (4, "gpu")), ("lightgbm", "auto", 0, None, (4, "cpu")),
    ("lightgbm", "cpu", 1, 2, (2, "cpu")), ("mlp", "auto", 1, None, (4, "cpu")), ("linear", "gpu", 1, 1, (1, "cpu")),
])
def test_only_a_lightgbm_student_asks_for_the_gpu_and_threads_follow_the_step(cfg, kind, requested, gpus, threads,
                                                                              expected):
    step = StepResources(cpu=4, gpu=gpus)
    resolved = student_resources(STUDENTS[kind], cfg.model_copy(update={"device": requested, "threads": threads}),
                                 step)
    assert resolved == (expected[0] if threads else step.threads, expected[1])


def test_a_student_cannot_set_its_device_in_params():
    with pytest.raises(ValueError, match="params.device_type: set distill.device"):
        StudentConfig(name="s", type="lightgbm", params={"device_type": "gpu"})


def _row(name, auc, cost_ratio, parity=True):
    return {"name": name, "kind": "x", "auc": auc, "auc_ratio": auc / 0.9, "cost_ratio": cost_ratio,
            "parity_passed": parity}


def test_selection_rule_picks_the_best_eligible_student():
    chosen, rows = select([_row("a", 0.89, 0.05), _row("b", 0.895, 0.08), _row("c", 0.90, 0.5)],
                          0.985, 0.10)
    assert chosen == "b"
    reasons = {r["name"]: r["reasons"] for r in rows}
    assert reasons["a"] == [] and reasons["c"] and "cost_ratio" in reasons["c"][0]


def test_selection_rule_rejects_below_the_floor_and_failed_parity():
    chosen, rows = select([_row("a", 0.85, 0.05), _row("b", 0.90, 0.05, parity=False)], 0.985, 0.10)
    assert chosen is None
    assert "auc_ratio" in rows[0]["reasons"][0] and rows[1]["reasons"] == ["ONNX parity failed"]


def test_distillation_verdict_replaces_significance_by_the_quality_floor(cfg):
    results = [GateResult("champion", "significantly_better[roc_auc]", "m", "t", -0.01, False),
               GateResult("champion", "not_less_fair[x]", "m", "t", 0.0, True)]
    out = distillation_verdict(results, 0.99, 0.05, cfg)
    gated = {r.name: r.passed for r in out if r.gated}
    assert "significantly_better[roc_auc]" not in gated
    assert gated == {"not_less_fair[x]": True, "quality_floor[auc_ratio]": True, "cost_ceiling[per_row]": True}
    low = distillation_verdict(results, 0.98, 0.05, cfg)
    assert not next(r for r in low if r.name == "quality_floor[auc_ratio]").passed


def test_join_helpers_time_every_model_and_gate_only_the_selected_one(teacher, students, split, dataset_spec, cfg):
    from types import SimpleNamespace

    from steps.config import GatesConfig

    trained = []
    for kind, (pipeline, onnx) in students.items():
        blob = models.serialize(pipeline)
        ev = evaluate_model(kind, kind, pipeline, onnx, None, split.holdout, dataset_spec, cfg, 0.3)
        task = SimpleNamespace(student_blob=blob, student_onnx=onnx, student_quantized=None, student={
            **ev, "fingerprint": models.fingerprint(blob), "onnx_fingerprint": models.fingerprint(onnx),
            "quantization": None})
        trained.append(TrainedStudent.from_task(task))
    t_onnx = export_teacher(teacher, dataset_spec)
    t_eval = evaluate_model("teacher", "teacher", teacher, t_onnx, None, split.holdout, dataset_spec, cfg, 0.3)
    t_eval, rows = time_models(teacher, t_onnx, t_eval, trained, split.holdout, dataset_spec, cfg, "cpu")
    assert {m["clock"] for m in t_eval["runtimes"].values()} | {m["clock"] for r in rows
                                                                for m in r["runtimes"].values()} == {"cpu"}
    assert set(t_eval["runtimes"]) == {"native", "onnx"}
    assert [r["name"] for r in rows] == [s.name for s in trained] and all(r["cost_ratio"] > 0 for r in rows)

    name, ranked = select(rows, 0.0, 1e9)
    gates_cfg = GatesConfig.model_validate({"bootstrap": {"samples": 50},
                                            "performance": {"thresholds": {"roc_auc": {"min": 0.5}}}})
    champion = ("7", teacher, models.serialize(teacher))
    sel = gate_selected(name, ranked, trained, split.holdout, dataset_spec, cfg, gates_cfg, champion)
    chosen = next(s for s in trained if s.name == name)
    assert (sel.model_blob, sel.onnx_model) == (chosen.blob, chosen.onnx)
    assert sel.model_fingerprint == models.fingerprint(chosen.blob) and sel.quantized["runtime"] is None
    assert "quality_floor[auc_ratio]" in {g["name"] for g in sel.gate_results}
    assert sel.gates_passed == sel.gate_summary["passed"]

    none = gate_selected(None, ranked, trained, split.holdout, dataset_spec, cfg, gates_cfg, champion)
    assert none.model_blob is None and none.gate_results == [] and not none.gates_passed
    assert none.gate_summary == {"passed": False, "suites": {}, "failed": ["distillation/no_student_selected"]}


def test_distill_config_is_strict(root):
    text = (root / "config" / "distill.yaml").read_text()
    assert DistillConfig.model_validate(parse_distill(text)).min_auc_ratio == 0.985
    with pytest.raises(ConfigError, match="unknown key"):
        parse_distill(text + "\nbogus: 1\n")
    with pytest.raises(ConfigError, match="unique"):
        parse_distill("students: [{name: a, type: mlp}, {name: a, type: linear}]")


def test_aws_profile_sends_students_to_the_gpu_queue(root):
    from steps.config import ProfileConfig, load_file

    profile = load_file(ProfileConfig, root / "config" / "profiles" / "aws.yaml")
    res = profile.for_step("train_student")
    assert res.gpu == 1 and res.queue == "gpu"
