"""steps/training.py: one candidate trained and scored; seeded downsampling; the schema a model expects."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from steps.config import DatasetConfig, ThresholdPolicy, TrainConfig
from steps.data.split import Split
from steps.modeling import metrics, models, training

POLICY = ThresholdPolicy(value=0.5)  # the decision threshold policy of the gates config


@pytest.fixture(scope="module")
def results(split: Split, dataset_spec: DatasetConfig,
            train_cfg: TrainConfig) -> dict[str, training.CandidateResult]:
    return {c.name: training.train_candidate(c, split.train, split.validation, dataset_spec, train_cfg, POLICY)
            for c in train_cfg.candidates}


@pytest.mark.parametrize("name", ["logreg", "lgbm"])
def test_result_fingerprint_matches_model_blob(results: dict[str, training.CandidateResult], name: str,
                                               train_cfg: TrainConfig) -> None:
    r = results[name]
    candidate = training.candidate_by_name(train_cfg, name)
    assert (r.name, r.type, r.params) == (name, candidate.type, candidate.params)
    assert r.fingerprint == hashlib.sha256(r.model_blob).hexdigest()
    assert models.deserialize(r.model_blob, r.fingerprint) is not None


@pytest.mark.parametrize("name", ["logreg", "lgbm"])
def test_result_metrics_are_validation_scores(results: dict[str, training.CandidateResult], split: Split,
                                              dataset_spec: DatasetConfig, train_cfg: TrainConfig, name: str) -> None:
    r = results[name]
    pipeline = models.deserialize(r.model_blob, r.fingerprint)
    proba = models.predict_proba(pipeline, split.validation, dataset_spec)
    expected = metrics.scores(split.validation["is_fraud"].to_numpy(), proba)
    assert r.metrics == pytest.approx(expected)
    assert r.metrics["rows"] == len(split.validation)
    assert r.metrics["roc_auc"] > 0.6
    assert r.train_rows == len(split.train) and r.fit_seconds >= 0
    assert len(r.curves["roc"]["fpr"]) <= train_cfg.curve_points
    assert len(r.curves["pr"]["recall"]) <= train_cfg.curve_points


def test_summary_drops_bytes_and_curves(results: dict[str, training.CandidateResult]) -> None:
    r = results["logreg"]
    s = r.summary()
    assert "model_blob" not in s and "curves" not in s
    assert s["size_bytes"] == len(r.model_blob) > 0
    assert s["fingerprint"] == r.fingerprint and s["metrics"] == r.metrics


def test_max_train_rows_downsamples_training(split: Split, dataset_spec: DatasetConfig,
                                             train_cfg: TrainConfig) -> None:
    cfg = train_cfg.model_copy(update={"max_train_rows": 1000})
    r = training.train_candidate(cfg.candidates[0], split.train, split.validation, dataset_spec, cfg, POLICY)
    assert r.train_rows == 1000
    assert r.metrics["rows"] == len(split.validation)  # validation is never downsampled


@pytest.mark.parametrize("max_rows, expected", [(None, 2800), (5000, 2800), (2800, 2800), (100, 100), (1234, 1234)])
def test_sample_train_sizes(split: Split, train_cfg: TrainConfig, max_rows: int | None, expected: int) -> None:
    assert len(split.train) == 2800
    cfg = train_cfg.model_copy(update={"max_train_rows": max_rows})
    out = training.sample_train(split.train, cfg)
    assert len(out) == expected
    if max_rows is None or max_rows >= len(split.train):
        assert out is split.train  # no copy when nothing is dropped


def test_sample_train_is_seeded_and_keeps_time_order(split: Split, train_cfg: TrainConfig) -> None:
    cfg = train_cfg.model_copy(update={"max_train_rows": 500})
    a, b = training.sample_train(split.train, cfg), training.sample_train(split.train, cfg)
    pd.testing.assert_frame_equal(a, b)
    other = training.sample_train(split.train, cfg.model_copy(update={"seed": cfg.seed + 1}))
    assert set(a["transaction_id"]) != set(other["transaction_id"])
    assert a.index.is_monotonic_increasing and a["event_time"].is_monotonic_increasing
    assert set(a["transaction_id"]) <= set(split.train["transaction_id"])


def test_sample_train_keeps_the_rows_dataframe_sample_kept(split: Split, train_cfg: TrainConfig) -> None:
    cfg = train_cfg.model_copy(update={"max_train_rows": 700})
    assert split.train.index.is_monotonic_increasing  # a part in table order, as read_part returns it
    expected = split.train.sample(n=700, random_state=cfg.seed).sort_index()  # how the rows were drawn before
    pd.testing.assert_frame_equal(training.sample_train(split.train, cfg), expected)


def test_train_limit_is_the_candidates_own_else_the_train_configs(train_cfg: TrainConfig) -> None:
    own = train_cfg.candidates[0].model_copy(update={"max_train_rows": 300})
    assert training.train_limit(own, train_cfg.model_copy(update={"max_train_rows": 900})) == 300
    assert training.train_limit(train_cfg.candidates[0], train_cfg.model_copy(update={"max_train_rows": 900})) == 900
    assert training.train_limit(train_cfg.candidates[0], train_cfg) is None


def test_candidate_by_name(train_cfg: TrainConfig) -> None:
    assert training.candidate_by_name(train_cfg, "lgbm").type == "lightgbm"
    with pytest.raises(KeyError, match=r"no candidate named 'xgb' in train config; have \['logreg', 'lgbm'\]"):
        training.candidate_by_name(train_cfg, "xgb")


def test_feature_schema(dataset_spec: DatasetConfig) -> None:
    schema = training.feature_schema(dataset_spec)
    assert (schema["id"], schema["time"], schema["target"]) == ("transaction_id", "event_time", "is_fraud")
    assert schema["features"] == dataset_spec.features
    assert schema["numeric"]["hour"] == {"min": 0.0, "max": 23.0, "max_null_rate": 0.0}
    assert schema["categorical"]["channel"]["categories"] == ["pos_chip", "contactless", "ecommerce", "atm", "moto"]
    assert schema["sensitive"] == ["customer_age_band", "region"]
    assert [*schema["numeric"], *schema["categorical"]] == schema["features"]  # same order as the model input


@pytest.mark.parametrize("own, shared, expected", [(None, None, "all"), (500, None, 500), (None, 700, 700),
                                                   (500, 700, 500)])
def test_a_candidates_own_row_limit_wins(split: Split, train_cfg: TrainConfig, own, shared, expected) -> None:
    cfg = train_cfg.model_copy(update={"max_train_rows": shared})
    out = training.sample_train(split.train, cfg, own)
    assert len(out) == (len(split.train) if expected == "all" else expected)


def test_candidate_threads_and_rows_override_the_train_config(split: Split, dataset_spec: DatasetConfig,
                                                             train_cfg: TrainConfig) -> None:
    from steps.config import CandidateConfig

    candidate = CandidateConfig(name="rf", type="random_forest", params={"n_estimators": 5, "max_samples": 0.5},
                                threads=2, max_train_rows=800)
    result = training.train_candidate(candidate, split.train, split.validation, dataset_spec, train_cfg, POLICY)
    model = models.deserialize(result.model_blob, result.fingerprint)
    assert result.train_rows == 800 and model[-1].n_jobs == 2 and model[-1].max_samples == 0.5
