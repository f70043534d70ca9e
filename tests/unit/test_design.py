"""steps/modeling/design.py: a training part streamed in batches fits the model a fit on the whole frame makes (the
preprocessing fitted on a sample); stored rows read whole, sampled or in batches are the same rows."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression

from steps.config import DatasetConfig, ThresholdPolicy, TrainConfig
from steps.data import table
from steps.data.split import Split
from steps.modeling import design, device, models, training

POLICY = ThresholdPolicy(value=0.5)


@pytest.fixture(scope="module")
def stored(split: Split, clean_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``clean_frame`` stored in row groups of 256 rows, with ``split``'s parts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(table, "ROW_GROUP_ROWS", 256)
        ref = table.write_table(clean_frame, str(tmp_path_factory.mktemp("design"))).to_dict()
    return table.split_ref(ref, split.codes, split.method, split.warnings)


def test_stored_rows_read_whole_in_batches_or_sampled_are_the_part(stored: dict[str, Any], split: Split) -> None:
    rows = table.part_rows(stored, "train", ["amount", "channel", "is_fraud"])
    whole = rows.read()
    pd.testing.assert_frame_equal(whole, split.train[["amount", "channel", "is_fraud"]])
    batches = list(rows.batches(rows=600))
    assert len(batches) > 2 and all(len(b) >= 600 for b in batches[:-1])
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), whole)
    pd.testing.assert_frame_equal(pd.concat(rows.batches(["channel"]), ignore_index=True), whole[["channel"]])
    sampled = rows.sample(500, seed=4)
    expected = whole.iloc[table.sample_positions(len(whole), 500, 4)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sampled, expected)
    limited = table.part_rows(stored, "train", ["amount"], limit=900, seed=1)
    pd.testing.assert_frame_equal(limited.read(), table.read_part(stored, "train", ["amount"], 900, 1))
    assert limited.rows == 900 and rows.sample(10**6, seed=4).shape == whole.shape


def _streamed(candidate: str, cfg: TrainConfig, stored: dict[str, Any], spec: DatasetConfig,
              fit_rows: int) -> tuple[Any, float, int]:
    cfg = cfg.model_copy(update={"preprocess_fit_rows": fit_rows})
    pipeline = models.build_pipeline(training.candidate_by_name(cfg, candidate), spec, cfg.seed, 1)
    rows = table.part_rows(stored, "train", training.training_columns(spec))
    return training.fit_rows(pipeline, rows, spec, cfg, None, 1)


def test_a_tree_pipeline_streamed_is_the_pipeline_fitted_on_the_whole_frame(
        stored: dict[str, Any], split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real = design.design_matrix

    def counted(preprocess: Any, parts: Iterator[pd.DataFrame], rows: int, spec: DatasetConfig) -> Any:
        return real(preprocess, (batches.append(len(b)) or b for b in parts), rows, spec)

    monkeypatch.setattr(design, "design_matrix", counted)
    monkeypatch.setattr(table, "BATCH_ROWS", 700)
    monkeypatch.setattr(design, "TRANSFORM_ROWS", 97)  # each batch transformed in slices
    streamed, seconds, rows = _streamed("lgbm", train_cfg, stored, dataset_spec, fit_rows=400)
    whole, _ = models.fit(models.build_pipeline(training.candidate_by_name(train_cfg, "lgbm"), dataset_spec,
                                                train_cfg.seed, 1), split.train, dataset_spec, 1)
    assert len(batches) > 2 and sum(batches) == rows == len(split.train) and seconds > 0
    np.testing.assert_array_equal(models.predict_proba(streamed, split.validation, dataset_spec),
                                  models.predict_proba(whole, split.validation, dataset_spec))


def test_a_linear_pipeline_streamed_has_the_samples_preprocessing_and_the_model_of_every_row(
        stored: dict[str, Any], split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "BATCH_ROWS", 500)
    monkeypatch.setattr(design, "FIRST_NNZ", 64)
    monkeypatch.setattr(design, "TRANSFORM_ROWS", 97)
    streamed, _, rows = _streamed("logreg", train_cfg, stored, dataset_spec, fit_rows=800)
    sample = split.train.iloc[table.sample_positions(len(split.train), 800, train_cfg.seed)]
    on_sample = clone(streamed[0]).fit(sample[dataset_spec.features])
    imputer = streamed[0].named_transformers_["num"].named_steps["impute"]
    np.testing.assert_array_equal(imputer.statistics_,
                                  on_sample.named_transformers_["num"].named_steps["impute"].statistics_)
    whole = streamed[0].transform(split.train[dataset_spec.features])
    model = LogisticRegression(**streamed[-1].get_params()).fit(whole, split.train["is_fraud"].to_numpy())
    np.testing.assert_array_equal(streamed[-1].coef_, model.coef_)
    assert rows == len(split.train)
    in_memory, _, _ = _streamed("logreg", train_cfg, stored, dataset_spec, fit_rows=len(split.train))
    fitted, _ = models.fit(models.build_pipeline(training.candidate_by_name(train_cfg, "logreg"), dataset_spec,
                                                 train_cfg.seed, 1), split.train, dataset_spec, 1)
    np.testing.assert_array_equal(in_memory[-1].coef_, fitted[-1].coef_)  # up to the limit: read whole, as before


@pytest.mark.parametrize("candidate", ["logreg", "lgbm"])  # a sparse and a dense design matrix
def test_a_batch_transformed_in_slices_is_the_batch_transformed_whole(
        candidate: str, split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    preprocess = models.build_pipeline(training.candidate_by_name(train_cfg, candidate), dataset_spec,
                                       train_cfg.seed, 1)[0].fit(split.train[dataset_spec.features])
    calls: list[int] = []
    transform = preprocess.transform
    monkeypatch.setattr(preprocess, "transform", lambda frame: calls.append(len(frame)) or transform(frame))
    monkeypatch.setattr(design, "TRANSFORM_ROWS", 97)
    batches = [split.train.iloc[:1000], split.train.iloc[1000:]]
    x, y, _ = design.design_matrix(preprocess, iter(batches), len(split.train), dataset_spec)
    whole = transform(split.train[dataset_spec.features])
    assert max(calls) == 97 and sum(calls) == len(split.train) and len(calls) > len(batches)
    assert type(x) is type(whole) and x.shape == whole.shape
    dense = (lambda m: m.toarray()) if candidate == "logreg" else np.asarray
    np.testing.assert_array_equal(dense(x), dense(whole))
    np.testing.assert_array_equal(y, split.train["is_fraud"].to_numpy())


def _preprocess(cfg: TrainConfig, spec: DatasetConfig, candidate: str) -> Any:
    """A candidate's unfitted preprocessing (its pipeline's ColumnTransformer)."""
    return models.build_pipeline(training.candidate_by_name(cfg, candidate), spec, cfg.seed, 1)[0]


@pytest.mark.parametrize("candidate", ["logreg", "lgbm"])
def test_a_preprocessing_fitted_unstacked_is_the_one_fit_makes(
        candidate: str, split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    frame = split.train[dataset_spec.features]
    fitted = _preprocess(train_cfg, dataset_spec, candidate).fit(frame)
    stacks: list[int] = []
    real = ColumnTransformer._hstack
    monkeypatch.setattr(ColumnTransformer, "_hstack",
                        lambda self, xs, n_samples: stacks.append(n_samples) or real(self, xs, n_samples=n_samples))
    unstacked = _preprocess(train_cfg, dataset_spec, candidate)
    design.fit_unstacked(unstacked, frame)
    assert stacks == [] and "_hstack" not in vars(unstacked)
    assert pickle.dumps(unstacked) == pickle.dumps(fitted)
    a, b = unstacked.transform(split.validation), fitted.transform(split.validation)
    assert stacks == [len(split.validation)] * 2  # transform still stacks, through the method
    dense = (lambda m: m.toarray()) if candidate == "logreg" else np.asarray
    np.testing.assert_array_equal(dense(a), dense(b))


def test_an_unstacked_fit_that_fails_leaves_the_preprocessing_as_it_was(
        split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig) -> None:
    preprocess = _preprocess(train_cfg, dataset_spec, "logreg")
    with pytest.raises(ValueError, match="amount"):
        design.fit_unstacked(preprocess, split.train[dataset_spec.features].drop(columns=["amount"]))
    assert "_hstack" not in vars(preprocess)


def test_a_preprocessing_with_pandas_output_is_fitted_as_usual(
        split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig) -> None:
    frame = split.train[dataset_spec.features]
    fitted = _preprocess(train_cfg, dataset_spec, "lgbm").set_output(transform="pandas").fit(frame)
    unstacked = _preprocess(train_cfg, dataset_spec, "lgbm").set_output(transform="pandas")
    design.fit_unstacked(unstacked, frame)  # pandas output sets an attribute while stacking: not skipped
    assert list(unstacked.get_feature_names_out()) == list(fitted.get_feature_names_out())
    assert pickle.dumps(unstacked) == pickle.dumps(fitted)


def test_open_levels_come_from_every_row_not_only_the_sample(
        clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, train_cfg: TrainConfig, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = dataset_spec.model_dump()
    raw["categorical"]["channel"]["categories"] = None  # levels found in the data ('auto')
    spec = DatasetConfig.model_validate(raw)
    frame = clean_frame.copy()
    frame.loc[frame.index[-3:], "channel"] = "carrier_pigeon"  # a rare level the sample misses
    frame.loc[frame.index[-5], "channel"] = None
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 256)
    ref = table.write_table(frame, str(tmp_path)).to_dict()
    codes = np.zeros(len(frame), dtype=np.int8)
    rows = table.part_rows(table.split_ref(ref, codes, "time", []), "train", training.training_columns(spec))
    cfg = train_cfg.model_copy(update={"preprocess_fit_rows": 300})
    sample = rows.sample(300, cfg.seed)
    assert "carrier_pigeon" not in set(sample["channel"])
    for name in ("logreg", "lgbm"):
        pipeline = models.build_pipeline(training.candidate_by_name(cfg, name), spec, cfg.seed, 1)
        streamed, _, _ = training.fit_rows(pipeline, rows, spec, cfg, None, 1)
        whole = clone(streamed[0]).set_params(cat__encode__categories="auto").fit(frame[spec.features])
        got = streamed[0].named_transformers_["cat"].named_steps["encode"].categories_
        expected = whole.named_transformers_["cat"].named_steps["encode"].categories_
        assert [list(c) for c in got] == [list(c) for c in expected]
        assert "carrier_pigeon" in list(got[list(spec.categorical).index("channel")])
        assert streamed[0].get_params()["cat__encode__categories"] == "auto"  # the parameter it was built with


def test_a_streamed_imputer_indicates_a_column_missing_only_in_rows_the_sample_did_not_draw(
        clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, train_cfg: TrainConfig, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    frame = clean_frame.copy()
    frame["amount"] = frame["amount"].fillna(1.0)
    frame["hour"] = frame["hour"].astype("float64")
    frame.loc[frame.index[[7, -2]], "hour"] = np.nan  # rare: the 300-row draw misses both
    frame.loc[:, "txn_count_1h"] = np.nan
    frame.loc[frame.index[-1], "txn_count_1h"] = 2.0  # a value in one row only
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 256)
    ref = table.write_table(frame, str(tmp_path)).to_dict()
    rows = table.part_rows(table.split_ref(ref, np.zeros(len(frame), dtype=np.int8), "time", []), "train",
                           training.training_columns(dataset_spec))
    cfg = train_cfg.model_copy(update={"preprocess_fit_rows": 300})
    drawn = rows.subset(300, cfg.seed).read()
    assert not drawn["hour"].isna().any() and drawn["txn_count_1h"].isna().all()
    sample = rows.sample(300, cfg.seed, covering=list(dataset_spec.numeric))
    assert len(sample) == 302 and sample["hour"].isna().sum() == 1 and sample["txn_count_1h"].notna().sum() == 1
    streamed, _, _ = training.fit_rows(models.build_pipeline(training.candidate_by_name(cfg, "logreg"), dataset_spec,
                                                             cfg.seed, 1), rows, dataset_spec, cfg, None, 1)
    whole = clone(streamed[0]).fit(frame[dataset_spec.features])
    assert list(streamed[0].get_feature_names_out()) == list(whole.get_feature_names_out())
    assert "missingindicator_hour" in list(whole.get_feature_names_out())


@pytest.mark.parametrize("grow", [1.0, 1.05])
def test_a_sparse_matrix_grown_by_blocks_is_their_stack(monkeypatch: pytest.MonkeyPatch, grow: float) -> None:
    from scipy import sparse

    monkeypatch.setattr(design, "FIRST_NNZ", 8)
    monkeypatch.setattr(design, "GROW", grow)
    rng = np.random.default_rng(0)
    blocks = [sparse.random(rows, 12, density=d, format="csr", random_state=rng)
              for rows, d in [(5, .05), (40, .3), (1, 1.0), (30, .9), (0, .5), (7, 0.0)]]
    matrix = design._SparseRows(sum(b.shape[0] for b in blocks), 12)
    for b in blocks:
        matrix.add(b)
    got, expected = matrix.done(), sparse.vstack(blocks, format="csr")
    assert got.shape == expected.shape and got.indices.dtype == np.int32 and got.indptr.dtype == np.int32
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def test_a_streamed_fit_takes_a_preprocess_and_model_pipeline_and_applies_the_row_limit(
        stored: dict[str, Any], split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig) -> None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = models.build_pipeline(train_cfg.candidates[0], dataset_spec, 0, 1)
    three = Pipeline([pipeline.steps[0], ("scale", StandardScaler(with_mean=False)), pipeline.steps[1]])
    with pytest.raises(ValueError, match="a streamed fit takes a \\(preprocess, model\\) pipeline"):
        design.fit_streamed(three, lambda: split.train, lambda names: iter([]), 1, dataset_spec, 1)
    rows = table.part_rows(stored, "train", training.training_columns(dataset_spec))  # made without the limit
    cfg = train_cfg.model_copy(update={"preprocess_fit_rows": 400})
    _, _, n = training.fit_rows(pipeline, rows, dataset_spec, cfg, 900, 1)
    assert n == 900 and rows.subset(900, cfg.seed).rows == 900


def test_a_design_matrix_needs_rows() -> None:
    with pytest.raises(ValueError, match="no rows"):
        design.design_matrix(None, iter([]), 0, None)  # type: ignore[arg-type]


def test_train_candidate_on_stored_rows_reports_every_row(
        stored: dict[str, Any], split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig) -> None:
    cfg = train_cfg.model_copy(update={"preprocess_fit_rows": 500})
    rows = table.part_rows(stored, "train", training.training_columns(dataset_spec))
    result = training.train_candidate(cfg.candidates[0], rows, split.validation, dataset_spec, cfg, POLICY)
    assert result.train_rows == len(split.train) and result.metrics["roc_auc"] > 0.6


def test_a_streamed_candidate_whose_gpu_fit_fails_is_the_streamed_cpu_model(
        stored: dict[str, Any], split: Split, dataset_spec: DatasetConfig, train_cfg: TrainConfig,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe is told the GPU starts, so the streamed fit itself raises LightGBM's error (an OpenCL platform no
    machine has) after the preprocessing and the design matrix: the CPU fit that replaces it streams again and makes
    the model a CPU candidate makes, to the byte."""
    monkeypatch.setattr(device, "gpu_problem", lambda estimator: None)
    cfg = train_cfg.model_copy(update={"preprocess_fit_rows": 400})
    lgbm = training.candidate_by_name(cfg, "lgbm")
    params = {**lgbm.params, "gpu_platform_id": 99}
    rows = table.part_rows(stored, "train", training.training_columns(dataset_spec))
    on_gpu = training.train_candidate(lgbm.model_copy(update={"device": "gpu", "params": params}), rows,
                                      split.validation, dataset_spec, cfg, POLICY)
    on_cpu = training.train_candidate(lgbm.model_copy(update={"params": params}), rows, split.validation,
                                      dataset_spec, cfg, POLICY)
    assert on_gpu.device == "cpu" and on_gpu.device_fallback.startswith("LightGBMError: ")
    assert on_gpu.fingerprint == on_cpu.fingerprint and on_gpu.train_rows == on_cpu.train_rows == len(split.train)
