"""Where a model trains: on the CPU, or on LightGBM's OpenCL GPU learner when its step was given a GPU.

LightGBM's PyPI wheel carries the OpenCL learner (``device_type="gpu"``), not the CUDA one; scikit-learn's models
train on the CPU only. A GPU fit that cannot start (no OpenCL device, a build without the learner) or fails is
logged and done again on the CPU, and the model's record says which device trained it and why it fell back.
Measured on an NVIDIA H200 against 4 and 16 CPU threads (``benchmarks/gpu_lightgbm.py``, README "GPU training").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "gpu"]
T = TypeVar("T")


def resolve(requested: str, gpus: int, can_use_gpu: bool) -> str:
    """``cpu`` or ``gpu``: ``auto`` is ``gpu`` when the step was given a GPU and the model can train on one."""
    if requested == "auto":
        return "gpu" if gpus > 0 and can_use_gpu else "cpu"
    if requested == "gpu" and not can_use_gpu:
        raise ValueError("device gpu: only LightGBM models train on a GPU")
    return requested


def lightgbm_estimator(pipeline: Pipeline) -> Any | None:
    """The pipeline's LightGBM estimator: its model, or a distilled student's regressor; None for any other."""
    model = pipeline[-1]
    for estimator in (model, getattr(model, "regressor", None)):
        if estimator is not None and type(estimator).__module__.startswith("lightgbm"):
            return estimator
    return None


def fit_with_fallback(pipeline: Pipeline, fit: Callable[[Pipeline], T]) -> tuple[T, dict[str, Any]]:
    """``fit(pipeline)`` on the device its LightGBM estimator asks for, again on the CPU when the GPU fit raises.

    Returns what ``fit`` returns and ``{"device": the device that trained it, "fallback": the GPU error or None}``.
    """
    estimator = lightgbm_estimator(pipeline)
    device = str(estimator.get_params().get("device_type", "cpu")) if estimator is not None else "cpu"
    if estimator is None or device == "cpu":
        return fit(pipeline), {"device": "cpu", "fallback": None}
    try:
        return fit(pipeline), {"device": device, "fallback": None}
    except Exception as err:  # noqa: BLE001 - LightGBMError "No OpenCL device found", out of GPU memory, ...
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
        logger.warning("LightGBM device '%s' unavailable (%s); fitting on the CPU instead", device, reason)
        estimator.set_params(device_type="cpu")
        return fit(pipeline), {"device": "cpu", "fallback": reason}
