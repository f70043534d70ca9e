"""Train and evaluate one candidate; pick the winner; describe the schema a model expects."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from steps.config.dataset import DatasetConfig
from steps.config.train import CandidateConfig, TrainConfig
from steps.modeling import models
from steps.modeling.metrics import curves, scores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateResult:
    """One fitted candidate: serialized pipeline, fingerprint, validation metrics and curves."""

    name: str
    type: str
    params: dict[str, Any]
    model_blob: bytes
    fingerprint: str
    metrics: dict[str, float]
    curves: dict[str, Any]
    fit_seconds: float
    train_rows: int

    def summary(self) -> dict[str, Any]:
        """Everything but the model bytes and curves, for tables and JSON."""
        out = asdict(self)
        for key in ("model_blob", "curves"):
            out.pop(key)
        out["size_bytes"] = len(self.model_blob)
        return out


def sample_train(frame: pd.DataFrame, cfg: TrainConfig) -> pd.DataFrame:
    """The training frame, downsampled to ``max_train_rows`` (seeded) when configured."""
    if cfg.max_train_rows is None or len(frame) <= cfg.max_train_rows:
        return frame
    return frame.sample(n=cfg.max_train_rows, random_state=cfg.seed).sort_index()


def candidate_by_name(cfg: TrainConfig, name: str) -> CandidateConfig:
    """The candidate config called ``name``."""
    for candidate in cfg.candidates:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no candidate named {name!r} in train config; have {[c.name for c in cfg.candidates]}")


def train_candidate(candidate: CandidateConfig, train: pd.DataFrame, validation: pd.DataFrame,
                    spec: DatasetConfig, cfg: TrainConfig) -> CandidateResult:
    """Fit ``candidate`` on ``train`` and score it on ``validation``."""
    train = sample_train(train, cfg)
    pipeline = models.build_pipeline(candidate, spec, cfg.seed, cfg.threads)
    pipeline, seconds = models.fit(pipeline, train, spec, cfg.threads)
    proba = models.predict_proba(pipeline, validation, spec, cfg.threads)
    y = validation[spec.target.name].to_numpy()
    blob = models.serialize(pipeline)
    result = CandidateResult(
        name=candidate.name, type=candidate.type, params=dict(candidate.params), model_blob=blob,
        fingerprint=models.fingerprint(blob), metrics=scores(y, proba),
        curves=curves(y, proba, cfg.curve_points), fit_seconds=round(seconds, 3), train_rows=len(train),
    )
    logger.info("%s: validation %s", candidate.name, {k: round(v, 4) for k, v in result.metrics.items()})
    return result


def feature_schema(spec: DatasetConfig) -> dict[str, Any]:
    """The raw input a model expects: id, feature columns with kinds and allowed values."""
    return {
        "id": spec.id_column,
        "time": spec.time,
        "target": spec.target.name,
        "features": spec.features,
        "numeric": {k: v.model_dump() for k, v in spec.numeric.items()},
        "categorical": {k: v.model_dump() for k, v in spec.categorical.items()},
        "sensitive": list(spec.sensitive),
    }
