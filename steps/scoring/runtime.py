"""Scoring runtimes: the native pipeline or ONNX Runtime, and LightGBM contributions."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from steps.config.dataset import DatasetConfig
from steps.config.score import ScoreConfig
from steps.modeling import models
from steps.scoring.plan import InputFile
from steps.scoring.read import sample_rows
from steps.scoring.resolve import ResolvedModel, ScoreModelError


class Scorer(Protocol):
    """Raw rows in, one positive-class probability per row out."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores for ``frame``'s rows."""


class NativeScorer:
    """The fitted scikit-learn pipeline itself."""

    def __init__(self, pipeline: Any, features: list[str], threads: int = 1) -> None:
        self.pipeline, self.features = pipeline, list(features)
        estimator = pipeline[-1]
        if "n_jobs" in estimator.get_params():
            estimator.set_params(n_jobs=threads)  # a runtime setting of the loaded copy; the stored bytes are unchanged

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probabilities (float64)."""
        if frame.empty:
            return np.empty(0)
        return np.asarray(self.pipeline.predict_proba(frame[self.features])[:, 1], dtype=np.float64)


def build_scorer(runtime: str, pipeline: Any, spec: DatasetConfig, onnx_bytes: bytes | None = None,
                 threads: int = 1) -> Scorer:
    """The configured runtime: ``native`` (the pipeline) or ``onnx`` (ONNX Runtime on ``onnx_bytes``)."""
    if runtime == "native":
        return NativeScorer(pipeline, spec.features, threads)
    if runtime == "onnx":
        from steps.modeling.onnx import OnnxScorer

        if onnx_bytes is None:
            raise ValueError("runtime onnx needs the model's ONNX bytes")
        return OnnxScorer(onnx_bytes, threads)
    raise ValueError(f"unknown runtime {runtime!r} (native or onnx)")


def check_explainable(pipeline: Any, top_k: int) -> list[str]:
    """The transformed feature names when ``top_k`` contributions can be computed; ScoreModelError otherwise."""
    estimator = pipeline[-1]
    if type(estimator).__name__ != "LGBMClassifier":
        raise ScoreModelError(f"top_k contributions need a LightGBM model (pred_contrib); the model is "
                              f"{type(estimator).__name__}: set top_k: 0")
    names = [str(n) for n in pipeline[:-1].get_feature_names_out()]
    if top_k > len(names):
        raise ScoreModelError(f"top_k {top_k} exceeds the model's {len(names)} features")
    return names


def top_contributions(pipeline: Any, frame: pd.DataFrame, features: list[str], k: int) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """(feature index [n, k], contribution [n, k]) of the k largest |contributions| per row (LightGBM, log-odds)."""
    transformed = pipeline[:-1].transform(frame[features])
    contrib = pipeline[-1].predict(transformed, pred_contrib=True)[:, :-1]  # the last column is the bias
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(contrib, order, axis=1)


def prepare_runtime(model: ResolvedModel, cfg: ScoreConfig, spec: DatasetConfig, files: list[InputFile],
                    threshold: float) -> tuple[bytes | None, dict[str, Any] | None]:
    """For runtime onnx: (ONNX bytes, parity record) after a parity check on the input; (None, None) for native."""
    if cfg.runtime != "onnx":
        return None, None
    from steps.modeling.onnx import OnnxScorer, check_parity, to_onnx

    onnx_bytes = model.onnx or to_onnx(model.pipeline, spec)  # a student brings its own registered graph
    sample = sample_rows(files, spec, cfg.parity_rows)
    if sample.empty:
        return onnx_bytes, {"rows": 0, "note": "empty input: nothing to compare"}
    return onnx_bytes, check_parity(model.pipeline, OnnxScorer(onnx_bytes), sample, spec, threshold,
                                    cfg.onnx_tolerance)


def scorers_for(cfg: ScoreConfig, spec: DatasetConfig, blob: bytes, fingerprint: str, onnx_bytes: bytes | None,
                shadow_blob: bytes | None = None, shadow_fingerprint: str | None = None) -> tuple[Scorer, Scorer | None,
                                                                                                   Any]:
    """(model scorer, shadow scorer or None, native pipeline for contributions or None) from verified bytes.

    The shadow model always runs natively (it is compared, not served).
    """
    pipeline = models.deserialize(blob, fingerprint)
    model = build_scorer(cfg.runtime, pipeline, spec, onnx_bytes, cfg.threads)
    shadow = None
    if shadow_blob is not None and shadow_fingerprint:
        shadow = build_scorer("native", models.deserialize(shadow_blob, shadow_fingerprint), spec, None, cfg.threads)
    return model, shadow, (pipeline if cfg.top_k else None)
