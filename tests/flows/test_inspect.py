"""steps.reporting.runs against the session's TrainFlow run: the Client helpers and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from metaflow import get_namespace, namespace

from steps.modeling import models
from steps.registry.registry import current_user
from steps.reporting import runs

ROOT = Path(__file__).resolve().parents[2]


def test_latest_run_by_id_and_latest(train_run) -> None:
    assert runs.latest_run("TrainFlow", train_run.id).pathspec == train_run.pathspec
    latest = runs.latest_run("TrainFlow")  # other tests may add runs to the session workspace
    assert latest.successful and latest.created_at >= train_run.created_at


def test_latest_run_falls_back_to_the_global_namespace(train_run) -> None:
    previous = get_namespace()
    namespace("user:somebody-else")
    try:
        assert runs.latest_run("TrainFlow", train_run.id).pathspec == train_run.pathspec
        run = runs.latest_run("TrainFlow")
        assert run.successful
        assert get_namespace() == "user:somebody-else"  # the caller's namespace is restored
        assert run.data.model_name  # the run stays readable after the namespace is restored
    finally:
        namespace(previous)


def test_latest_run_unknown(train_run) -> None:
    with pytest.raises(runs.RunNotFound):
        runs.latest_run("TrainFlow", "1")
    with pytest.raises(runs.RunNotFound):
        runs.latest_run("NoSuchFlow")


def test_training_summary(train_run) -> None:
    summary = runs.training_summary(train_run)
    assert list(summary["name"]) == [s["name"] for s in train_run.data.candidate_summaries]
    assert len(summary) == 3
    assert {"type", "roc_auc", "average_precision", "log_loss", "brier", "fit_seconds", "size_bytes",
            "fingerprint", "chosen"} <= set(summary.columns)
    chosen = summary[summary["chosen"]]
    assert list(chosen["name"]) == [train_run.data.model_name]
    assert chosen["fingerprint"].item() == train_run.data.model_fingerprint
    assert summary["roc_auc"].between(0, 1).all() and (summary["size_bytes"] > 0).all()


def test_lineage_and_split(train_run) -> None:
    lineage = runs.lineage(train_run)
    assert lineage["run"] == train_run.pathspec
    assert lineage["user"] == current_user()
    assert lineage["model_fingerprint"] == train_run.data.model_fingerprint
    assert lineage.items() >= train_run.data.lineage.items()
    split = runs.split_summary(train_run)
    assert list(split.index) == ["train", "validation", "holdout"]
    assert split["rows"].sum() == lineage["rows"]


def test_chosen_model_loads_and_predicts(train_run) -> None:
    model = runs.chosen_model(train_run)
    spec = runs.dataset_spec(train_run)
    holdout = runs.holdout(train_run)
    proba = models.predict_proba(model, holdout, spec)
    assert proba.shape == (len(holdout),) and ((proba >= 0) & (proba <= 1)).all()
    scored = runs.score_holdout(train_run, rows=4, model=model)
    assert list(scored.columns) == [spec.id, spec.time_column, spec.target.name, "score"]
    np.testing.assert_allclose(scored["score"], proba[:4])


def test_card_html_shows_the_chosen_model(train_run) -> None:
    before = get_namespace()
    html = runs.card_html(train_run)
    assert get_namespace() == before
    card = runs.card_data(html)  # the components are embedded as base64 JSON, not as visible text
    assert card["metadata"]["pathspec"].startswith(f"{train_run.pathspec}/join/")
    assert f"Chosen model: **{train_run.data.model_name}**" in json.dumps(card)
    assert runs.card_html(train_run, card_id="training") == html
    with pytest.raises(LookupError):
        runs.card_html(train_run, card_id="nope")


def _cli(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "steps.reporting.runs", *args], cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_prints_the_run_and_writes_the_card(train_run, workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir" / "card.html"
    proc = _cli(workspace, "TrainFlow", "--run-id", train_run.id, "--card-out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"run: {train_run.pathspec}\n" in proc.stdout
    assert f"chosen model: {train_run.data.model_name} " in proc.stdout
    assert "roc_auc=" in proc.stdout and f"source: {train_run.data.lineage['source']}" in proc.stdout
    assert f"card: {out.resolve()}" in proc.stdout
    assert runs.card_data(out.read_text(encoding="utf-8"))["metadata"]["pathspec"].startswith(
        f"{train_run.pathspec}/join/")


def test_cli_unknown_run(train_run, workspace: Path) -> None:
    proc = _cli(workspace, "TrainFlow", "--run-id", "1")
    assert proc.returncode == 1 and "no run TrainFlow/1" in proc.stderr
