"""Train and evaluate one candidate; pick the winner; describe the schema a model expects."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from steps.config.dataset import DatasetConfig
from steps.config.profile import StepResources
from steps.config.train import CandidateConfig, TrainConfig
from steps.core.decision import choose_threshold
from steps.data.table import PartRows, sample_frame
from steps.modeling import design, device, models
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
    decision: dict[str, Any]  # the decision threshold its policy set on the validation set
    threads: int = 1
    device: str = "cpu"  # the device that trained it
    device_fallback: str | None = None  # why a GPU fit was done again on the CPU

    def summary(self) -> dict[str, Any]:
        """Everything but the model bytes and curves, for tables and JSON."""
        out = asdict(self)
        for key in ("model_blob", "curves"):
            out.pop(key)
        out["size_bytes"] = len(self.model_blob)
        return out


def train_limit(candidate: CandidateConfig, cfg: TrainConfig) -> int | None:
    """A candidate's training rows: its own ``max_train_rows``, else the train config's (None: every row)."""
    return candidate.max_train_rows or cfg.max_train_rows


def sample_train(frame: pd.DataFrame, cfg: TrainConfig, limit: int | None = None) -> pd.DataFrame:
    """The training frame, downsampled (seeded) to ``limit`` rows, else ``cfg.max_train_rows``, when either is set:
    the rows ``table.read_part`` keeps with the same limit and seed, in table order."""
    return sample_frame(frame, limit or cfg.max_train_rows, cfg.seed)


def training_columns(spec: DatasetConfig) -> list[str]:
    """The columns a candidate reads: the features and the target."""
    return list(dict.fromkeys([*spec.features, spec.target.name]))


def candidate_by_name(cfg: TrainConfig, name: str) -> CandidateConfig:
    """The candidate config called ``name``."""
    for candidate in cfg.candidates:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no candidate named {name!r} in train config; have {[c.name for c in cfg.candidates]}")


def train_candidate(candidate: CandidateConfig, train: pd.DataFrame | PartRows, validation: pd.DataFrame,
                    spec: DatasetConfig, cfg: TrainConfig, policy: Any,
                    step: StepResources | None = None) -> CandidateResult:
    """Fit ``candidate`` on ``train`` (at most its ``max_train_rows``, with its ``threads``; else the train config's,
    else the ``step``'s cpu), on its device (:func:`candidate_device`), score it on ``validation``, and set its
    decision threshold there (``policy``: ``config.gates.ThresholdPolicy``).

    ``train`` as stored rows (``table.PartRows``, read with that limit) is read whole up to ``preprocess_fit_rows``
    rows, else streamed (:func:`design.fit_streamed`)."""
    step = step or StepResources()
    threads = candidate.threads or cfg.threads or step.threads
    pipeline = models.build_pipeline(candidate, spec, cfg.seed, threads, candidate_device(candidate, step))
    (pipeline, seconds, rows), used = device.fit_with_fallback(
        pipeline, lambda p: fit_rows(p, train, spec, cfg, train_limit(candidate, cfg), threads),
        lambda: models.build_pipeline(candidate, spec, cfg.seed, threads, "cpu"))
    proba = models.predict_proba(pipeline, validation, spec, threads)
    y = validation[spec.target.name].to_numpy()
    blob = models.serialize(pipeline)
    result = CandidateResult(
        name=candidate.name, type=candidate.type, params=dict(candidate.params), model_blob=blob,
        fingerprint=models.fingerprint(blob), metrics=scores(y, proba),
        curves=curves(y, proba, cfg.curve_points), fit_seconds=round(seconds, 3), train_rows=rows,
        decision=choose_threshold(policy, y, proba), threads=threads, device=used["device"],
        device_fallback=used["fallback"],
    )
    logger.info("%s: validation %s", candidate.name, {k: round(v, 4) for k, v in result.metrics.items()})
    return result


def candidate_device(candidate: CandidateConfig, step: StepResources) -> str:
    """``cpu`` or ``gpu``: a LightGBM candidate's ``device`` (``auto``: the GPU when its step was given one)."""
    return device.resolve(candidate.device, step.gpu, candidate.type == "lightgbm")


def fit_rows(pipeline: Pipeline, train: pd.DataFrame | PartRows, spec: DatasetConfig, cfg: TrainConfig,
             limit: int | None, threads: int) -> tuple[Pipeline, float, int]:
    """``pipeline`` fitted on ``train``, sampled to ``limit`` (else ``cfg.max_train_rows``); stored rows above
    ``cfg.preprocess_fit_rows`` are streamed (:func:`design.fit_streamed`, the preprocessing fitted on a sample that
    has a missing value and a value of every number column that has one). Returns (pipeline, fit seconds, rows)."""
    if isinstance(train, pd.DataFrame):
        frame = sample_train(train, cfg, limit)
    else:
        rows = train.subset(limit or cfg.max_train_rows, cfg.seed)  # a no-op on rows read with that limit
        fit_on = cfg.preprocess_fit_rows
        if fit_on is not None and rows.rows > fit_on:
            pipeline, seconds = design.fit_streamed(
                pipeline, lambda: rows.sample(fit_on, cfg.seed, list(spec.numeric)), rows.batches, rows.rows, spec,
                threads)
            return pipeline, seconds, rows.rows
        frame = rows.read()
    pipeline, seconds = models.fit(pipeline, frame, spec, threads)
    return pipeline, seconds, len(frame)


def feature_schema(spec: DatasetConfig) -> dict[str, Any]:
    """The raw input a model expects: its dataset, the id (None: rows are keyed), feature columns and their values."""
    return {
        "dataset": spec.name,
        "id": spec.id,
        "time": spec.time_column,
        "target": spec.target.name,
        "features": spec.features,
        "numeric": {k: v.model_dump() for k, v in spec.numeric.items()},
        "categorical": {k: v.model_dump() for k, v in spec.categorical.items()},
        "sensitive": list(spec.sensitive),
    }


def schema_mismatch(dataset: str | None, features: list[str], spec: DatasetConfig) -> str | None:
    """Why a model trained for ``dataset`` on ``features`` cannot serve ``spec``'s data, or None when it can.

    The reason names the columns the model needs that the dataset config lacks, and the ones it does not know.
    ``dataset`` None or ``features`` empty: not recorded (a model from before they were), not checked.
    """
    if dataset is not None and dataset != spec.name:
        return f"it was trained for dataset {dataset!r}, not {spec.name!r}"
    if not features or features == spec.features:
        return None
    missing = [c for c in features if c not in spec.features]
    unknown = [c for c in spec.features if c not in features]
    parts = [f"the dataset config lacks {missing}" if missing else "",
             f"the model does not know {unknown}" if unknown else "",
             "" if missing or unknown else "the feature order differs"]
    return "; ".join(p for p in parts if p) + f" (the model's features: {features})"
