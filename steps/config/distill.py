"""``config/distill.yaml``: students, transfer set, selection rule, parity limits (DistillFlow)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steps.config.base import Strict, config_source, parse_text, reject_device_params, unique_names


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

    @model_validator(mode="after")
    def _device(self) -> StudentConfig:
        reject_device_params(self.params, "distill.device")
        return self


class DistillConfig(Strict):
    """``config/distill.yaml``: students, transfer set, selection rule, parity limits (DistillFlow)."""

    students: list[StudentConfig] = Field(min_length=1)
    augmentation: AugmentConfig = AugmentConfig()
    max_transfer_rows: int | None = Field(None, ge=100)
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="LightGBM students: auto uses the GPU when the train_student step has one (profile); a GPU "
        "fit that fails is done again on the CPU (recorded)")
    seed: int = 42
    threads: int | None = Field(None, ge=1, le=256, description="threads (null: the step's cpu in the profile)")
    min_auc_ratio: float = Field(0.985, gt=0.0, le=1.0, description="student AUC / teacher AUC floor")
    max_cost_ratio: float = Field(0.10, gt=0.0, description="student / teacher per-row cost ceiling")
    cost_runtime: Literal["onnx", "native"] = "onnx"
    cost_rows: int = Field(5000, ge=100, description="batch rows for single-thread rows/s")
    latency_rows: int = Field(200, ge=10)
    parity_tolerance: float = Field(1e-4, gt=0.0, description="max |onnx - native| probability")
    max_flip_rate: float = Field(1e-4, ge=0.0, le=1.0, description="decision flips allowed per row (1 / 10,000)")
    quantized_tolerance: float = Field(0.05, gt=0.0, description="max |int8 - native| probability (reported)")
    quantized_max_flip_rate: float = Field(0.01, ge=0.0, le=1.0)

    @field_validator("students")
    @classmethod
    def _unique(cls, value: list[StudentConfig]) -> list[StudentConfig]:
        return unique_names(value, "student")


def parse_distill(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/distill.yaml``."""
    return parse_text(DistillConfig, text, config_source("distill", "config/distill.yaml"))
