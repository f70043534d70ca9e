"""steps/modeling/device.py: which device trains a model, and the CPU fit that replaces a GPU fit that fails.

The GPU fits here fail for real: ``gpu_platform_id`` 99 names an OpenCL platform no machine has, so LightGBM's GPU
learner raises on a machine with a GPU as on one without.
"""

from __future__ import annotations

import numpy as np
import pytest

from steps.config import CandidateConfig, DatasetConfig, ThresholdPolicy, TrainConfig
from steps.config.profile import StepResources
from steps.data.split import Split
from steps.modeling import device, models, training

POLICY = ThresholdPolicy(value=0.5)
NO_SUCH_PLATFORM = {"gpu_platform_id": 99, "gpu_device_id": 99}


@pytest.mark.parametrize("requested, gpus, can_use_gpu, expected", [
    ("auto", 0, True, "cpu"),
    ("auto", 1, True, "gpu"),
    ("auto", 1, False, "cpu"),   # a scikit-learn model on a GPU step stays on the CPU
    ("cpu", 1, True, "cpu"),
    ("gpu", 0, True, "gpu"),     # asked for anywhere: tried, and falls back when there is none
])
def test_resolve_picks_the_gpu_only_where_the_step_has_one_or_it_is_asked_for(requested: str, gpus: int,
                                                                              can_use_gpu: bool,
                                                                              expected: str) -> None:
    assert device.resolve(requested, gpus, can_use_gpu) == expected


def test_resolve_refuses_a_gpu_for_a_model_that_cannot_use_one() -> None:
    with pytest.raises(ValueError, match="only LightGBM models train on a GPU"):
        device.resolve("gpu", 1, False)


def _lightgbm(fast_params: dict, **extra: object) -> CandidateConfig:
    return CandidateConfig(name="lgbm", type="lightgbm", params={**fast_params["lightgbm"], **extra})


def test_a_failed_gpu_fit_is_done_again_on_the_cpu_with_the_same_model(split: Split, dataset_spec: DatasetConfig,
                                                                       fast_params: dict) -> None:
    candidate, train = _lightgbm(fast_params, **NO_SUCH_PLATFORM), split.train.iloc[:2000]
    gpu = models.build_pipeline(candidate, dataset_spec, 0, 1, device="gpu")
    assert device.lightgbm_estimator(gpu).get_params()["device_type"] == "gpu"
    (fitted, _), used = device.fit_with_fallback(gpu, lambda p: models.fit(p, train, dataset_spec, 1))
    assert used["device"] == "cpu" and used["fallback"].startswith("LightGBMError: ")
    cpu, _ = models.fit(models.build_pipeline(candidate, dataset_spec, 0, 1), train, dataset_spec, 1)
    np.testing.assert_array_equal(models.predict_proba(fitted, split.validation, dataset_spec),
                                  models.predict_proba(cpu, split.validation, dataset_spec))


def test_a_fit_that_fails_on_the_cpu_too_raises_the_cpu_error(split: Split, dataset_spec: DatasetConfig,
                                                               fast_params: dict) -> None:
    gpu = models.build_pipeline(_lightgbm(fast_params, **NO_SUCH_PLATFORM), dataset_spec, 0, 1, device="gpu")
    broken = split.train.iloc[:500].drop(columns=[dataset_spec.features[0]])
    with pytest.raises(KeyError, match=dataset_spec.features[0]):
        device.fit_with_fallback(gpu, lambda p: models.fit(p, broken, dataset_spec, 1))


@pytest.mark.parametrize("type_", ["logistic_regression", "random_forest"])
def test_a_cpu_only_model_is_fitted_once_and_says_cpu(split: Split, dataset_spec: DatasetConfig, fast_params: dict,
                                                      type_: str) -> None:
    pipeline = models.build_pipeline(CandidateConfig(name="m", type=type_, params=fast_params[type_]), dataset_spec,
                                     0, 1)
    calls = []
    _, used = device.fit_with_fallback(pipeline, lambda p: calls.append(p) or p)
    assert used == {"device": "cpu", "fallback": None} and len(calls) == 1


def test_a_candidate_on_a_gpu_step_records_its_threads_device_and_fallback(split: Split, dataset_spec: DatasetConfig,
                                                                           train_cfg: TrainConfig,
                                                                           fast_params: dict) -> None:
    cfg = train_cfg.model_copy(update={"threads": None})
    step = StepResources(cpu=2, gpu=1)
    result = training.train_candidate(_lightgbm(fast_params, **NO_SUCH_PLATFORM), split.train.iloc[:2000],
                                      split.validation, dataset_spec, cfg, POLICY, step)
    summary = result.summary()
    assert summary["threads"] == step.threads  # the step's cpu (at most this machine's cores)
    assert summary["device"] == "cpu" and "LightGBMError" in summary["device_fallback"]
    model = models.deserialize(result.model_blob, result.fingerprint)
    assert model[-1].get_params()["device_type"] == "cpu"  # the stored model says how it was trained


def test_a_candidate_on_a_cpu_step_never_asks_for_the_gpu(split: Split, dataset_spec: DatasetConfig,
                                                          train_cfg: TrainConfig, fast_params: dict) -> None:
    result = training.train_candidate(_lightgbm(fast_params), split.train.iloc[:2000], split.validation,
                                      dataset_spec, train_cfg, POLICY, StepResources(cpu=1))
    assert (result.threads, result.device, result.device_fallback) == (1, "cpu", None)


def test_a_model_trained_with_the_gpu_setting_scores_on_a_machine_without_one(fitted: dict, split: Split,
                                                                              dataset_spec: DatasetConfig) -> None:
    blob = models.serialize(fitted["lightgbm"])
    copy = models.deserialize(blob, models.fingerprint(blob))
    copy[-1].set_params(device_type="gpu")  # prediction runs on the CPU whatever the training device was
    np.testing.assert_array_equal(models.predict_proba(copy, split.validation, dataset_spec),
                                  models.predict_proba(fitted["lightgbm"], split.validation, dataset_spec))
