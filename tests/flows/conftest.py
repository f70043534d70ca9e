"""Session-scoped TrainFlow runs on tiny data, shared by the flow and notebook tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from metaflow import Runner

from steps import synth

TINY_TRAIN = {
    "split": {"validation_fraction": 0.2, "holdout_fraction": 0.2},
    "selection_metric": "roc_auc",
    "seed": 1,
    "threads": 1,
    "curve_points": 50,
    "candidates": [
        {"name": "logreg", "type": "logistic_regression", "params": {"C": 0.5}},
        {"name": "lightgbm", "type": "lightgbm", "params": {"n_estimators": 40, "num_leaves": 15}},
        {"name": "random_forest", "type": "random_forest", "params": {"n_estimators": 20, "max_depth": 6}},
    ],
}


def run_flow(root: Path, workspace: Path, flow: str, configs: dict[str, Path], **params: Any):
    """Run ``flows/<flow>`` with ``Runner`` from the test workspace; returns the ExecutingRun (done)."""
    runner = Runner(str(root / "flows" / flow), show_output=False, cwd=str(workspace),
                    config=[(k, str(v)) for k, v in configs.items()])
    with runner.run(**params) as result:
        return result


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6,000 synthetic transactions over 12 months (about 130 frauds)."""
    path = tmp_path_factory.mktemp("data") / "tiny.parquet"
    synth.write_parquet(synth.SynthSpec(rows=6000, seed=11, row_group_rows=2000), path)
    return path


@pytest.fixture(scope="session")
def tiny_configs(tmp_path_factory: pytest.TempPathFactory, config_paths: dict[str, Path]) -> dict[str, Path]:
    """The default dataset and profile configs with a fast train config."""
    train = tmp_path_factory.mktemp("config") / "train.yaml"
    train.write_text(yaml.safe_dump(TINY_TRAIN))
    return {**config_paths, "train": train}


@pytest.fixture(scope="session")
def train_run(root: Path, workspace: Path, tiny_data: Path, tiny_configs: dict[str, Path]):
    """A successful TrainFlow run on the tiny data (the Client's Run object)."""
    result = run_flow(root, workspace, "train_flow.py", tiny_configs, data=str(tiny_data))
    assert result.status == "successful", result.stderr[-4000:]
    return result.run
