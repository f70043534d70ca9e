"""Candidate model factory, fitting, serialization and fingerprints."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import itertools
import logging
import pickle
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from steps.config.dataset import DatasetConfig
from steps.config.train import CandidateConfig
from steps.core.errors import UserError
from steps.modeling.device import lightgbm_params
from steps.modeling.features import Style, preprocessor

logger = logging.getLogger(__name__)

PARALLEL_MIN_ROWS = 50_000  # below this, one call: a thread pool's setup costs more than it saves
SCORE_CHUNK_ROWS = 131_072  # rows per call at most: what scoring holds is one chunk's preprocessed copy per thread


class FingerprintMismatch(UserError):
    """A serialized model does not hash to the fingerprint recorded for it."""


def _logistic(params: dict[str, Any], seed: int, threads: int) -> ClassifierMixin:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(**{"max_iter": 1000, "random_state": seed, **params})


def _lightgbm(params: dict[str, Any], seed: int, threads: int) -> ClassifierMixin:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**{"random_state": seed, "n_jobs": threads, "verbose": -1, **params})


def _random_forest(params: dict[str, Any], seed: int, threads: int) -> ClassifierMixin:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(**{"random_state": seed, "n_jobs": threads, **params})


def _hist_gb(params: dict[str, Any], seed: int, threads: int) -> ClassifierMixin:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**{"random_state": seed, **params})


REGISTRY: dict[str, tuple[Callable[[dict[str, Any], int, int], ClassifierMixin], Style]] = {
    "logistic_regression": (_logistic, "linear"),
    "lightgbm": (_lightgbm, "tree"),
    "random_forest": (_random_forest, "tree"),
    "hist_gradient_boosting": (_hist_gb, "tree"),
}


def estimator_params(estimator: Any) -> set[str]:
    """The parameter names ``estimator`` takes: its constructor's, and for LightGBM every core parameter and alias."""
    names = set(estimator.get_params())
    if type(estimator).__module__.startswith("lightgbm"):
        from lightgbm.basic import _ConfigAliases  # the C library's parameter list (with aliases)

        aliases = _ConfigAliases._get_all_param_aliases()
        names |= set(aliases) | {alias for group in aliases.values() for alias in group}
    return names


def unknown_params(estimator: Any, params: dict[str, Any], where: str) -> list[str]:
    """One line per key of ``params`` that ``estimator`` does not take, with a did-you-mean suggestion."""
    allowed = estimator_params(estimator)
    out = []
    for key in sorted(set(params) - allowed):
        close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
        out.append(f"{where}: unknown parameter {key!r} for {type(estimator).__name__}"
                   + (f" (did you mean {close[0]!r}?)" if close else ""))
    return out


def check_candidates(candidates: list[CandidateConfig], seed: int = 0) -> None:
    """UserError listing every candidate parameter its estimator does not take or (scikit-learn) whose value it
    rejects, with did-you-mean suggestions; checked before any data is read."""
    problems = []
    for candidate in candidates:
        factory, _ = REGISTRY[candidate.type]
        where = f"candidate '{candidate.name}'"
        unknown = unknown_params(factory({}, seed, 1), dict(candidate.params), where)
        problems += unknown or _bad_values(factory, dict(candidate.params), seed, where)
    if problems:
        raise UserError("bad candidate parameters in the train config:\n" + "\n".join(f"  - {p}" for p in problems))


def _bad_values(factory: Callable[..., Any], params: dict[str, Any], seed: int, where: str) -> list[str]:
    """The estimator's own validation of ``params``' values (scikit-learn's parameter constraints), as problems."""
    try:
        estimator = factory(params, seed, 1)
        if hasattr(estimator, "_parameter_constraints"):  # scikit-learn estimators: the checks fit() runs first
            estimator._validate_params()
    except (TypeError, ValueError) as err:
        return [f"{where}: {err}"]
    return []


def build_pipeline(candidate: CandidateConfig, spec: DatasetConfig, seed: int, threads: int,
                   device: str = "cpu") -> Pipeline:
    """A ``Pipeline(preprocess, model)`` for one candidate; raw input columns in, probabilities out. A LightGBM
    model is built for ``device`` (:func:`~steps.modeling.device.lightgbm_params`); any other trains on the CPU."""
    factory, style = REGISTRY[candidate.type]
    params = lightgbm_params(candidate.params, device) if candidate.type == "lightgbm" else candidate.params
    try:
        model = factory(params, seed, threads)
    except TypeError as err:
        raise UserError(f"candidate '{candidate.name}' ({candidate.type}): bad params {candidate.params}: "
                         f"{err}") from err
    return Pipeline([("preprocess", preprocessor(spec, style, candidate.impute)), ("model", model)])


