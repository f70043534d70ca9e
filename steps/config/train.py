"""``config/train.yaml``: split, candidates, selection, reference profile."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steps.config.base import Strict, config_source, parse_text, reject_device_params, unique_names
from steps.config.dataset import SplitSpec


class CandidateConfig(Strict):
    """One competing model: a registered type and its estimator parameters."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["logistic_regression", "lightgbm", "random_forest", "hist_gradient_boosting"]
    params: dict[str, Any] = Field(default_factory=dict)
    impute: bool = Field(True, description="impute missing numeric values (linear models cannot take NaN)")
    threads: int | None = Field(None, ge=1, le=256, description="this candidate's threads (null: train.threads)")
    max_train_rows: int | None = Field(None, ge=100, description="this candidate's training rows, sampled (null: "
                                                                 "train.max_train_rows): a memory bound per candidate")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto: LightGBM's GPU learner when the train_candidate step has a GPU (profile), else the "
        "CPU; gpu: ask for it anywhere; a GPU fit that fails is done again on the CPU (recorded)")

    @model_validator(mode="after")
    def _device(self) -> CandidateConfig:
        if self.device == "gpu" and self.type != "lightgbm":
            raise ValueError(f"device gpu: only lightgbm candidates train on a GPU, not {self.type}")
        reject_device_params(self.params, "the candidate's `device`")
        return self


class ReferenceConfig(Strict):
    """The reference profile TrainFlow stores with the model (MonitorFlow compares production data with it)."""

    bins: int = Field(10, ge=2, le=100, description="quantile bins per numeric feature and for the score")
    sample_rows: int = Field(2000, ge=100, le=100_000, description="reference sample kept for KS tests")
    max_levels: int = Field(50, ge=2, description="categorical levels kept (the rest pooled as __other__)")


class TrainConfig(Strict):
    """``config/train.yaml``: split, candidates, selection metric, seeds and threads."""

    split: SplitSpec = Field(default_factory=SplitSpec, description="default split (a dataset config may set one)")
    candidates: list[CandidateConfig] = Field(min_length=1)
    selection_metric: Literal["roc_auc", "average_precision", "neg_log_loss", "neg_brier"] = "average_precision"
    seed: int = 42
    threads: int | None = Field(None, ge=1, le=256, description="threads per candidate (null: the train_candidate "
                                                                "step's cpu in the profile)")
    max_train_rows: int | None = Field(None, ge=100, description="downsample the training set (None = all rows)")
    preprocess_fit_rows: int | None = Field(
        1_000_000, ge=100, description="above this many training rows a candidate streams them: its preprocessing is "
        "fitted on a seeded sample of this many, its model on every row, one batch read at a time (null: every "
        "candidate fits in memory on all its rows)")
    curve_points: int = Field(200, ge=10, le=5000)
    reference: ReferenceConfig = ReferenceConfig()

    @field_validator("candidates")
    @classmethod
    def _unique(cls, value: list[CandidateConfig]) -> list[CandidateConfig]:
        return unique_names(value, "candidate")


def parse_train(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/train.yaml``."""
    return parse_text(TrainConfig, text, config_source("train", "config/train.yaml"))
