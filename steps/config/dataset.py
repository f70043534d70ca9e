"""``config/dataset.yaml`` (and ``config/datasets/*.yaml``): what a valid table looks like."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from steps.config.base import Strict, config_source, parse_text

ROW_KEY = "row_key"  # the row key column when the dataset has no id: "<input file>#<row number>" in predictions
TimeUnit = Literal["timestamp", "date", "year", "period", "unix_seconds", "unix_milliseconds"]
SplitMethod = Literal["time", "column", "random"]


def category_label(value: Any) -> str:
    """A category level as the string the models see: integral numbers without a fraction (1.0 -> '1')."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
    """A categorical feature: its known levels (None = any) and null budget.

    Levels may be strings or integer codes (``categories: [1, 2, 3]``); either way a level is compared and encoded as
    its string (``1`` and ``1.0`` are both ``'1'``), the same for training and scoring.
    """

    categories: list[str] | None = None
    max_null_rate: float = Field(0.0, ge=0.0, le=1.0)
    max_unknown_rate: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("categories", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> Any:
        return [category_label(v) for v in value] if isinstance(value, list) else value


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
    max_positive_rate: float = Field(1.0, gt=0.0, le=1.0, description="stop when more rows than this are positive")


class TimeSpec(Strict):
    """The time column and what its values are: timestamps, dates, integer years, integer periods or epoch numbers.

    ``period`` is an ordered integer (a wave, a season number): it orders and splits rows but is not a date.
    """

    column: str
    unit: TimeUnit = "timestamp"
    format: str | None = Field(None, description="strptime format of string timestamps (default: ISO 8601 only)")


class SplitSpec(Strict):
    """How train / validation / hold-out are cut.

    * ``time``: the most recent ``holdout_fraction`` of rows by time are the hold-out, the ``validation_fraction``
      before them the validation set (needs at least three distinct times).
    * ``column``: rows whose ``column`` holds one of ``holdout_values`` are the hold-out (e.g. the last wave); rows in
      ``validation_values`` the validation set, or, when that is empty, the latest ``validation_fraction`` of the
      rest by time (at random, stratified, when the rest holds a single time).
    * ``random``: a stratified random split; reported as overstating production quality when data drift over time.
    """

    method: SplitMethod = "time"
    validation_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    holdout_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    column: str | None = None
    holdout_values: list[Any] = Field(default_factory=list)
    validation_values: list[Any] = Field(default_factory=list)
    seed: int = 42

    @model_validator(mode="after")
    def _method(self) -> SplitSpec:
        if self.method == "column" and (self.column is None or not self.holdout_values):
            raise ValueError("split method 'column' needs column and holdout_values")
        if self.method != "column" and (self.column is not None or self.holdout_values or self.validation_values):
            raise ValueError(f"column, holdout_values and validation_values belong to method 'column', not "
                             f"'{self.method}'")
        overlap = {category_label(v) for v in self.holdout_values} & {category_label(v) for v in
                                                                        self.validation_values}
        if overlap:
            raise ValueError(f"values in both holdout_values and validation_values: {sorted(overlap)}")
        return self


class DatasetConfig(Strict):
    """``config/dataset.yaml``: what a valid training table looks like."""

    name: str
    path: str = Field(description="default source: a Parquet/CSV path or s3:// URL")
    dvc_path: str | None = Field(None, description="path of the file inside the DVC-tracked data, for --data-rev")
    id: str | None = Field(None, description="unique row id column; null: none (predictions carry a row_key)")
    time: TimeSpec | None = Field(None, description="a column name (timestamps), {column, unit, format}, or null")
    split: SplitSpec | None = Field(None, description="this dataset's split (default: train.yaml's split)")
    target: TargetSpec
    numeric: dict[str, NumericSpec] = Field(default_factory=dict)
    categorical: dict[str, CategoricalSpec] = Field(default_factory=dict)
    sensitive: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list, description="columns present in the data but not used")
    min_rows: int = Field(100, ge=1)

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value

    @property
    def id_column(self) -> str:
        """The id column's name, or ``row_key`` (generated) when the dataset has none."""
        return self.id or ROW_KEY

    @property
    def time_column(self) -> str | None:
        """The time column's name, or None when the dataset has no time."""
        return self.time.column if self.time is not None else None

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
        special = {c for c in (self.time_column, self.target.name, self.id) if c}
        clash = special & set(self.features)
        if clash:
            raise ValueError(f"id/time/target columns must not be features: {sorted(clash)}")
        if self.time is None and self.split is not None and self.split.method == "time":
            raise ValueError("split method 'time' needs a time column: set time, or split.method random or column")
        return self


def parse_dataset(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/dataset.yaml``."""
    return parse_text(DatasetConfig, text, config_source("dataset", "config/dataset.yaml"))
