"""Train / validation / hold-out split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from steps.config.dataset import DatasetConfig
from steps.config.train import SplitConfig


@dataclass(frozen=True)
class Split:
    """Train, validation and hold-out frames, ordered in time."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame

    def summary(self, time_col: str, target: str) -> dict[str, dict[str, Any]]:
        """Rows, positives and time range per part."""
        return {
            name: {
                "rows": len(part),
                "positives": int(part[target].sum()),
                "time_min": str(part[time_col].min()),
                "time_max": str(part[time_col].max()),
            }
            for name, part in (("train", self.train), ("validation", self.validation), ("holdout", self.holdout))
        }


def temporal_split(frame: pd.DataFrame, spec: DatasetConfig, split: SplitConfig) -> Split:
    """Cut a time-sorted frame at two timestamps: train < validation < hold-out, with no shared timestamp.

    Raises:
        ValueError: a part is empty, lacks positives, or the parts overlap in time or ids.
    """
    times = frame[spec.time]
    cut_valid = times.quantile(1.0 - split.holdout_fraction - split.validation_fraction)
    cut_hold = times.quantile(1.0 - split.holdout_fraction)
    parts = Split(
        train=frame[times < cut_valid].reset_index(drop=True),
        validation=frame[(times >= cut_valid) & (times < cut_hold)].reset_index(drop=True),
        holdout=frame[times >= cut_hold].reset_index(drop=True),
    )
    check_split(parts, spec)
    return parts


def check_split(parts: Split, spec: DatasetConfig) -> None:
    """Raise ValueError unless every part is non-empty, has both classes, and the parts are disjoint in time."""
    problems = []
    for name, part in (("train", parts.train), ("validation", parts.validation), ("holdout", parts.holdout)):
        if part.empty or part[spec.target.name].nunique() < 2:
            problems.append(f"the {name} part has {len(part)} rows and needs both classes")
    if not problems:
        if parts.train[spec.time].max() >= parts.validation[spec.time].min():
            problems.append("train and validation overlap in time")
        if parts.validation[spec.time].max() >= parts.holdout[spec.time].min():
            problems.append("validation and holdout overlap in time")
        ids = [set(p[spec.id_column]) for p in (parts.train, parts.validation, parts.holdout)]
        if ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2]:
            problems.append("the same id appears in more than one part")
    if problems:
        raise ValueError("temporal split failed: " + "; ".join(problems))
