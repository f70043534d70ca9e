"""``config/monitor.yaml``: MonitorFlow's window, statistics, baselines, feedback, alerts, retraining."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steps.config.base import Strict, config_source, parse_text, unique_names


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
    def _sizes(self) -> BaselineConfig:
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
        return unique_names(value, "alert rule")


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
    return parse_text(MonitorConfig, text, config_source("monitor", "config/monitor.yaml"))
