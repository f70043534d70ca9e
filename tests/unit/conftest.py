"""Fixtures for the unit tests of ``steps/``: the real configs, small synthetic frames and fitted models.

Session-scoped frames are shared between tests: tests that change a frame take a ``.copy()`` first
(``raw_frame`` hands out a fresh copy each time).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from steps.config import CandidateConfig, DatasetConfig, TrainConfig, load_file
from steps.data import synth
from steps.data.contract import validate
from steps.data.split import Split, split_frame
from steps.modeling import models

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"

# Small estimators: every registered type, fast enough to fit several times per test run on 2 cores.
FAST_PARAMS = {
    "logistic_regression": {"C": 0.5},
    "lightgbm": {"n_estimators": 30, "num_leaves": 15, "min_child_samples": 10},
    "random_forest": {"n_estimators": 15, "max_depth": 6},
    "hist_gradient_boosting": {"max_iter": 30},
}


@pytest.fixture(scope="session")
def fast_params() -> dict[str, dict[str, object]]:
    """Estimator parameters per registered model type that keep fitting fast."""
    return FAST_PARAMS


@pytest.fixture(scope="session")
def dataset_spec() -> DatasetConfig:
    """The real ``config/dataset.yaml``."""
    return load_file(DatasetConfig, CONFIG / "dataset.yaml")


@pytest.fixture(scope="session")
def train_cfg() -> TrainConfig:
    """A fast train config: one thread, few curve points, no downsampling."""
    return TrainConfig.model_validate({
        "seed": 3, "threads": 1, "curve_points": 20, "selection_metric": "roc_auc",
        "candidates": [{"name": name, "type": t, "params": p} for name, (t, p) in
                       {"logreg": ("logistic_regression", FAST_PARAMS["logistic_regression"]),
                        "lgbm": ("lightgbm", FAST_PARAMS["lightgbm"])}.items()],
    })


@pytest.fixture(scope="session")
def _raw_frame() -> pd.DataFrame:
    return synth.generate(synth.SynthSpec(rows=4000, seed=21, row_group_rows=2000))


@pytest.fixture
def raw_frame(_raw_frame: pd.DataFrame) -> pd.DataFrame:
    """4,000 raw synthetic rows (about 90 frauds) that pass validation; a fresh copy for each test."""
    return _raw_frame.copy()


@pytest.fixture(scope="session")
def clean_frame(_raw_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> pd.DataFrame:
    """The raw rows after ``validate`` (normalized, time-sorted). Do not mutate."""
    return validate(_raw_frame, dataset_spec, "fixture.parquet")


@pytest.fixture(scope="session")
def split(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, train_cfg: TrainConfig) -> Split:
    """The default temporal split of ``clean_frame``. Do not mutate."""
    return split_frame(clean_frame, dataset_spec, train_cfg.split)


@pytest.fixture(scope="session")
def fitted(split: Split, dataset_spec: DatasetConfig) -> dict[str, object]:
    """One fitted pipeline per registered model type (trained on the train part of ``split``)."""
    out = {}
    for type_ in models.REGISTRY:
        candidate = CandidateConfig(name=type_, type=type_, params=FAST_PARAMS[type_])
        pipeline = models.build_pipeline(candidate, dataset_spec, seed=0, threads=1)
        out[type_], _ = models.fit(pipeline, split.train, dataset_spec, threads=1)
    return out
