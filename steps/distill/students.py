"""Students: regressors of the teacher's logit behind the shared preprocessing, and the transfer set."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from steps.config.dataset import DatasetConfig
from steps.config.distill import DistillConfig, StudentConfig
from steps.config.profile import StepResources
from steps.core.errors import UserError
from steps.data import table
from steps.modeling import models
from steps.modeling.device import fit_with_fallback, lightgbm_params, resolve
from steps.modeling.features import Style, preprocessor
from steps.modeling.models import unknown_params

logger = logging.getLogger(__name__)


EPS = 1e-7


def sigmoid(z: Any) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=float)
    return np.exp(-np.logaddexp(0.0, -z))


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


class DistilledClassifier(ClassifierMixin, BaseEstimator):
    """A binary classifier whose positive-class probability is sigmoid(regressor(X)).

    ``fit(X, target)`` takes the teacher's logit as ``target`` (continuous): the regressor learns the teacher's
    score, not the labels. ``classes_`` is ``[0, 1]`` so it stands wherever a binary classifier is expected.
    """

    def __init__(self, regressor: Any = None) -> None:
        self.regressor = regressor

    def fit(self, X: Any, y: Any, **fit_params: Any) -> DistilledClassifier:
        """Fit a clone of ``regressor`` on the logit target ``y``."""
        if self.regressor is None:
            raise ValueError("DistilledClassifier needs a regressor")
        self.regressor_ = clone(self.regressor).fit(X, np.asarray(y, dtype=float), **fit_params)
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The regressor's output: the student's logit."""
        return np.asarray(self.regressor_.predict(X), dtype=float).ravel()

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[1 - p, p]`` with p = sigmoid(logit)."""
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """1 where p >= 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


STYLES: dict[str, Style] = {"lightgbm": "tree", "mlp": "linear", "linear": "linear"}


def _regressor(student: StudentConfig, seed: int, threads: int, device: str) -> Any:
    params = dict(student.params)
    if student.type == "lightgbm":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(**{"n_estimators": 30, "num_leaves": 7, "learning_rate": 0.1, "random_state": seed,
                                "n_jobs": threads, "verbose": -1, **lightgbm_params(params, device)})
    if student.type == "mlp":
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(**{"hidden_layer_sizes": (32,), "max_iter": 60, "early_stopping": True,
                               "random_state": seed, **params})
    from sklearn.linear_model import Ridge

    return Ridge(**{"alpha": 1.0, **params})


def check_students(students: list[StudentConfig]) -> None:
    """UserError listing every student parameter its regressor does not take (checked before any work)."""
    problems = [line for student in students
                for line in unknown_params(_regressor(student.model_copy(update={"params": {}}), 0, 1, "cpu"),
                                           dict(student.params), f"student '{student.name}'")]
    if problems:
        raise UserError("bad student parameters in the distill config:\n" + "\n".join(f"  - {p}" for p in problems))


def build_student(student: StudentConfig, spec: DatasetConfig, seed: int, threads: int = 1,
                  device: str = "cpu") -> Pipeline:
    """``Pipeline(preprocess, DistilledClassifier(regressor))`` from raw columns (``features.preprocessor``).

    MLP and linear students get the linear preprocessing with median imputation but no missing-indicator
    columns (skl2onnx cannot convert ``add_indicator``); the LightGBM student takes NaN natively.
    """
    pre = preprocessor(spec, STYLES[student.type], impute=True)
    if STYLES[student.type] == "linear" and spec.numeric:
        pre.set_params(num__impute__add_indicator=False)
    return Pipeline([("preprocess", pre), ("model", DistilledClassifier(_regressor(student, seed, threads, device)))])


def fit_student(pipeline: Pipeline, frame: pd.DataFrame, target: np.ndarray, spec: DatasetConfig, threads: int = 1,
                on_cpu: Callable[[], Pipeline] | None = None) -> tuple[Pipeline, dict[str, Any]]:
    """Fit on the transfer set; a LightGBM student whose GPU learner does not start or fails is fitted as ``on_cpu()``
    instead (:func:`~steps.modeling.device.fit_with_fallback`): the same student built for the CPU, as DistillFlow
    passes it. Without ``on_cpu`` a failed GPU fit raises LightGBM's error.

    Returns the fitted pipeline and ``{"device": used, "threads": threads, "fit_seconds": s (the fit that made it),
    "fallback": reason or None}``.
    """
    def fit(p: Pipeline) -> tuple[Pipeline, float]:
        start = time.perf_counter()
        with threadpool_limits(limits=threads):
            return p.fit(frame[spec.features], target), time.perf_counter() - start

    (pipeline, seconds), used = fit_with_fallback(pipeline, fit, on_cpu)
    logger.info("student %s fitted on %s rows on %s in %.1f s", type(pipeline[-1].regressor).__name__,
                f"{len(frame):,}", used["device"], seconds)
    return pipeline, {"device": used["device"], "threads": threads, "fit_seconds": seconds,
                      "fallback": used["fallback"]}


