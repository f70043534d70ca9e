"""Production days for the monitoring demo and tests: daily input partitions and late labels from the generator.

Each day is drawn from ``steps.data.synth`` on its own seed; from ``covariate_drift_day`` (``concept_drift_day``) on,
the generator's covariate (concept) drift knob is on. Event times are squeezed into the day, transaction ids are
made unique across days, and the label (``is_fraud``) is split off into a late-label file.

Written, scored and replayed end to end by :mod:`steps.ops.scenario` (its command line writes the days).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from steps.data import synth

logger = logging.getLogger(__name__)


ID_STRIDE = 10_000_000  # ids of day k are k * ID_STRIDE + 1, 2, ...


@dataclass(frozen=True)
class Scenario:
    """The production days to generate."""

    first_day: str = "2026-01-01"
    days: int = 14
    rows_per_day: int = 2000
    seed: int = 101
    covariate_drift_day: str | None = None
    concept_drift_day: str | None = None
    label_delay_days: int = 2
    concept_drift_strength: float = 2.0  # the generator's rule at 2: a fraud model loses ~13 AUC points
    covariate_drift_strength: float = 1.0  # the generator's covariate shift (more e-commerce, larger amounts, bursts)

    def dates(self) -> list[str]:
        """Every day, oldest first."""
        first = date.fromisoformat(self.first_day)
        return [(first + timedelta(days=i)).isoformat() for i in range(self.days)]


def day_frame(s: Scenario, day: str) -> pd.DataFrame:
    """One day's transactions (label included), drifted when the day is on or after a drift day."""
    ordinal = date.fromisoformat(day).toordinal()
    spec = synth.SynthSpec(rows=s.rows_per_day, seed=s.seed * 100_003 + ordinal, start=day, months=1,
                           covariate_drift_month=0 if s.covariate_drift_day and day >= s.covariate_drift_day else None,
                           concept_drift_month=0 if s.concept_drift_day and day >= s.concept_drift_day else None,
                           covariate_drift_strength=s.covariate_drift_strength,
                           concept_drift_strength=s.concept_drift_strength,
                           row_group_rows=max(s.rows_per_day, 1))
    frame = synth.generate(spec)
    start = pd.Timestamp(day, tz="UTC")
    span = (start.tz_localize(None).to_period("M") + 1).to_timestamp().tz_localize("UTC") - start  # synth's span
    frame["event_time"] = start + (frame["event_time"] - start) / (span / pd.Timedelta(days=1))
    frame["transaction_id"] = frame["transaction_id"] + (date.fromisoformat(day) - date(2000, 1, 1)).days * ID_STRIDE
    return frame


def write(s: Scenario, out: str | Path) -> dict[str, list[str]]:
    """Write ``<out>/incoming/dt=<day>/transactions.parquet`` and ``<out>/labels/dt=<day>/labels.parquet``, and
    ``<out>/labelled.parquet``: every day with its label (the warehouse's labelled table, to retrain on)."""
    out = Path(out)
    written: dict[str, list[str]] = {"incoming": [], "labels": [], "labelled": [str(out / "labelled.parquet")]}
    frames = []
    for day in s.dates():
        frame = day_frame(s, day)
        frames.append(frame)
        inputs = out / "incoming" / f"dt={day}" / "transactions.parquet"
        labels = out / "labels" / f"dt={day}" / "labels.parquet"
        for path in (inputs, labels):
            path.parent.mkdir(parents=True, exist_ok=True)
        frame.drop(columns=["is_fraud"]).to_parquet(inputs, index=False)
        delay = pd.to_timedelta(np.full(len(frame), s.label_delay_days), unit="D")
        pd.DataFrame({"transaction_id": frame["transaction_id"], "label": frame["is_fraud"].astype(np.int64),
                      "label_time": frame["event_time"] + delay}).to_parquet(labels, index=False)
        written["incoming"].append(str(inputs))
        written["labels"].append(str(labels))
    pd.concat(frames, ignore_index=True).to_parquet(out / "labelled.parquet", index=False)
    logger.info("wrote %d day(s) of inputs and labels under %s", s.days, out)
    return written
