"""Schemas for ``config/*.yaml``: every default lives in a YAML file, validated here.

The ``parse_*`` functions are Metaflow ``Config`` parsers: they take the file's text and return a plain dict, or
raise :class:`ConfigError` naming the file and the offending key. Steps rebuild the typed model with ``load``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

T = TypeVar("T", bound="Strict")

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
PROFILE_ENV = "MLOPS_PROFILE"  # the profile switch: a path, like --config profile PATH


class ConfigError(ValueError):
    """A configuration file is malformed: the message names the file and every bad key."""


def _unique_names(items: list[Any], what: str) -> list[Any]:
    """``items`` unchanged when their ``name``s are unique; ValueError naming the repeated ones otherwise."""
    names = [item.name for item in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique, repeated: {dupes}")
    return items


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


class ReferenceConfig(Strict):
    """The reference profile TrainFlow stores with the model (MonitorFlow compares production data with it)."""

    bins: int = Field(10, ge=2, le=100, description="quantile bins per numeric feature and for the score")
    sample_rows: int = Field(2000, ge=100, le=100_000, description="reference sample kept for KS tests")
    max_levels: int = Field(50, ge=2, description="categorical levels kept (the rest pooled as __other__)")


class TrainConfig(Strict):
    """``config/train.yaml``: split, candidates, selection metric, seeds and threads."""

    split: SplitConfig = SplitConfig()
    candidates: list[CandidateConfig] = Field(min_length=1)
    selection_metric: Literal["roc_auc", "average_precision", "neg_log_loss", "neg_brier"] = "average_precision"
    seed: int = 42
    threads: int = Field(1, ge=1, le=256)
    max_train_rows: int | None = Field(None, ge=100, description="downsample the training set (None = all rows)")
    curve_points: int = Field(200, ge=10, le=5000)
    reference: ReferenceConfig = ReferenceConfig()

    @field_validator("candidates")
    @classmethod
    def _unique(cls, value: list[CandidateConfig]) -> list[CandidateConfig]:
        return _unique_names(value, "candidate")


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


SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ProfileConfig(Strict):
    """``config/profiles/*.yaml``: where and on what the steps run.

    ``${NAME}`` in any string value is replaced by the environment variable ``NAME`` when the profile is parsed
    (account ids, images and buckets stay out of the repository); a missing variable is an error naming it.
    """

    name: str
    compute: Literal["local", "batch", "kubernetes"] = "local"
    retry: RetryConfig = RetryConfig()
    resources: dict[str, StepResources] = Field(default_factory=lambda: {"default": StepResources()})
    queues: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    gpu_image: str | None = Field(None, description="image for steps that request a GPU (default: image)")
    storage_root: str | None = Field(None, description="relative data/output paths resolve under it (s3:// prefix)")
    s3_roots: list[str] = Field(default_factory=list, description="other s3:// prefixes the flows may read/write")
    schedules: dict[str, str] = Field(default_factory=dict, description="flow class name -> EventBridge cron (UTC)")
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
        secret = sorted(k for k in self.env if SECRET_NAME.search(k))
        if secret:
            raise ValueError(f"env must not carry credentials (they come from the AWS credential chain): {secret}")
        for flow, cron in self.schedules.items():
            if len(cron.split()) != 6:
                raise ValueError(f"schedules.{flow}: '{cron}' is not an EventBridge cron (6 fields, UTC)")
        for root in self.allowed_s3_roots:
            if not root.startswith("s3://") or root.rstrip("/") == "s3:":
                raise ValueError(f"s3 root '{root}' is not an s3:// prefix")
        return self

    def for_step(self, step_name: str) -> StepResources:
        """The resources of ``step_name``, falling back to ``default``."""
        return self.resources.get(step_name, self.resources["default"])

    def image_for(self, step_name: str) -> str | None:
        """The container image of ``step_name``: ``gpu_image`` when it requests a GPU, else ``image``."""
        return (self.gpu_image or self.image) if self.for_step(step_name).gpu else self.image

    @property
    def allowed_s3_roots(self) -> list[str]:
        """Every s3:// prefix the flows may touch: ``storage_root`` (when on S3) and ``s3_roots``."""
        roots = [self.storage_root] if self.storage_root and self.storage_root.startswith("s3://") else []
        return [*roots, *self.s3_roots]

    def locate(self, path: str) -> str:
        """Resolve a relative ``path`` under ``storage_root``; refuse an s3:// URI outside the allowed roots."""
        if self.storage_root and not (path.startswith("s3://") or path.startswith("/")):
            rel = str(PurePosixPath(path)) + ("/" if path.endswith("/") else "")
            path = (f"{self.storage_root.rstrip('/')}/{rel}" if self.storage_root.startswith("s3://")
                    else str(Path(self.storage_root) / rel))
        roots = self.allowed_s3_roots
        if path.startswith("s3://") and roots and not any(_under(path, root) for root in roots):
            raise ConfigError(f"{path} is outside the profile '{self.name}' S3 roots {roots}")
        return path


def _under(uri: str, root: str) -> bool:
    """True when ``uri`` is ``root`` or inside it (prefix match on whole path segments)."""
    root = root.rstrip("/")
    return uri.rstrip("/") == root or uri.startswith(root + "/")


def expand_env(value: Any, source: str, environ: dict[str, str] | None = None) -> Any:
    """Replace ``${NAME}`` in every string of ``value`` from the environment; raise naming each missing variable."""
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def sub(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: sub(v) for k, v in item.items()}
        if isinstance(item, list):
            return [sub(v) for v in item]
        if isinstance(item, str):
            missing.extend(n for n in ENV_REF.findall(item) if not env.get(n))
            return ENV_REF.sub(lambda m: env.get(m.group(1), ""), item)
        return item

    expanded = sub(value)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise ConfigError(f"{source} needs environment variable(s) that are not set: {names}")
    return expanded


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
    """Metaflow Config parser for ``config/profiles/*.yaml`` (``${NAME}`` filled in from the environment)."""
    source = _source_of("profile", os.environ.get(PROFILE_ENV, "config/profiles/local.yaml"))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    return validate(ProfileConfig, expand_env(data, source), source).model_dump(mode="json")


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
        return _unique_names(value, "student")


def parse_distill(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/distill.yaml``."""
    return parse_text(DistillConfig, text, _source_of("distill", "config/distill.yaml"))


# --------------------------------------------------------------------------------------------------- monitor
class StatisticThreshold(Strict):
    """How one drift statistic is judged: ``static`` while history is short; ``floor`` under the moving baseline."""

    static: float = Field(gt=0.0)
    floor: float = Field(ge=0.0)


class DriftConfig(Strict):
    """Per-feature and score drift statistics and their thresholds."""

    psi: StatisticThreshold = StatisticThreshold(static=0.2, floor=0.1)
    js: StatisticThreshold = StatisticThreshold(static=0.1, floor=0.05)
    ks: StatisticThreshold = StatisticThreshold(static=0.1, floor=0.05)
    null_rate: StatisticThreshold = StatisticThreshold(static=0.05, floor=0.02)
    rate_change: StatisticThreshold = StatisticThreshold(static=0.5, floor=0.25)
    alpha: float = Field(0.001, gt=0.0, lt=1.0, description="a breach must also be this significant (p-value)")
    min_features: int = Field(1, ge=1, description="drifted features needed for the feature_drift signal")
    min_rows: int = Field(200, ge=1, description="smaller periods are reported, not judged")
    ignore: list[str] = Field(default_factory=list, description="features measured and reported, never judged")


class BaselineConfig(Strict):
    """Moving baselines: each statistic against its own trailing history."""

    history: int = Field(14, ge=2, description="trailing periods in the baseline")
    min_history: int = Field(5, ge=2, description="fewer periods: the static threshold decides")
    method: Literal["robust_z", "percentile"] = "robust_z"
    z: float = Field(4.0, gt=0.0, description="robust z-score (median / MAD) above which a value breaches")
    percentile: float = Field(99.0, gt=50.0, lt=100.0)
    seasonal: bool = Field(False, description="compare with the same weekday only (when it has min_history)")

    @model_validator(mode="after")
    def _sizes(self) -> "BaselineConfig":
        if self.min_history > self.history:
            raise ValueError(f"min_history ({self.min_history}) is greater than history ({self.history})")
        return self


class FeedbackConfig(Strict):
    """Late labels: realized performance and concept drift."""

    labels: str = Field("out/labels", description="Parquet file/folder/s3 prefix with id, label, label time")
    label_column: str = "label"
    label_time_column: str = "label_time"
    lookback_days: int = Field(30, ge=1, description="prediction partitions re-joined with labels each run")
    drop: float = Field(0.02, gt=0.0, lt=1.0, description="AUC drop below the reference that degrades a period")
    consecutive: int = Field(3, ge=1, description="consecutive degraded periods that declare concept drift")
    critical_drop: float = Field(0.10, gt=0.0, lt=1.0, description="one period this far below is critical")
    min_positives: int = Field(10, ge=1, description="labelled positives a period needs to be judged")
    use_interval: bool = Field(True, description="judge the bootstrap interval's upper bound, not the point")
    bootstrap_samples: int = Field(200, ge=50)


class AlertRule(Strict):
    """One alert: a tier, the signal it watches, and how many consecutive breaching periods fire it."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    tier: Literal["critical", "warning", "info"]
    signal: Literal["scoring_failed", "schema_change", "feature_drift", "prediction_drift", "null_rate",
                    "decision_rate", "review_rate", "auc_drop", "concept_drift"]
    consecutive: int = Field(1, ge=1)
    clear_after: int = Field(1, ge=1, description="clean periods before a resolved event (hysteresis)")


class WebhookConfig(Strict):
    """Slack-compatible JSON POST; a failing webhook is logged and never fails the run."""

    url: str | None = None
    url_env: str = Field("MLOPS_ALERT_WEBHOOK", description="environment variable read when url is null")
    min_tier: Literal["critical", "warning", "info"] = "warning"
    timeout_s: float = Field(5.0, gt=0.0)
    retries: int = Field(3, ge=0, le=10)
    backoff_s: float = Field(0.5, ge=0.0)


class AlertsConfig(Strict):
    """Tiered alert rules and their sinks."""

    rules: list[AlertRule] = Field(min_length=1)
    webhook: WebhookConfig = WebhookConfig()

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[AlertRule]) -> list[AlertRule]:
        return _unique_names(value, "alert rule")


class RetrainConfig(Strict):
    """When MonitorFlow starts TrainFlow, and how."""

    strategy: Literal["off", "scheduled", "drift", "performance", "hybrid"] = "hybrid"
    every_days: int = Field(30, ge=1, description="scheduled (and hybrid): retrain at least this often")
    drift_signals: list[str] = Field(default_factory=lambda: ["feature_drift", "prediction_drift"])
    performance_signals: list[str] = Field(default_factory=lambda: ["concept_drift", "auc_drop"])
    cooldown_days: float = Field(7.0, ge=0.0, description="no new retraining within this long of the last one")
    launcher: Literal["runner", "deployer", "none"] = "runner"
    orchestrator: Literal["step-functions", "argo-workflows"] = Field(
        "step-functions", description="deployer: where the deployed TrainFlow lives")
    flow: str = Field("flows/train_flow.py", description="runner: the flow file (relative to the repository)")
    deployment: str | None = Field(None, description="deployer: the deployed TrainFlow (state machine) name")
    params: dict[str, Any] = Field(default_factory=dict, description="TrainFlow parameters, e.g. {data: ...}")
    configs: dict[str, str] = Field(default_factory=dict, description="TrainFlow configs by name (paths)")


class MonitorConfig(Strict):
    """``config/monitor.yaml``: MonitorFlow's window, statistics, baselines, feedback, alerts and retraining."""

    schedule_cron: str = "0 5 * * ? *"
    predictions_root: str = Field("out/predictions", description="ScoreFlow's output root (local or s3://)")
    state_root: str = Field("out/monitor", description="history, alert state and events (local or s3://)")
    window_days: int = Field(1, ge=1, le=366, description="partition dates evaluated per run, ending at --date")
    max_rows_per_period: int = Field(200_000, ge=100)
    seed: int = 0
    drift: DriftConfig = DriftConfig()
    baseline: BaselineConfig = BaselineConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    alerts: AlertsConfig
    retrain: RetrainConfig = RetrainConfig()
    keep_periods: int = Field(400, ge=10, description="periods of history kept in the state file")


def parse_monitor(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/monitor.yaml``."""
    return parse_text(MonitorConfig, text, _source_of("monitor", "config/monitor.yaml"))
