"""Schemas for ``config/*.yaml``: every default lives in a YAML file, validated here.

The ``parse_*`` functions are Metaflow ``Config`` parsers: they take the file's text and return a plain dict, or
raise :class:`ConfigError` naming the file and the offending key. Steps rebuild the typed model with ``load``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

T = TypeVar("T", bound="Strict")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


class ConfigError(ValueError):
    """A configuration file is malformed: the message names the file and every bad key."""


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------- dataset
class NumericSpec(Strict):
    """A numeric feature: its allowed range and null budget."""

    min: float | None = None
    max: float | None = None
    max_null_rate: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _range(self) -> "NumericSpec":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class CategoricalSpec(Strict):
    """A categorical feature: its known levels (None = any) and null budget."""

    categories: list[str] | None = None
    max_null_rate: float = Field(0.0, ge=0.0, le=1.0)
    max_unknown_rate: float = Field(0.0, ge=0.0, le=1.0)


class DerivedTarget(Strict):
    """A binary target computed from a source column, e.g. ``arr_delay > 15``."""

    source: str
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float | str


class TargetSpec(Strict):
    """The binary label: an existing 0/1 column, or one derived from another column."""

    name: str
    derive: DerivedTarget | None = None
    min_positives: int = Field(20, ge=1)
    max_positive_rate: float = Field(0.5, gt=0.0, le=1.0)


class DatasetConfig(Strict):
    """``config/dataset.yaml``: what a valid training table looks like."""

    name: str
    path: str = Field(description="default source: a Parquet/CSV path or s3:// URL")
    dvc_path: str | None = Field(None, description="path of the file inside the DVC-tracked data, for --data-rev")
    id: str | None = Field(None, description="unique row id; None adds a positional row_id column")
    time: str
    target: TargetSpec
    numeric: dict[str, NumericSpec] = Field(default_factory=dict)
    categorical: dict[str, CategoricalSpec] = Field(default_factory=dict)
    sensitive: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list, description="columns present in the data but not used")
    min_rows: int = Field(100, ge=1)

    @property
    def id_column(self) -> str:
        """The id column's name, including the generated one."""
        return self.id or "row_id"

    @property
    def features(self) -> list[str]:
        """Model input columns in a stable order: numeric first, then categorical."""
        return [*self.numeric, *self.categorical]

    @model_validator(mode="after")
    def _columns(self) -> "DatasetConfig":
        if not self.numeric and not self.categorical:
            raise ValueError("at least one numeric or categorical feature is required")
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"columns listed as both numeric and categorical: {sorted(both)}")
        special = {self.time, self.target.name, self.id_column}
        clash = special & set(self.features)
        if clash:
            raise ValueError(f"id/time/target columns must not be features: {sorted(clash)}")
        return self


# --------------------------------------------------------------------------------------------------- train
class SplitConfig(Strict):
    """Temporal split: the most recent rows are the hold-out, the ones before them the validation set."""

    validation_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    holdout_fraction: float = Field(0.15, gt=0.0, lt=0.5)


