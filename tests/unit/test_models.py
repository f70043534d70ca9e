"""steps/models.py: every registered type fits and predicts; serialized models load only with their fingerprint."""

from __future__ import annotations

import hashlib
import typing

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from steps.config import CandidateConfig, DatasetConfig
from steps.core.errors import UserError
from steps.data.split import Split
from steps.modeling import models
from steps.modeling.models import FingerprintMismatch

TYPES = list(models.REGISTRY)


def test_registry_covers_every_configurable_type() -> None:
    allowed = typing.get_args(CandidateConfig.model_fields["type"].annotation)
    assert set(models.REGISTRY) == set(allowed)
    assert {style for _, style in models.REGISTRY.values()} == {"linear", "tree"}


@pytest.mark.parametrize("type_", TYPES)
def test_scoring_on_threads_gives_each_row_the_score_of_one_call(fitted: dict[str, Pipeline], split: Split,
                                                                dataset_spec: DatasetConfig, type_: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                request: pytest.FixtureRequest) -> None:
    one = models.predict_proba(fitted[type_], split.validation, dataset_spec)
    monkeypatch.setattr(models, "PARALLEL_MIN_ROWS", 10)  # the fixture is small: chunk it anyway
    estimator = fitted[type_][-1]
    n_jobs = estimator.get_params().get("n_jobs")
    if n_jobs is not None:  # a model trained on several threads predicts each chunk on one, then gets them back
        # through set_params, as the code reads it: LightGBM's get_params prefers what set_params stored over the
        # attribute (a ScoreFlow test's NativeScorer sets n_jobs on this shared fixture)
        estimator.set_params(n_jobs=2)
        request.addfinalizer(lambda: estimator.set_params(n_jobs=n_jobs))
    for threads in (2, 3):
        np.testing.assert_array_equal(models.predict_proba(fitted[type_], split.validation, dataset_spec, threads),
                                      one)
    assert estimator.get_params().get("n_jobs") == (None if n_jobs is None else 2)


@pytest.mark.parametrize("threads", [1, 2])
def test_scoring_in_bounded_chunks_gives_each_row_the_score_of_one_call(fitted: dict[str, Pipeline], split: Split,
                                                                        dataset_spec: DatasetConfig, threads: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = fitted["lightgbm"]
    one = models.predict_proba(pipeline, split.validation, dataset_spec)
    monkeypatch.setattr(models, "SCORE_CHUNK_ROWS", 7)
    monkeypatch.setattr(models, "PARALLEL_MIN_ROWS", 10)
    sizes: list[int] = []
    original = type(pipeline).predict_proba
    monkeypatch.setattr(type(pipeline), "predict_proba", lambda self, x: sizes.append(len(x)) or original(self, x))
    np.testing.assert_array_equal(models.predict_proba(pipeline, split.validation, dataset_spec, threads), one)
    assert max(sizes) <= 7 and sum(sizes) == len(split.validation)  # every row once, no call above the bound


@pytest.mark.parametrize("type_", TYPES)
def test_every_type_fits_and_predicts_probabilities(fitted: dict[str, Pipeline], split: Split,
                                                    dataset_spec: DatasetConfig, type_: str) -> None:
    pipeline = fitted[type_]
    assert isinstance(pipeline, Pipeline) and [name for name, _ in pipeline.steps] == ["preprocess", "model"]
    proba = models.predict_proba(pipeline, split.validation, dataset_spec)
    assert proba.shape == (len(split.validation),)
    assert np.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    assert proba.std() > 0
    assert roc_auc_score(split.validation["is_fraud"], proba) > 0.6  # learns the rule, not noise


@pytest.mark.parametrize("type_", TYPES)
def test_prediction_uses_only_feature_columns(fitted: dict[str, Pipeline], split: Split,
                                              dataset_spec: DatasetConfig, type_: str) -> None:
    rows = split.holdout.head(40)
    shuffled = rows[list(reversed(rows.columns))].assign(extra_column="ignored").drop(columns=["is_fraud"])
    np.testing.assert_allclose(models.predict_proba(fitted[type_], shuffled, dataset_spec),
                               models.predict_proba(fitted[type_], rows, dataset_spec))


@pytest.mark.parametrize("type_", TYPES)
def test_predicts_rows_with_unseen_and_missing_values(fitted: dict[str, Pipeline], split: Split,
                                                      dataset_spec: DatasetConfig, type_: str) -> None:
    rows = split.holdout.head(4).copy()
    for col in ("merchant_category", "channel", "country"):
        rows[col] = rows[col].astype(object)
    rows.loc[0, "merchant_category"] = "spaceships"
    rows.loc[1, "channel"] = None
    rows.loc[2, "country"] = ""
    rows.loc[3, "km_from_home"] = np.nan
    proba = models.predict_proba(fitted[type_], rows, dataset_spec)
    assert ((proba >= 0) & (proba <= 1)).all()


@pytest.mark.parametrize("type_", TYPES)
def test_serialize_fingerprint_deserialize_round_trip(fitted: dict[str, Pipeline], split: Split,
                                                      dataset_spec: DatasetConfig, type_: str) -> None:
    blob = models.serialize(fitted[type_])
    digest = models.fingerprint(blob)
    assert digest == hashlib.sha256(blob).hexdigest() and len(digest) == 64
    assert models.serialize(fitted[type_]) == blob  # serializing is deterministic
    loaded = models.deserialize(blob, digest)
    rows = split.holdout.head(100)
    np.testing.assert_array_equal(models.predict_proba(loaded, rows, dataset_spec),
                                  models.predict_proba(fitted[type_], rows, dataset_spec))


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="flipped-last-byte"),
    pytest.param(lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:],
                 id="flipped-middle"),
    pytest.param(lambda b: b + b"\x00", id="appended"),
    pytest.param(lambda b: b[:-10], id="truncated"),
])
def test_tampered_blob_raises_fingerprint_mismatch(fitted: dict[str, Pipeline], tamper) -> None:
    blob = models.serialize(fitted["logistic_regression"])
    expected = models.fingerprint(blob)
    bad = tamper(blob)
    assert bad != blob
    with pytest.raises(FingerprintMismatch, match=f"expected sha256 {expected}, got {models.fingerprint(bad)}"):
        models.deserialize(bad, expected)


