"""``config/dataset.yaml`` (and ``config/datasets/*.yaml``): what a valid table looks like."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from steps.config.base import Strict, config_source, parse_text


class NumericSpec(Strict):
    """A numeric feature: its allowed range and null budget."""

    min: float | None = None
    max: float | None = None
    max_null_rate: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _range(self) -> NumericSpec:
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
    def _columns(self) -> DatasetConfig:
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


def parse_dataset(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/dataset.yaml``."""
    return parse_text(DatasetConfig, text, config_source("dataset", "config/dataset.yaml"))