class CandidateConfig(Strict):
    """One competing model: a registered type and its estimator parameters."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["logistic_regression", "lightgbm", "random_forest", "hist_gradient_boosting"]
    params: dict[str, Any] = Field(default_factory=dict)
    impute: bool = Field(True, description="impute missing numeric values (linear models cannot take NaN)")


class TrainConfig(Strict):
    """``config/train.yaml``: split, candidates, selection metric, seeds and threads."""

    split: SplitConfig = SplitConfig()
    candidates: list[CandidateConfig] = Field(min_length=1)
    selection_metric: Literal["roc_auc", "average_precision", "neg_log_loss", "neg_brier"] = "average_precision"
    seed: int = 42
    threads: int = Field(1, ge=1, le=256)
    max_train_rows: int | None = Field(None, ge=100, description="downsample the training set (None = all rows)")
    curve_points: int = Field(200, ge=10, le=5000)

    @field_validator("candidates")
    @classmethod
    def _unique(cls, value: list[CandidateConfig]) -> list[CandidateConfig]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"candidate names must be unique, repeated: {dupes}")
        return value


# --------------------------------------------------------------------------------------------------- profile
class StepResources(Strict):
    """Compute for one step (or the default for all steps)."""

    cpu: int = Field(1, ge=1)
    memory: int = Field(4096, ge=256, description="MiB")
    gpu: int = Field(0, ge=0)
    timeout_minutes: int = Field(60, ge=1)
    queue: str | None = Field(None, description="key into profile.queues (AWS Batch)")


class RetryConfig(Strict):
    """``@retry`` settings applied to every step."""

    times: int = Field(2, ge=0, le=10)
    minutes_between_retries: int = Field(2, ge=0)


class ProfileConfig(Strict):
    """``config/profiles/*.yaml``: where and on what the steps run."""

    name: str
    compute: Literal["local", "batch", "kubernetes"] = "local"
    retry: RetryConfig = RetryConfig()
    resources: dict[str, StepResources] = Field(default_factory=lambda: {"default": StepResources()})
    queues: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    storage_root: str | None = None
    env: dict[str, str] = Field(default_factory=dict, description="environment variables for every step")

    @model_validator(mode="after")
    def _check(self) -> "ProfileConfig":
        if "default" not in self.resources:
            raise ValueError("resources.default is required")
        for step_name, res in self.resources.items():
            if res.queue is not None and res.queue not in self.queues:
                raise ValueError(f"resources.{step_name}.queue '{res.queue}' is not one of queues {sorted(self.queues)}")
        if self.compute == "batch" and "default" not in self.queues:
            raise ValueError("compute 'batch' needs queues.default")
        return self

    def for_step(self, step_name: str) -> StepResources:
        """The resources of ``step_name``, falling back to ``default``."""
        return self.resources.get(step_name, self.resources["default"])


# --------------------------------------------------------------------------------------------------- parsing
def _source_of(name: str, default: str) -> str:
    """Best guess of the file a Config came from: ``--config NAME PATH`` on the command line, else the default."""
    argv = sys.argv
    for i, arg in enumerate(argv[:-2]):
        if arg == "--config" and argv[i + 1] == name:
            return argv[i + 2]
    return default


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key (not allowed)" if e["type"] == "extra_forbidden" else e["msg"]
        if e["type"] == "missing":
            msg = "missing required key"
        lines.append(f"  - {key}: {msg}")
    return "\n".join(lines)


def validate(model: type[T], data: Any, source: str) -> T:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming ``source`` and each bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


def parse_text(model: type[T], text: str, source: str) -> dict[str, Any]:
    """Parse YAML ``text`` and validate it; return the normalized dict (defaults filled in)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    return validate(model, data, source).model_dump(mode="json")


def load_file(model: type[T], path: str | Path) -> T:
    """Read and validate a YAML file (for notebooks, benchmarks and tests)."""
    path = Path(path)
    return model.model_validate(parse_text(model, path.read_text(), str(path)))


def load(model: type[T], value: Any) -> T:
    """Rebuild the typed model from a Metaflow ``ConfigValue`` (or any mapping) inside a step."""
    data = value.to_dict() if hasattr(value, "to_dict") else dict(value)
    return model.model_validate(data)


def parse_dataset(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/dataset.yaml``."""
    return parse_text(DatasetConfig, text, _source_of("dataset", "config/dataset.yaml"))


def parse_train(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/train.yaml``."""
    return parse_text(TrainConfig, text, _source_of("train", "config/train.yaml"))


def parse_profile(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/profiles/*.yaml``."""
    return parse_text(ProfileConfig, text, _source_of("profile", "config/profiles/local.yaml"))


# --------------------------------------------------------------------------------------------------- gates
class Threshold(Strict):
    """A bound on a metric, judged on one end of its confidence interval (or the point estimate)."""

    min: float | None = None
    max: float | None = None
    bound: Literal["lower", "point", "upper"] = "point"

    @model_validator(mode="after")
    def _one_side(self) -> "Threshold":
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min or max")
        return self


class BootstrapConfig(Strict):
    """Bootstrap resampling for confidence intervals and the paired significance test."""

    samples: int = Field(200, ge=20, le=10_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


class PerformanceGates(Strict):
    """Absolute quality on the temporal hold-out."""

    recall_at_precision: float = Field(0.5, gt=0.0, lt=1.0, description="precision at which recall is read")
    calibration_bins: int = Field(10, ge=2, le=100)
    thresholds: dict[Literal["roc_auc", "average_precision", "log_loss", "brier", "recall_at_precision",
                             "calibration_error"], Threshold]


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
    max_p99_abs_change: float = Field(0.1, gt=0.0, description="99th percentile of |score change|")
    missing_rate: float = Field(0.1, gt=0.0, lt=1.0)
    min_auc_ratio_with_missing: float = Field(0.95, gt=0.0, le=1.0)
    sample_rows: int = Field(2000, ge=50)


class EfficiencyGates(Strict):
    """Serving cost on the serving runtime."""

    latency_rows: int = Field(200, ge=10)
    batch_rows: int = Field(20_000, ge=100)
    max_p50_ms: float = Field(20.0, gt=0)
    max_p99_ms: float = Field(50.0, gt=0)
    min_rows_per_s: float = Field(5_000.0, gt=0)
    max_size_mb: float = Field(50.0, gt=0)
    max_peak_memory_mb: float = Field(512.0, gt=0)


class ReviewGates(Strict):
    """Low-confidence scores go to a human; their share has a budget."""

    band: tuple[float, float] = (0.4, 0.6)
    max_rate: float = Field(0.05, ge=0.0, le=1.0)

    @field_validator("band")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= value[0] < value[1] <= 1.0:
            raise ValueError(f"band must satisfy 0 <= low < high <= 1, got {list(value)}")
        return value


class ChampionGates(Strict):
    """When a champion exists: the challenger must be significantly better and not worse elsewhere."""

    method: Literal["paired_bootstrap", "delong"] = "paired_bootstrap"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    min_effect: float = Field(0.002, ge=0.0)
    fairness_tolerance: float = Field(0.02, ge=0.0, description="allowed increase of each fairness disparity")
    latency_tolerance: float = Field(0.5, ge=0.0, description="allowed relative increase of median latency")


class GatesConfig(Strict):
    """``config/gates.yaml``: every threshold a model must meet before promotion."""

    primary_metric: Literal["roc_auc", "average_precision"] = "roc_auc"
    decision_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    bootstrap: BootstrapConfig = BootstrapConfig()
    performance: PerformanceGates
    fairness: FairnessGates = FairnessGates()
    robustness: RobustnessGates = RobustnessGates()
    efficiency: EfficiencyGates = EfficiencyGates()
    review: ReviewGates = ReviewGates()
    champion: ChampionGates = ChampionGates()


def parse_gates(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/gates.yaml``."""
    return parse_text(GatesConfig, text, _source_of("gates", "config/gates.yaml"))


# --------------------------------------------------------------------------------------------------- score
class FaultInjection(Strict):
    """Test hook: make chosen shards die mid-write on chosen attempts, to prove retries and resume (off by default)."""

    enabled: bool = False
    shards: list[int] = Field(default_factory=lambda: [0], description="shard indexes that fail")
    attempts: list[int] = Field(default_factory=lambda: [0], description="attempts (retry counts) that fail")
    after_batches: int = Field(1, ge=0, description="record batches written to the temporary part first")
    mode: Literal["exit", "raise"] = Field("exit", description="exit: the process dies (like a reclaimed spot "
                                                               "instance); raise: an exception")


class ScoreConfig(Strict):
    """``config/score.yaml``: the nightly batch scoring job (ScoreFlow)."""

    input: str = Field("data/transactions.parquet", description="Parquet file, folder of Parquet files or s3:// prefix")
    output_root: str = Field("out/predictions", description="local folder or s3:// prefix; partitions dt=YYYY-MM-DD")
    schedule_cron: str = Field("0 3 * * ? *", description="EventBridge cron (UTC, 6 fields); no timezone")
    shard_rows: int = Field(1_000_000, ge=1, description="target rows per shard (whole row groups)")
    batch_rows: int = Field(32_768, ge=1, le=10_000_000, description="rows per streamed record batch")
    runtime: Literal["native", "onnx"] = "native"
    threads: int = Field(1, ge=1, le=256, description="predict threads per shard")
    overlap_io: bool = Field(True, description="read and validate the next batch while the current one is scored")
    decision_threshold: float | None = Field(0.3, gt=0.0, lt=1.0, description="null: gates.yaml decision_threshold")
    review_band: tuple[float, float] = (0.4, 0.6)
    top_k: int = Field(0, ge=0, le=50, description="per-row top-k feature contributions (LightGBM only; 0 = off)")
    max_quarantine_rate: float = Field(0.01, ge=0.0, le=1.0)
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd"
    parity_rows: int = Field(2000, ge=10, description="rows of the input used for the ONNX-vs-native parity check")
    onnx_tolerance: float = Field(1e-4, gt=0.0, description="max |onnx - native| probability allowed")
    fault_injection: FaultInjection = FaultInjection()

    @field_validator("review_band")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= value[0] < value[1] <= 1.0:
            raise ValueError(f"review_band must satisfy 0 <= low < high <= 1, got {list(value)}")
        return value


def parse_score(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/score.yaml``."""
    return parse_text(ScoreConfig, text, _source_of("score", "config/score.yaml"))


# --------------------------------------------------------------------------------------------------- distill
class AugmentConfig(Strict):
    """Extra transfer rows: perturbed copies of the teacher's training rows, labelled by the teacher (off: 0)."""

    copies: int = Field(0, ge=0, le=20, description="augmented copies of the training rows (0 = off)")
    numeric_noise: float = Field(0.05, ge=0.0, le=1.0, description="jitter std as a share of each column's std")
    category_resample_rate: float = Field(0.05, ge=0.0, le=1.0, description="share of categorical cells resampled")
    seed: int = 0


class StudentConfig(Strict):
    """One student: a regressor on the teacher's logit behind the shared preprocessing."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["lightgbm", "mlp", "linear"]
    params: dict[str, Any] = Field(default_factory=dict)
    quantize: bool = Field(True, description="int8 quantize_dynamic (does nothing to a tree ensemble)")


class DistillConfig(Strict):
    """``config/distill.yaml``: students, transfer set, selection rule, parity limits (DistillFlow)."""

    students: list[StudentConfig] = Field(min_length=1)
    augmentation: AugmentConfig = AugmentConfig()
    max_transfer_rows: int | None = Field(None, ge=100)
    device: Literal["cpu", "gpu"] = Field("cpu", description="LightGBM student device; gpu falls back to cpu")
    seed: int = 42
    threads: int = Field(1, ge=1, le=256)
    min_auc_ratio: float = Field(0.985, gt=0.0, le=1.0, description="student AUC / teacher AUC floor")
    max_cost_ratio: float = Field(0.10, gt=0.0, description="student / teacher per-row cost ceiling")
    cost_runtime: Literal["onnx", "native"] = "onnx"
    cost_rows: int = Field(5000, ge=100, description="batch rows for single-thread rows/s")
    latency_rows: int = Field(200, ge=10)
    decision_threshold: float | None = Field(None, gt=0.0, lt=1.0, description="null: gates.yaml's")
    parity_tolerance: float = Field(1e-4, gt=0.0, description="max |onnx - native| probability")
    max_flip_rate: float = Field(1e-4, ge=0.0, le=1.0, description="decision flips allowed per row (1 / 10,000)")
    quantized_tolerance: float = Field(0.05, gt=0.0, description="max |int8 - native| probability (reported)")
    quantized_max_flip_rate: float = Field(0.01, ge=0.0, le=1.0)

    @field_validator("students")
    @classmethod
    def _unique(cls, value: list[StudentConfig]) -> list[StudentConfig]:
        names = [s.name for s in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"student names must be unique, repeated: {dupes}")
        return value


def parse_distill(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/distill.yaml``."""
    return parse_text(DistillConfig, text, _source_of("distill", "config/distill.yaml"))
