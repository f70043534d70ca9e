"""steps/features.py: the in-pipeline preprocessing never raises on unseen or missing categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from steps.config import DatasetConfig
from steps.modeling import features
from steps.modeling.features import MISSING

STYLES = ["linear", "tree"]
ODD_VALUES = [None, np.nan, "", pd.NA, "never_seen_before", "GROCERY", 7]


@pytest.fixture(scope="module")
def open_spec(dataset_spec: DatasetConfig) -> DatasetConfig:
    """The dataset spec with one categorical column whose levels are left open (categories: None)."""
    doc = dataset_spec.model_dump()
    doc["categorical"]["merchant_category"]["categories"] = None
    return DatasetConfig.model_validate(doc)


class Densified:
    """A fitted preprocessor whose output is dense (the linear style's output is sparse when mostly zeros)."""

    def __init__(self, pre) -> None:
        self.pre = pre

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = self.pre.transform(frame)
        return out.toarray() if sparse.issparse(out) else out

    def get_feature_names_out(self):
        return self.pre.get_feature_names_out()


def fitted(spec: DatasetConfig, style: str, frame: pd.DataFrame) -> Densified:
    return Densified(features.preprocessor(spec, style).fit(frame[spec.features]))


def test_linear_style_output_is_sparse_and_equals_the_dense_encoding(clean_frame: pd.DataFrame,
                                                                    dataset_spec: DatasetConfig) -> None:
    from sklearn.base import clone

    pre = features.preprocessor(dataset_spec, "linear")
    dense = clone(pre).set_params(cat__encode__sparse_output=False).fit(clean_frame[dataset_spec.features])
    out = pre.fit(clean_frame[dataset_spec.features]).transform(clean_frame[dataset_spec.features])
    assert sparse.issparse(out) and out.nnz < 0.5 * out.shape[0] * out.shape[1]
    np.testing.assert_array_equal(out.toarray(), dense.transform(clean_frame[dataset_spec.features]))


def with_odd_values(frame: pd.DataFrame, spec: DatasetConfig, column: str) -> pd.DataFrame:
    rows = frame[spec.features].head(len(ODD_VALUES)).copy()
    rows[column] = rows[column].astype(object)
    for i, value in enumerate(ODD_VALUES):
        rows.iloc[i, rows.columns.get_loc(column)] = value
    return rows


def test_to_str_maps_every_missing_value_to_one_level() -> None:
    out = features._to_str(pd.DataFrame({"a": [None, np.nan, "", pd.NA, "x", 3, 2.5], "b": list("abcdefg")}))
    assert out.dtype == object and out.shape == (7, 2)
    assert out[:, 0].tolist() == [MISSING] * 4 + ["x", "3", "2.5"]
    assert out[:, 1].tolist() == list("abcdefg")


def test_categorical_cleaner_is_stateless_and_names_features() -> None:
    cleaner = features.categorical_cleaner()
    frame = pd.DataFrame({"c": ["a", None]})
    assert cleaner.fit_transform(frame).tolist() == [["a"], [MISSING]]
    assert list(cleaner.get_feature_names_out(["c"])) == ["c"]


@pytest.mark.parametrize("open_levels", [False, True], ids=["known-levels", "open-levels"])
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("column", ["merchant_category", "channel", "device_type"])
def test_unseen_and_missing_categories_do_not_raise(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig,
                                                    open_spec: DatasetConfig, style: str, column: str,
                                                    open_levels: bool) -> None:
    spec = open_spec if open_levels else dataset_spec
    pre = fitted(spec, style, clean_frame)
    width = len(pre.get_feature_names_out())
    out = pre.transform(with_odd_values(clean_frame, spec, column))
    assert out.shape == (len(ODD_VALUES), width)
    assert not np.isinf(out).any()
    if style == "linear":
        assert np.isfinite(out).all()  # imputed and scaled: no NaN reaches a linear model


@pytest.mark.parametrize("open_levels", [False, True], ids=["known-levels", "open-levels"])
def test_linear_style_one_hot(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, open_spec: DatasetConfig,
                              open_levels: bool) -> None:
    spec = open_spec if open_levels else dataset_spec
    pre = fitted(spec, "linear", clean_frame)
    names = list(pre.get_feature_names_out())
    cols = [i for i, n in enumerate(names) if n.startswith("channel_")]
    out = pre.transform(with_odd_values(clean_frame, spec, "channel"))[:, cols]
    channel_names = [names[i] for i in cols]
    missing = channel_names.index(f"channel_{MISSING}") if f"channel_{MISSING}" in channel_names else None
    for row, value in enumerate(ODD_VALUES):
        if value is None or value is pd.NA or value == "" or (isinstance(value, float) and np.isnan(value)):
            if missing is None:  # open levels and no missing value in training: unknown, so all zeros
                assert out[row].sum() == 0
            else:
                assert out[row, missing] == 1 and out[row].sum() == 1
        else:  # unseen: an all-zero one-hot row
            assert out[row].sum() == 0, value
    real = pre.transform(clean_frame[spec.features].head(50))[:, cols]
    assert (real.sum(axis=1) == 1).all()


def test_linear_style_known_levels_are_stable(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    """Known levels come from the config, so the encoding does not depend on which levels the data holds."""
    a = fitted(dataset_spec, "linear", clean_frame)
    b = fitted(dataset_spec, "linear", clean_frame[clean_frame["channel"] == "pos_chip"])
    assert list(a.get_feature_names_out()) == list(b.get_feature_names_out())
    assert f"channel_{MISSING}" in a.get_feature_names_out()
    assert "channel_moto" in b.get_feature_names_out()


@pytest.mark.parametrize("open_levels", [False, True], ids=["known-levels", "open-levels"])
def test_tree_style_ordinal_codes(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, open_spec: DatasetConfig,
                                  open_levels: bool) -> None:
    spec = open_spec if open_levels else dataset_spec
    pre = fitted(spec, "tree", clean_frame)
    names = list(pre.get_feature_names_out())
    assert names == spec.features  # numbers pass through, one code per categorical
    col = names.index("merchant_category")
    out = pre.transform(with_odd_values(clean_frame, spec, "merchant_category"))[:, col]
    assert out[4] == -1 and out[5] == -1 and out[6] == -1  # unseen (case matters) -> -1
    if open_levels:
        assert (out[:4] == -1).all()  # '__missing__' was never seen in training
    else:
        code = sorted([*dataset_spec.categorical["merchant_category"].categories, MISSING]).index(MISSING)
        assert (out[:4] == code).all()
    raw = clean_frame[spec.features].head(20)
    np.testing.assert_array_equal(pre.transform(raw)[:, names.index("amount")], raw["amount"].to_numpy())


def test_tree_style_keeps_numeric_nans(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    pre = fitted(dataset_spec, "tree", clean_frame)
    rows = clean_frame[dataset_spec.features].head(5).copy()
    rows["km_from_home"] = np.nan
    out = pre.transform(rows)
    assert np.isnan(out[:, dataset_spec.features.index("km_from_home")]).all()


def test_linear_style_imputes_and_flags_numeric_nans(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    pre = fitted(dataset_spec, "linear", clean_frame)
    rows = clean_frame[dataset_spec.features].head(5).copy()
    rows["amount"] = np.nan  # never missing in training: imputed, no indicator column
    rows["km_from_home"] = np.nan
    out = pre.transform(rows)
    assert np.isfinite(out).all()
    names = list(pre.get_feature_names_out())
    assert "missingindicator_km_from_home" in names and "missingindicator_amount" not in names
    flag = out[:, names.index("missingindicator_km_from_home")]  # scaled: 'missing' is the larger value
    assert np.allclose(flag, flag[0]) and flag[0] > 0
    present = pre.transform(clean_frame[dataset_spec.features].dropna().head(5))
    assert (present[:, names.index("missingindicator_km_from_home")] < 0).all()


def test_categories_helper(dataset_spec: DatasetConfig, open_spec: DatasetConfig) -> None:
    cats = features._categories(dataset_spec)
    assert isinstance(cats, list) and len(cats) == len(dataset_spec.categorical)
    assert all(MISSING in levels and levels == sorted(levels) for levels in cats)
    assert features._categories(open_spec) == "auto"


@pytest.mark.parametrize("dtype", ["str", object])
def test_large_string_frames_are_cleaned_per_level_with_the_per_cell_result(dtype):
    from steps.modeling import features

    rng = np.random.default_rng(0)
    n = 3 * features.FACTORIZE_ROWS
    frame = pd.DataFrame({"a": rng.choice(["x", "yy", "", None, "z z"], n),
                          "b": rng.choice(["1", "2", None, "ä-ß"], n)}).astype(dtype)
    per_cell = features._to_str(frame.to_numpy(dtype=object))
    per_level = features._to_str(frame)
    assert per_level.dtype == object and (per_level == per_cell).all()
    assert set(per_level[:, 0]) == {"x", "yy", features.MISSING, "z z"}
    assert len({id(v) for v in per_level[:, 0]}) == 4  # one string object per level, not per cell
