"""TrainFlow end to end through metaflow.Runner: a success on tiny data, and failures that stop before training."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from metaflow.cards import get_cards
from support import assert_user_error, card_components, card_text, logs, package_files, run_flow

from steps.config import DatasetConfig, TrainConfig, load_file
from steps.data import synth, table
from steps.data.contract import validate
from steps.data.split import split_frame
from steps.modeling import models, training


def test_every_candidate_is_trained_and_the_best_selected(train_run):
    summaries = train_run.data.candidate_summaries
    assert {s["name"] for s in summaries} == {"logreg", "lightgbm", "random_forest"}
    best = max(summaries, key=lambda s: s["metrics"]["roc_auc"])  # tiny config selects on roc_auc
    assert train_run.data.model_name == best["name"]
    assert all(0.5 < s["metrics"]["roc_auc"] <= 1.0 for s in summaries)
    rows = {s["name"]: s["train_rows"] for s in summaries}
    assert rows == {"logreg": 3600, "lightgbm": 3600, "random_forest": 3000}  # the forest's max_train_rows
    forest = next(t for t in train_run["train_candidate"] if t.data.candidate["name"] == "random_forest")
    assert "read train: 3000 rows" in forest.stderr  # its sample only was read, not the 3,600 rows
    assert "preprocessing on" not in forest.stderr  # 3,000 rows: fitted in memory
    for task in train_run["train_candidate"]:
        if task.data.candidate["name"] != "random_forest":  # above preprocess_fit_rows (3,200): streamed
            assert re.search(r"on 3600 rows \(preprocessing on 32\d\d\)", task.stderr), task.stderr[-2000:]


def test_model_fingerprint_is_the_sha256_of_the_stored_bytes(train_run):
    blob = train_run.data.model_blob
    assert train_run.data.model_fingerprint == hashlib.sha256(blob).hexdigest()
    with pytest.raises(models.FingerprintMismatch):
        models.deserialize(blob + b"tampered", train_run.data.model_fingerprint)


def test_stored_pipeline_scores_raw_rows(train_run, config_paths):
    spec = load_file(DatasetConfig, config_paths["dataset"])
    pipeline = models.deserialize(train_run.data.model_blob, train_run.data.model_fingerprint)
    raw = synth.generate(synth.SynthSpec(rows=300, seed=99))  # raw columns as they arrive: strings, NaNs, ids
    raw.loc[0, "device_type"] = None
    raw.loc[1, "merchant_category"] = "never_seen_before"
    proba = models.predict_proba(pipeline, raw, spec)
    assert proba.shape == (300,) and np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()


def test_lineage_and_split_are_recorded(train_run, tiny_data):
    lineage = train_run.data.lineage
    assert lineage["rows"] == 6000
    assert lineage["sha256"] == hashlib.sha256(tiny_data.read_bytes()).hexdigest()
    assert lineage["git_revision"] is None or len(lineage["git_revision"]) == 40
    split = train_run.data.split_summary
    assert sum(split[part]["rows"] for part in ("train", "validation", "holdout")) == 6000
    assert split["method"] == "time" and split["warnings"] == []
    assert split["train"]["time_max"] < split["validation"]["time_min"] < split["holdout"]["time_min"]
    assert train_run.data.feature_schema["id"] == "transaction_id"


def test_data_is_kept_by_reference_not_copied_into_artifacts(train_run, tiny_data, tiny_configs, workspace):
    ref, split_ref = train_run.data.data_ref, train_run.data.split_ref
    assert "frame" not in train_run["start"].task.data
    assert not {"train_df", "validation_df", "holdout_df"} & {a.id for a in train_run["split"].task}
    assert "holdout_df" not in train_run.data
    stored = Path(ref["uri"])
    assert stored.is_relative_to(workspace / ".metaflow" / "_tables") and stored.stem == ref["sha256"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == ref["sha256"] and ref["rows"] == 6000
    assert split_ref["codes"].dtype == np.int8 and split_ref["codes"].size == 6000
    spec = load_file(DatasetConfig, tiny_configs["dataset"])
    train_cfg = load_file(TrainConfig, tiny_configs["train"])
    expected = split_frame(validate(pd.read_parquet(tiny_data), spec, "tiny"), spec, train_cfg.split)
    for part in ("train", "validation", "holdout"):
        got = table.read_part(split_ref, part)
        pd.testing.assert_frame_equal(got, getattr(expected, part))
        assert len(got) == train_run.data.split_summary[part]["rows"]
    columns = training.training_columns(spec)
    assert list(table.read_part(split_ref, "train", columns).columns) == columns


def test_training_card_has_metrics_and_curves(train_run):
    cards = get_cards(train_run["join"].task, id="training")
    html = cards[0].get()
    text = card_text(html)
    assert train_run.data.model_name + " (chosen)" in text and "average_precision" in text
    (curves,) = [c for c in card_components(html) if c["type"] == "vegaChart"]  # the ROC / PR chart
    roc, pr = (panel["data"]["values"] for panel in curves["spec"]["hconcat"])
    names = {s["name"] for s in train_run.data.candidate_summaries}
    assert {r["model"] for r in roc} == {r["model"] for r in pr} == names  # every candidate's validation curves
    assert train_run.data.lineage["sha256"] in text
    assert {(s["device"], s["threads"], s["device_fallback"]) for s in train_run.data.candidate_summaries} == {
        ("cpu", 1, None)}  # the local profile gives train_candidate no GPU
    assert "trained on" in text and "cpu x1" in text


def test_cards_are_rendered_once_without_a_live_update_process(train_run, workspace):
    """Each card step writes its HTML and no runtime data: no ``card create --mode refresh`` process ran after it."""
    cards = workspace / ".metaflow" / "mf.cards" / "TrainFlow" / "runs" / train_run.id / "steps"
    assert sorted(p.parent.parent.parent.parent.name for p in cards.glob("*/tasks/*/cards/*.html")) == ["join", "judge"]
    assert list(cards.glob("*/tasks/*/runtime/*")) == []


def _broken(tiny_data: Path, tmp_path: Path) -> Path:
    frame = pd.read_parquet(tiny_data)
    frame.loc[3, "amount"] = -50.0
    frame.loc[5:200, "channel"] = "carrier_pigeon"
    frame = frame.drop(columns=["hour"])
    out = tmp_path / "broken.parquet"
    frame.to_parquet(out)
    return out


def test_invalid_data_stops_before_training_with_every_violation(root, workspace, tiny_data, tiny_configs, tmp_path):
    broken = _broken(tiny_data, tmp_path)
    result = run_flow(root, workspace, "train_flow.py", tiny_configs, data=str(broken))
    assert_user_error(result, "start", "3 validation error(s)")
    log = result.stderr + result.stdout
    assert "3 validation error(s)" in log
    assert "missing columns: ['hour']" in log
    assert "column 'amount': 1 value(s) below min 0.0 at rows 3" in log
    assert "column 'channel': unknown categories" in log and "carrier_pigeon" in log
    assert str(broken) in log
    assert [step.id for step in result.run] == ["start"]  # nothing after validation ran


def test_a_misspelt_candidate_parameter_stops_at_start_with_a_suggestion(root, workspace, tiny_data, tiny_configs,
                                                                          tmp_path):
    bad = tmp_path / "train-typo.yaml"
    cfg = yaml.safe_load(tiny_configs["train"].read_text())
    cfg["candidates"][1]["params"]["learning_rat"] = 0.1  # LightGBM itself would accept it silently
    cfg["candidates"][0]["params"]["max_iters"] = 50  # logistic regression would fail only inside its fit
    bad.write_text(yaml.safe_dump(cfg))
    result = run_flow(root, workspace, "train_flow.py", {**tiny_configs, "train": bad}, data=str(tiny_data))
    assert_user_error(result, "start", "candidate 'lightgbm': unknown parameter 'learning_rat' for LGBMClassifier "
                                       "(did you mean 'learning_rate'?)")
    assert ("candidate 'logreg': unknown parameter 'max_iters' for LogisticRegression (did you mean 'max_iter'?)"
            in logs(result))
    assert [step.id for step in result.run] == ["start"]


def test_bad_config_stops_at_start_naming_file_and_key(root, workspace, tiny_data, tiny_configs, tmp_path):
    bad = tmp_path / "train-bad.yaml"
    cfg = yaml.safe_load(tiny_configs["train"].read_text())
    cfg["learning_rate"] = 0.1
    cfg["threads"] = 0
    cfg["seeds"] = cfg.pop("seed")
    bad.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, str(root / "flows" / "train_flow.py"), "--config", "train", str(bad),
         "--config", "dataset", str(tiny_configs["dataset"]), "--config", "profile", str(tiny_configs["profile"]),
         "run", "--data", str(tiny_data)],
        cwd=workspace, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"invalid configuration in {bad}" in proc.stderr
    assert "learning_rate: unknown key" in proc.stderr
    assert "threads: Input should be greater than or equal to 1" in proc.stderr
    assert "seeds: unknown key (did you mean 'seed'?)" in proc.stderr
    assert "Traceback" not in proc.stderr and "Internal error" not in proc.stderr


def test_steps_and_config_travel_in_the_code_package(root, workspace):
    proc = subprocess.run([sys.executable, "-X", "importtime", str(root / "flows" / "train_flow.py"), "package",
                           "list"], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout + proc.stderr
    missing = [rel for rel in package_files(root) if f"{root}/{rel}" not in listed]
    assert missing == [], missing  # every module of every steps/ subpackage, the flows' base, the configs
    # Packaging asks every module in sys.modules for its name and package policy: the flow's lazy steps/ modules
    # answer without loading (steps/__init__.py), so neither `package list` nor a run's runtime imports these
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert imported & {"scipy", "sklearn", "lightgbm", "fairlearn", "pandas"} == set()


@pytest.mark.parametrize("args", [["--branch", "prod"], ["--branch=production"]])
def test_branch_prod_is_refused_with_the_way_to_production(root, workspace, args):
    proc = subprocess.run([sys.executable, str(root / "flows" / "train_flow.py"), *args, "run"], cwd=workspace,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "would run on the test branch test.prod" in proc.stderr or "test.production" in proc.stderr
    assert "use --production (branch prod)" in proc.stderr
