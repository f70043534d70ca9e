"""``config/gates.yaml``: every threshold a model must meet before promotion."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steps.config.base import Band, Strict, config_source, parse_text


class Threshold(Strict):
    """A bound on a metric, judged on one end of its confidence interval (or the point estimate)."""

    min: float | None = None
    max: float | None = None
    bound: Literal["lower", "point", "upper"] = "point"

    @model_validator(mode="after")
    def _one_side(self) -> Threshold:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min or max")
        return self


class BootstrapConfig(Strict):
    """Bootstrap resampling for confidence intervals and the paired significance test."""

    samples: int = Field(200, ge=20, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


PerformanceMetric = Literal[
    # absolute: their meaning depends on the base rate
    "roc_auc", "average_precision", "log_loss", "brier", "recall_at_precision", "calibration_error",
    # relative to the data: the same bar on any base rate
    "average_precision_skill", "log_loss_skill", "brier_skill", "recall_at_relative_precision",
    "relative_calibration_error"]


class PerformanceGates(Strict):
    """Quality on the hold-out, each metric judged on the bound of its bootstrap interval its threshold names."""

    recall_at_precision: float = Field(0.5, gt=0.0, lt=1.0, description="absolute precision for recall_at_precision")
    relative_precision: float = Field(0.25, gt=0.0, lt=1.0, description="recall_at_relative_precision reads recall "
                                      "at precision base rate + this x (1 - base rate)")
    calibration_bins: int = Field(10, ge=2, le=100)
    thresholds: dict[PerformanceMetric, Threshold] = Field(min_length=1)


class FairnessGates(Strict):
    """Group disparities (fairlearn) per sensitive attribute and their intersection."""

    min_slice_size: int = Field(200, ge=1)
    min_slice_positives: int = Field(10, ge=1)
    intersections: bool = True
    demographic_parity_difference: Threshold = Threshold(max=0.1)
    equalized_odds_difference: Threshold = Threshold(max=0.3)
    worst_group_auc_ratio: Threshold = Threshold(min=0.85)


class RobustnessGates(Strict):
    """Edge cases, perturbations and quality under missing values."""

    relative_noise: float = Field(0.01, gt=0.0, le=1.0)
    max_mean_abs_change: float = Field(0.01, gt=0.0)
    max_p99_abs_change: float = Field(0.15, gt=0.0, description="99th percentile of |score change|")
    missing_rate: float = Field(0.1, gt=0.0, lt=1.0)
    min_auc_ratio_with_missing: float = Field(0.9, gt=0.0, le=1.0)
    sample_rows: int = Field(2000, ge=50)


class EfficiencyGates(Strict):
    """Serving cost on the serving runtime."""

    latency_rows: int = Field(200, ge=10)
    batch_rows: int = Field(20_000, ge=100)
    clock: Literal["cpu", "wall"] = "cpu"  # latency and throughput as the model's CPU time, or as wall time
    max_p50_ms: float = Field(20.0, gt=0)
    max_p99_ms: float = Field(50.0, gt=0)
    min_rows_per_s: float = Field(5_000.0, gt=0)
    max_size_mb: float = Field(50.0, gt=0)
    max_peak_memory_mb: float = Field(512.0, gt=0)


class ReviewGates(Strict):
    """Low-confidence scores go to a human; their share can have a budget (the reviewers' capacity).

    ``max_rate`` null: the share is measured and reported, not gated (the default: a budget is a staffing decision,
    and a well-calibrated model of a balanced target puts many honest scores in the middle).
    """

    band: Band = (0.4, 0.6)
    max_rate: float | None = Field(None, ge=0.0, le=1.0)


class ChampionGates(Strict):
    """When a champion exists: the challenger must be significantly better and not worse elsewhere.

    ``method``: the significance test of the primary metric. ``auto`` is DeLong's test for ``roc_auc`` (exact in one
    pass, the same verdict on every rerun) and the paired bootstrap for any other metric.
    """

    method: Literal["auto", "paired_bootstrap", "delong"] = "auto"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    min_effect: float = Field(0.002, ge=0.0)
    fairness_tolerance: float = Field(0.02, ge=0.0, description="allowed increase of each fairness disparity")
    latency_tolerance: float | None = Field(0.5, ge=0.0, description="allowed relative increase of median latency "
                                                                       "(null: reported, not gated)")


class ThresholdPolicy(Strict):
    """How the decision threshold is set, once per model, and recorded with it.

    ``fixed``: ``value``. Chosen on the validation set: ``precision`` (the lowest threshold whose precision reaches
    ``target``), ``positive_rate`` (flag about ``target`` of the rows), ``f1`` (the threshold of the highest F1).
    """

    policy: Literal["fixed", "precision", "positive_rate", "f1"] = "fixed"
    value: float | None = Field(None, gt=0.0, lt=1.0)
    target: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _complete(self) -> ThresholdPolicy:
        if self.policy == "fixed" and (self.value is None or self.target is not None):
            raise ValueError("policy fixed takes value (and no target)")
        if self.policy in ("precision", "positive_rate") and (self.target is None or self.value is not None):
            raise ValueError(f"policy {self.policy} takes target (and no value)")
        if self.policy == "f1" and (self.target is not None or self.value is not None):
            raise ValueError("policy f1 takes neither value nor target")
        return self


class GatesConfig(Strict):
    """``config/gates.yaml``: every threshold a model must meet before promotion."""

    primary_metric: Literal["roc_auc", "average_precision"] = "roc_auc"
    decision_threshold: ThresholdPolicy = ThresholdPolicy(value=0.5)

    @field_validator("decision_threshold", mode="before")
    @classmethod
    def _fixed(cls, value: Any) -> Any:
        return {"policy": "fixed", "value": value} if isinstance(value, int | float) else value
    bootstrap: BootstrapConfig = BootstrapConfig()
    performance: PerformanceGates
    fairness: FairnessGates = FairnessGates()
    robustness: RobustnessGates = RobustnessGates()
    efficiency: EfficiencyGates = EfficiencyGates()
    review: ReviewGates = ReviewGates()
    champion: ChampionGates = ChampionGates()

    @model_validator(mode="after")
    def _test_fits_metric(self) -> GatesConfig:
        if self.champion.method == "delong" and self.primary_metric != "roc_auc":
            raise ValueError(f"champion.method: delong tests ROC AUCs, but primary_metric is {self.primary_metric}: "
                             "use auto or paired_bootstrap")
        return self

    def champion_test(self) -> Literal["paired_bootstrap", "delong"]:
        """The significance test the champion comparison runs (``champion.method``, ``auto`` resolved)."""
        if self.champion.method == "auto":
            return "delong" if self.primary_metric == "roc_auc" else "paired_bootstrap"
        return self.champion.method


def parse_gates(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/gates.yaml``."""
    return parse_text(GatesConfig, text, config_source("gates", "config/gates.yaml"))
