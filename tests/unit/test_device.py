"""steps/modeling/device.py: which device trains a model, and the CPU fit that replaces a GPU fit that fails.

The GPU fits here fail for real: ``gpu_platform_id`` 99 names an OpenCL platform no machine has, so LightGBM's GPU
learner raises on a machine with a GPU as on one without. Where a test needs a GPU that starts, it says so and
replaces the probe alone; the fit that follows is LightGBM's real one.
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


@pytest.mark.parametrize("params, dev, expected", [
    ({}, "cpu", {"device_type": "cpu"}),
    ({}, "gpu", {"device_type": "gpu", "gpu_use_dp": True}),
    ({"gpu_use_dp": False, "gpu_platform_id": 1}, "gpu", {"device_type": "gpu", "gpu_use_dp": False,
                                                          "gpu_platform_id": 1}),
])
def test_lightgbm_params_name_the_device_and_ask_the_gpu_for_double_precision(params: dict, dev: str,
                                                                              expected: dict) -> None:
    assert device.lightgbm_params(params, dev) == expected


def test_the_gpu_probe_names_what_stops_the_gpu_learner(dataset_spec: DatasetConfig, fast_params: dict) -> None:
    estimator = models.build_pipeline(_lightgbm(fast_params, **NO_SUCH_PLATFORM), dataset_spec, 0, 1, "gpu")[-1]
    assert device.gpu_problem(estimator).startswith("LightGBMError: ")
    assert not hasattr(estimator, "booster_")  # the probe fitted a copy


def _lightgbm(fast_params: dict, **extra: object) -> CandidateConfig:
    return CandidateConfig(name="lgbm", type="lightgbm", params={**fast_params["lightgbm"], **extra})


def _fingerprint(pipeline: object) -> str:
    return models.fingerprint(models.serialize(pipeline))


@pytest.mark.parametrize("gpu_starts", [False, True])
def test_a_gpu_fit_that_cannot_run_gives_the_cpu_model_byte_for_byte(split: Split, dataset_spec: DatasetConfig,
                                                                     fast_params: dict, gpu_starts: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Either the probe stops the GPU (False) or, when the probe is told the GPU starts (True), the real fit raises
    LightGBM's error; both times the model is the one a CPU fit makes, to the byte."""
    if gpu_starts:
        monkeypatch.setattr(device, "gpu_problem", lambda estimator: None)
    candidate, train = _lightgbm(fast_params, **NO_SUCH_PLATFORM), split.train.iloc[:2000]
    gpu = models.build_pipeline(candidate, dataset_spec, 0, 1, device="gpu")
    assert device.lightgbm_estimator(gpu).get_params()["device_type"] == "gpu"
    calls: list[str] = []

    def fit(p: object) -> object:
        calls.append(device.lightgbm_estimator(p).get_params()["device_type"])
        return models.fit(p, train, dataset_spec, 1)

    (fitted, _), used = device.fit_with_fallback(gpu, fit, lambda: models.build_pipeline(candidate, dataset_spec, 0,
                                                                                          1, "cpu"))
    assert used["device"] == "cpu" and used["fallback"].startswith("LightGBMError: ")
    assert calls == (["gpu", "cpu"] if gpu_starts else ["cpu"])  # the probe spared the failed attempt
    cpu, _ = models.fit(models.build_pipeline(candidate, dataset_spec, 0, 1), train, dataset_spec, 1)
    assert _fingerprint(fitted) == _fingerprint(cpu)


def test_a_data_error_in_a_gpu_fit_is_raised_not_retried(split: Split, dataset_spec: DatasetConfig,
                                                         fast_params: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "gpu_problem", lambda estimator: None)  # as on a machine whose GPU starts
    gpu = models.build_pipeline(_lightgbm(fast_params), dataset_spec, 0, 1, device="gpu")
    broken = split.train.iloc[:500].drop(columns=[dataset_spec.features[0]])
    calls: list[object] = []
    with pytest.raises(KeyError, match=dataset_spec.features[0]):
        device.fit_with_fallback(gpu, lambda p: calls.append(p) or models.fit(p, broken, dataset_spec, 1),
                                 lambda: models.build_pipeline(_lightgbm(fast_params), dataset_spec, 0, 1))
    assert len(calls) == 1


@pytest.mark.parametrize("type_", ["logistic_regression", "random_forest"])
def test_a_cpu_only_model_is_fitted_once_and_says_cpu(split: Split, dataset_spec: DatasetConfig, fast_params: dict,
                                                      type_: str) -> None:
    pipeline = models.build_pipeline(CandidateConfig(name="m", type=type_, params=fast_params[type_]), dataset_spec,
                                     0, 1)
    calls = []
    _, used = device.fit_with_fallback(pipeline, lambda p: calls.append(p) or p, lambda: pipeline)
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


@pytest.mark.parametrize("own, config, expected", [(3, 2, 3), (None, 2, 2), (None, None, 1)])
def test_a_candidates_own_threads_win_then_the_train_config_then_the_step(split: Split, dataset_spec: DatasetConfig,
                                                                          train_cfg: TrainConfig, fast_params: dict,
                                                                          own: int | None, config: int | None,
                                                                          expected: int) -> None:
    candidate = _lightgbm(fast_params).model_copy(update={"threads": own})
    result = training.train_candidate(candidate, split.train.iloc[:1000], split.validation, dataset_spec,
                                      train_cfg.model_copy(update={"threads": config}), POLICY, StepResources(cpu=1))
    model = models.deserialize(result.model_blob, result.fingerprint)
    assert result.threads == model[-1].get_params()["n_jobs"] == expected
    assert (result.device, result.device_fallback) == ("cpu", None)


def test_a_stored_models_device_setting_does_not_matter_to_its_predictions(fitted: dict, split: Split,
                                                                          dataset_spec: DatasetConfig) -> None:
    blob = models.serialize(fitted["lightgbm"])
    copy = models.deserialize(blob, models.fingerprint(blob))
    copy[-1].set_params(device_type="gpu")  # LightGBM predicts on the CPU whatever its training device
    np.testing.assert_array_equal(models.predict_proba(copy, split.validation, dataset_spec),
                                  models.predict_proba(fitted["lightgbm"], split.validation, dataset_spec))