def fit(pipeline: Pipeline, frame: pd.DataFrame, spec: DatasetConfig, threads: int) -> tuple[Pipeline, float]:
    """Fit on ``frame``'s feature columns with at most ``threads`` threads; returns (pipeline, seconds)."""
    start = time.perf_counter()
    with threadpool_limits(limits=threads):
        pipeline.fit(frame[spec.features], frame[spec.target.name].to_numpy())
    seconds = time.perf_counter() - start
    logger.info("fitted %s on %d rows in %.1fs", type(pipeline[-1]).__name__, len(frame), seconds)
    return pipeline, seconds


def predict_proba(pipeline: Pipeline, frame: pd.DataFrame, spec: DatasetConfig, threads: int = 1) -> Any:
    """Positive-class probabilities for raw rows (only the feature columns are used).

    A frame is scored in contiguous chunks of at most ``SCORE_CHUNK_ROWS`` rows, so the preprocessed copies (dense
    features, cleaned categoricals) exist for one chunk per thread at a time, not for the whole frame: scoring 1.5M
    hold-out rows on two threads grew the peak RSS by 364-417 MiB in one call per thread, by 66-111 MiB in chunks.
    With ``threads`` > 1, a frame of at least ``PARALLEL_MIN_ROWS`` rows is split into at least that many chunks,
    scored at once, each on one thread (native thread pools limited inside every worker, and an estimator's own
    ``n_jobs`` set to 1 for the call): the preprocessing is spread too, not only the estimator. Each row's score is
    the same as in one call.
    """
    features = frame[spec.features]
    parallel = threads > 1 and len(features) >= PARALLEL_MIN_ROWS
    chunks = max(threads if parallel else 1, -(-len(features) // SCORE_CHUNK_ROWS))
    if chunks == 1:
        with threadpool_limits(limits=threads):
            return pipeline.predict_proba(features)[:, 1]
    bounds = np.linspace(0, len(features), chunks + 1).astype(int)
    parts = [features.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    if not parallel:
        with threadpool_limits(limits=threads):
            return np.concatenate([pipeline.predict_proba(part)[:, 1] for part in parts])

    def score(chunk: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(limits=1):  # OpenMP limits hold per thread: set them in the worker itself
            return pipeline.predict_proba(chunk)[:, 1]

    with _single_threaded(pipeline[-1]), ThreadPoolExecutor(threads) as pool:
        return np.concatenate(list(pool.map(score, parts)))


@contextlib.contextmanager
def _single_threaded(estimator: Any) -> Iterator[None]:
    """``estimator.n_jobs`` set to 1 for the duration (LightGBM and random forests predict with it), then restored."""
    n_jobs = estimator.get_params().get("n_jobs") if hasattr(estimator, "get_params") else None
    if n_jobs is None or n_jobs == 1:
        yield
        return
    estimator.set_params(n_jobs=1)
    try:
        yield
    finally:
        estimator.set_params(n_jobs=n_jobs)


def serialize(model: Any) -> bytes:
    """The model as bytes (pickle protocol 5); what the fingerprint is computed over."""
    return pickle.dumps(model, protocol=5)


def fingerprint(blob: bytes) -> str:
    """sha256 hex digest of serialized model bytes."""
    return hashlib.sha256(blob).hexdigest()


def deserialize(blob: bytes, expected_sha256: str) -> Any:
    """Load a model only when its bytes hash to ``expected_sha256``.

    Raises:
        FingerprintMismatch: the bytes were altered or belong to another model.
    """
    actual = fingerprint(blob)
    if actual != expected_sha256:
        raise FingerprintMismatch(f"model fingerprint mismatch: expected sha256 {expected_sha256}, got {actual}; "
                                  "refusing to load")
    return _Unpickler(io.BytesIO(blob)).load()  # bytes verified against the fingerprint recorded at training time


# Where classes and functions pickled by older code live now (steps/ was flat before it was grouped by stage). The
# fingerprint is over the bytes, which do not change; only the lookup of the names inside them does.
MOVED_MODULES = {
    "steps.features": "steps.modeling.features",
    "steps.distill": "steps.distill.students",
}


class _Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves names pickled under a module path that has since moved."""

    def find_class(self, module: str, name: str) -> Any:
        """The class or function ``module.name``, looked up under its current module."""
        return super().find_class(MOVED_MODULES.get(module, module), name)
