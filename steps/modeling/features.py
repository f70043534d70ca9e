"""The preprocessing inside every model pipeline, so serving applies exactly the training transforms."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from steps.config.dataset import DatasetConfig

Style = Literal["linear", "tree"]


MISSING = "__missing__"


def _categories(spec: DatasetConfig) -> list[list[str]] | str:
    """Known levels from the dataset config (stable encodings), or 'auto' when any column leaves them open."""
    levels = [c.categories for c in spec.categorical.values()]
    known = [lv for lv in levels if lv is not None]
    if len(known) < len(levels):
        return "auto"
    return [sorted([*lv, MISSING]) for lv in known]


FACTORIZE_ROWS = 1024  # from this many rows, string columns are cleaned per distinct value (see _to_str)


def _clean_levels(values: np.ndarray) -> np.ndarray:
    """One column's distinct values as cleaned strings (the per-cell rule of :func:`_to_str`)."""
    return _to_str(values.reshape(-1, 1))[:, 0]


def _string_column(col: pd.Series) -> np.ndarray:
    """A string column cleaned once per distinct value: every cell points at its level's one string object."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    levels = np.append(_clean_levels(np.asarray(uniques, dtype=object)), np.array([MISSING], dtype=object))
    return levels[codes]  # code -1 (missing) takes the last entry


def _to_str(x: np.ndarray | pd.DataFrame) -> np.ndarray:
    """Categoricals as strings, with missing values (None, NaN, pd.NA, '') mapped to one explicit level.

    Plain NumPy on an object array: a one-row call (online serving, latency gates) costs a fraction of a
    millisecond, about a tenth of the same steps through pandas. A large frame's string columns are cleaned per
    distinct value instead (``pd.factorize``): the same strings, without a new string object (and a fixed-width
    unicode copy) per cell, which at millions of rows cost gigabytes.
    """
    if isinstance(x, pd.DataFrame) and len(x) >= FACTORIZE_ROWS and all(
            pd.api.types.infer_dtype(x[c], skipna=True) == "string" for c in x.columns):
        out = np.empty(x.shape, dtype=object)
        for j, name in enumerate(x.columns):
            out[:, j] = _string_column(x[name])
        return out
    values = np.asarray(x, dtype=object)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    missing = pd.isna(values)
    missing[~missing] = values[~missing] == ""
    out = values.astype(str).astype(object)
    out[missing] = MISSING
    return out


def categorical_cleaner() -> FunctionTransformer:
    """A stateless transformer that makes every categorical value a non-empty string."""
    return FunctionTransformer(_to_str, feature_names_out="one-to-one", validate=False)


def preprocessor(spec: DatasetConfig, style: Style, impute: bool = True) -> ColumnTransformer:
    """Column transforms for ``style``: one-hot + scaling for linear models, ordinal codes + raw numbers for trees.

    Unseen categories never raise: they become all-zero one-hot rows or the code -1. ``impute=False`` leaves
    missing numbers as NaN for linear models (they then fail on missing values: a planted regression). The one-hot
    block is sparse, so a linear model's input is a CSR matrix whenever it is mostly zeros (the ColumnTransformer's
    ``sparse_threshold``): measured on 700k generated rows, the logistic regression fit in 4.2 s instead of 5.8 s,
    its peak memory growing by 550 MiB instead of 930 MiB, with the same scores.
    """
    numeric, categorical = list(spec.numeric), list(spec.categorical)
    cats = _categories(spec)
    if style == "linear":
        imputer = [("impute", SimpleImputer(strategy="median", add_indicator=True))] if impute else []
        num = Pipeline([*imputer, ("scale", StandardScaler())])
        cat = Pipeline([("clean", categorical_cleaner()),
                        ("encode", OneHotEncoder(categories=cats, handle_unknown="ignore", sparse_output=True))])
    else:
        num = "passthrough"
        cat = Pipeline([("clean", categorical_cleaner()),
                        ("encode", OrdinalEncoder(categories=cats, handle_unknown="use_encoded_value",
                                                  unknown_value=-1, dtype=np.float64))])
    transformers = []
    if numeric:
        transformers.append(("num", num, numeric))
    if categorical:
        transformers.append(("cat", cat, categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