def student_resources(student: StudentConfig, cfg: DistillConfig, step: StepResources) -> tuple[int, str]:
    """(threads, device) of one student's fit: ``cfg.threads`` else the step's cpu; ``cfg.device`` for a LightGBM
    student (``auto``: the GPU when ``step`` has one), the CPU for any other."""
    return cfg.threads or step.threads, resolve(cfg.device, step.gpu, student.type == "lightgbm")


def label_transfer(split: dict[str, Any], teacher: Pipeline, spec: DatasetConfig, cfg: DistillConfig,
                   step: StepResources) -> tuple[str, np.ndarray, int]:
    """The transfer set's fingerprint, the teacher's logits on it (on ``cfg.threads``, else the step's cpu) and its
    row count: what DistillFlow stores, the rows themselves staying by reference (:func:`transfer_frame`)."""
    transfer = transfer_frame(split, spec, cfg)
    threads = cfg.threads or step.threads
    return frame_fingerprint(transfer), teacher_logits(teacher, transfer, spec, threads), len(transfer)


def transfer_set(train_df: pd.DataFrame, spec: DatasetConfig, cfg: DistillConfig) -> pd.DataFrame:
    """The teacher's training rows (feature columns), plus ``augmentation.copies`` perturbed copies.

    With ``max_transfer_rows``, only that many rows are kept: those ``DataFrame.sample`` draws, in their order in
    ``train_df`` (:func:`~steps.data.table.sample_frame`, as :func:`transfer_frame` reads them). A copy jitters
    every numeric feature by ``numeric_noise`` x its std (clipped to the dataset's range, NaN kept) and resamples
    each categorical cell with probability ``category_resample_rate`` from the column's observed distribution.
    """
    base = table.sample_frame(train_df[spec.features], cfg.max_transfer_rows, cfg.seed).reset_index(drop=True)
    aug = cfg.augmentation
    if aug.copies == 0:
        return base
    rng = np.random.default_rng(aug.seed)
    parts = [base]
    for _ in range(aug.copies):
        copy = base.copy()
        for col, rule in spec.numeric.items():
            values = copy[col].to_numpy(dtype=float, na_value=np.nan)
            std = np.nanstd(values) or 0.0
            jittered = values + rng.normal(0.0, aug.numeric_noise * std, len(values))
            copy[col] = np.clip(jittered, rule.min if rule.min is not None else -np.inf,
                                rule.max if rule.max is not None else np.inf)
        for col in spec.categorical:
            observed = base[col].dropna()
            if observed.empty or aug.category_resample_rate == 0:
                continue
            mask = rng.random(len(copy)) < aug.category_resample_rate
            column = copy[col].astype(object).to_numpy(copy=True)
            column[mask] = rng.choice(observed.astype(object).to_numpy(), int(mask.sum()))
            copy[col] = column
        parts.append(copy)
    out = pd.concat(parts, ignore_index=True)
    logger.info("transfer set: %d rows (%d original, %d augmented copies)", len(out), len(base), aug.copies)
    return out


class TransferSetMismatch(UserError):
    """A student task rebuilt other rows than the ones the teacher labelled (retrying cannot help)."""


def transfer_frame(split: dict[str, Any], spec: DatasetConfig, cfg: DistillConfig,
                   expected: str | None = None) -> pd.DataFrame:
    """:func:`transfer_set` of the teacher's training rows read by reference (``split``: its ``split_ref``): the
    feature columns only, and with ``max_transfer_rows`` only the sampled rows are kept from each row group read.
    Every task that builds it gets the same frame (the same rows, the same seeded copies); with ``expected`` (the
    :func:`frame_fingerprint` of the frame the teacher labelled) a different one raises ValueError."""
    frame = transfer_set(table.read_part(split, "train", spec.features, cfg.max_transfer_rows,
                                         cfg.seed).reset_index(drop=True), spec, cfg)
    if expected is not None and frame_fingerprint(frame) != expected:
        raise TransferSetMismatch(
            f"the transfer set rebuilt from {split['table']['uri']} ({len(frame):,} rows) is not the one the teacher "
            f"labelled (fingerprint {expected[:12]}): the stored table, the transfer settings, or the code or library "
            "versions changed between the tasks; run DistillFlow again from `start`")
    return frame


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the frame's row hashes (pandas' ``hash_pandas_object``) and column names: equal frames, equal
    fingerprints (how a task checks it rebuilt the rows another task labelled)."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def teacher_logits(teacher: Pipeline, frame: pd.DataFrame, spec: DatasetConfig, threads: int = 1) -> np.ndarray:
    """The teacher's logit for each row: logit(predict_proba)."""
    return logit(models.predict_proba(teacher, frame, spec, threads))