def test_other_models_fingerprint_is_refused(fitted: dict[str, Pipeline]) -> None:
    blob = models.serialize(fitted["lightgbm"])
    other = models.fingerprint(models.serialize(fitted["random_forest"]))
    with pytest.raises(FingerprintMismatch, match="refusing to load"):
        models.deserialize(blob, other)
    assert issubclass(FingerprintMismatch, UserError)  # deterministic: a headline, never retried


@pytest.mark.parametrize("type_, estimator_param, value", [
    ("logistic_regression", "max_iter", 1000),
    ("lightgbm", "n_jobs", 2),
    ("random_forest", "n_jobs", 2),
    ("hist_gradient_boosting", "random_state", 11),
])
def test_build_pipeline_applies_seed_threads_and_defaults(dataset_spec: DatasetConfig, type_: str,
                                                          estimator_param: str, value: object) -> None:
    pipeline = models.build_pipeline(CandidateConfig(name="m", type=type_), dataset_spec, seed=11, threads=2)
    params = pipeline.named_steps["model"].get_params()
    assert params[estimator_param] == value
    assert params["random_state"] == 11


@pytest.mark.parametrize("type_, params, key, value", [
    ("logistic_regression", {"C": 0.01, "max_iter": 50}, "max_iter", 50),
    ("lightgbm", {"n_estimators": 7, "n_jobs": 1}, "n_jobs", 1),
    ("random_forest", {"random_state": 99}, "random_state", 99),
])
def test_candidate_params_override_defaults(dataset_spec: DatasetConfig, type_: str, params: dict, key: str,
                                            value: object) -> None:
    pipeline = models.build_pipeline(CandidateConfig(name="m", type=type_, params=params), dataset_spec, 0, 4)
    assert pipeline.named_steps["model"].get_params()[key] == value


@pytest.mark.parametrize("type_", ["logistic_regression", "random_forest", "hist_gradient_boosting"])
def test_bad_params_name_the_candidate(dataset_spec: DatasetConfig, type_: str) -> None:
    candidate = CandidateConfig(name="my_model", type=type_, params={"no_such_param": 1})
    with pytest.raises(ValueError, match=f"candidate 'my_model' \\({type_}\\): bad params"):
        models.build_pipeline(candidate, dataset_spec, seed=0, threads=1)


@pytest.mark.parametrize("type_", TYPES)
def test_fitting_is_deterministic(split: Split, dataset_spec: DatasetConfig, fast_params: dict,
                                  type_: str) -> None:
    train = split.train.iloc[:1500]
    candidate = CandidateConfig(name="m", type=type_, params=fast_params[type_])
    probas = []
    for _ in range(2):
        pipeline, seconds = models.fit(models.build_pipeline(candidate, dataset_spec, 5, 1), train, dataset_spec, 1)
        assert seconds >= 0
        probas.append(models.predict_proba(pipeline, split.validation, dataset_spec))
    np.testing.assert_array_equal(probas[0], probas[1])


def test_fit_rejects_missing_feature_columns(dataset_spec: DatasetConfig, split: Split) -> None:
    pipeline = models.build_pipeline(CandidateConfig(name="m", type="logistic_regression"), dataset_spec, 0, 1)
    with pytest.raises(KeyError, match="amount"):
        models.fit(pipeline, split.train.drop(columns=["amount"]), dataset_spec, 1)
