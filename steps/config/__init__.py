"""Schemas for ``config/*.yaml``, one module per file; this package re-exports what flows, notebooks and tests name.

The ``parse_*`` functions are Metaflow ``Config`` parsers (``parser="steps.config.parse_train"``): they take the
file's text and return a plain dict, or raise :class:`ConfigError` naming the file and every offending key. A flow
step rebuilds the typed model once per process (``ProjectFlow.typed``, which calls ``load``).
"""

from __future__ import annotations

from steps.config.base import (
    PROFILE_ENV,
    Band,
    ConfigError,
    Strict,
    config_source,
    load,
    load_file,
    parse_text,
    unique_names,
    validate,
)
from steps.config.dataset import (
    ROW_KEY,
    CategoricalSpec,
    DatasetConfig,
    DerivedTarget,
    NumericSpec,
    SplitMethod,
    SplitSpec,
    TargetSpec,
    TimeSpec,
    TimeUnit,
    category_label,
    parse_dataset,
)
from steps.config.distill import AugmentConfig, DistillConfig, StudentConfig, parse_distill
from steps.config.gates import (
    BootstrapConfig,
    ChampionGates,
    EfficiencyGates,
    FairnessGates,
    GatesConfig,
    PerformanceGates,
    PerformanceMetric,
    ReviewGates,
    RobustnessGates,
    Threshold,
    ThresholdPolicy,
    parse_gates,
)
from steps.config.monitor import (
    AlertRule,
    AlertsConfig,
    BaselineConfig,
    DriftConfig,
    FeedbackConfig,
    MonitorConfig,
    RetrainConfig,
    StatisticThreshold,
    WebhookConfig,
    parse_monitor,
)
from steps.config.profile import (
    ENV_REF,
    SECRET_NAME,
    ProfileConfig,
    RetryConfig,
    StepResources,
    expand_env,
    parse_profile,
)
from steps.config.score import FaultInjection, ScoreConfig, parse_score
from steps.config.train import CandidateConfig, ReferenceConfig, TrainConfig, parse_train
from steps.core.project import CONFIG_DIR

__all__ = [
    "AlertRule", "AlertsConfig", "AugmentConfig", "Band", "BaselineConfig", "BootstrapConfig", "CONFIG_DIR",
    "CandidateConfig", "CategoricalSpec", "ChampionGates", "ConfigError", "DatasetConfig", "DerivedTarget",
    "DistillConfig", "DriftConfig", "ENV_REF", "EfficiencyGates", "FairnessGates", "FaultInjection",
    "FeedbackConfig", "GatesConfig", "MonitorConfig", "NumericSpec", "PROFILE_ENV", "PerformanceGates",
    "PerformanceMetric", "ProfileConfig", "ROW_KEY", "ReferenceConfig", "RetrainConfig", "RetryConfig",
    "ReviewGates", "RobustnessGates", "SECRET_NAME", "ScoreConfig", "SplitMethod", "SplitSpec",
    "StatisticThreshold", "StepResources", "Strict", "StudentConfig", "TargetSpec", "Threshold", "ThresholdPolicy",
    "TimeSpec", "TimeUnit", "TrainConfig", "WebhookConfig", "category_label", "config_source", "expand_env", "load",
    "load_file", "parse_dataset", "parse_distill", "parse_gates", "parse_monitor", "parse_profile", "parse_score",
    "parse_text", "parse_train", "unique_names", "validate",
]
