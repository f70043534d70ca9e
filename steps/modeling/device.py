"""Where a model trains: on the CPU, or on LightGBM's OpenCL GPU learner when its step was given a GPU.

LightGBM's PyPI wheel carries the OpenCL learner (``device_type="gpu"``), not the CUDA one; scikit-learn's models
train on the CPU only. A GPU fit runs in double precision (``gpu_use_dp``) unless the parameters say otherwise:
measured on an H200, two single-precision fits of the same data differed by up to 0.14 in a row's probability,
two double-precision fits were equal and within 5e-8 of the CPU's model, at the same speed (on that GPU; cards with
little double-precision throughput were not measured). Before the training rows are read, a two-tree fit of a copy
of the estimator on random rows checks that the GPU learner starts; when it does not (no OpenCL device, a build
without the learner), or the real fit raises LightGBM's error, the model is fitted on the CPU instead, built as a
CPU model from the start, and its record says why. Measured against CPU threads in ``benchmarks/gpu_lightgbm.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

T = TypeVar("T")
GPU_DEFAULTS = {"gpu_use_dp": True}  # run-to-run equal models (see the module docstring)


def resolve(requested: str, gpus: int, can_use_gpu: bool) -> str:
    """``cpu`` or ``gpu``: ``auto`` is ``gpu`` when the step was given a GPU; a model that cannot train on one
    (``can_use_gpu`` False: any but LightGBM) is always ``cpu``."""
    if not can_use_gpu:
        return "cpu"
    return ("gpu" if gpus > 0 else "cpu") if requested == "auto" else requested


def lightgbm_params(params: dict[str, Any], device: str) -> dict[str, Any]:
    """A LightGBM estimator's ``params`` for ``device``: ``device_type`` always (a model fitted on the CPU is the same
    bytes however it got there), and on the GPU double precision unless ``params`` set it."""
    return {**(GPU_DEFAULTS if device == "gpu" else {}), **params, "device_type": device}


def lightgbm_estimator(pipeline: Pipeline) -> Any | None:
    """The pipeline's LightGBM estimator: its model, or a distilled student's regressor; None for any other."""
    model = pipeline[-1]
    for estimator in (model, getattr(model, "regressor", None)):
        if estimator is not None and type(estimator).__module__.startswith("lightgbm"):
            return estimator
    return None


def _reason(err: Exception) -> str:
    """``Type: first line of the message`` (at most 200 characters)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def gpu_problem(estimator: Any) -> str | None:
    """Why ``estimator``'s GPU learner does not start here, or None when it does: a two-tree fit of a copy of it (the
    same class, objective, threads and ``gpu_*`` settings) on 256 random rows, before the training rows are read."""
    from lightgbm.basic import LightGBMError
    from sklearn.base import clone, is_classifier

    x = np.random.default_rng(0).random((256, 4))
    y = (x[:, 0] > 0.5).astype(int) if is_classifier(estimator) else x[:, 0]
    try:
        clone(estimator).set_params(n_estimators=2, verbose=-1).fit(x, y)
    except LightGBMError as err:
        return _reason(err)
    return None


def fit_with_fallback(pipeline: Pipeline, fit: Callable[[Pipeline], T],
                      on_cpu: Callable[[], Pipeline] | None) -> tuple[T, dict[str, Any]]:
    """``fit(pipeline)`` on the device its LightGBM estimator asks for; ``fit(on_cpu())`` when that is the GPU and
    it does not start (:func:`gpu_problem`) or the fit raises LightGBM's error. Without ``on_cpu``: the one fit, and
    its error.

    Returns what ``fit`` returns and ``{"device": the device that trained it, "fallback": why not the GPU, or None}``.
    """
    from lightgbm.basic import LightGBMError

    estimator = lightgbm_estimator(pipeline)
    requested = str(estimator.get_params().get("device_type", "cpu")) if estimator is not None else "cpu"
    if requested == "cpu" or on_cpu is None:
        return fit(pipeline), {"device": requested, "fallback": None}
    reason = gpu_problem(estimator)
    if reason is None:
        try:
            return fit(pipeline), {"device": "gpu", "fallback": None}
        except LightGBMError as err:  # e.g. out of GPU memory; any other error is the data's or the code's
            reason = _reason(err)
    # retried here, not inside ``except``: the failed attempt's frames (and its data) are released first
    logger.warning("LightGBM's GPU fit did not start or failed (%s); fitting on the CPU instead", reason)
    return fit(on_cpu()), {"device": "cpu", "fallback": reason}
