"""``config/score.yaml``: the nightly batch scoring job (ScoreFlow)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from steps.config.base import Strict, config_source, parse_text


class FaultInjection(Strict):
    """Test hook: make chosen shards die mid-write on chosen attempts, to prove retries and resume (off by default)."""

    enabled: bool = False
    shards: list[int] = Field(default_factory=lambda: [0], description="shard indexes that fail")
    attempts: list[int] = Field(default_factory=lambda: [0], description="attempts (retry counts) that fail")
    after_batches: int = Field(1, ge=0, description="record batches written to the temporary part first")
    at: Literal["batch", "commit", "manifest", "published"] = Field(
        "batch", description="where: after record batches of a shard, after a shard's part moved into place, in join "
                             "before the manifest is written, or in join after it was")
    mode: Literal["exit", "raise", "notice", "hang"] = Field(
        "exit", description="exit: the process dies (like a reclaimed spot instance); raise: an exception; notice: a "
                            "spot termination notice appears mid-shard; hang: the shard sleeps (for kill tests)")


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
    top_k: int = Field(0, ge=0, le=50, description="per-row top-k feature contributions (LightGBM only; 0 = off)")
    max_quarantine_rate: float = Field(0.01, ge=0.0, le=1.0)
    compression: Literal["zstd", "snappy", "gzip", "lz4", "none"] = "zstd"
    parity_rows: int = Field(2000, ge=10, description="rows of the input used for the ONNX-vs-native parity check")
    onnx_tolerance: float = Field(1e-4, gt=0.0, description="max |onnx - native| probability allowed")
    claim_check_s: float = Field(2.0, gt=0, description="seconds between two checks of the run's claim on the date "
                                                        "while a shard writes (a newer run stops an older one)")
    fault_injection: FaultInjection = FaultInjection()


def parse_score(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/score.yaml``."""
    return parse_text(ScoreConfig, text, config_source("score", "config/score.yaml"))
