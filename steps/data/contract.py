"""The data contract: the one place that decides what a valid row and a valid table are, for training and scoring."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from steps.config.dataset import DatasetConfig


class DataValidationError(ValueError):
    """The data broke the dataset schema; ``violations`` lists every problem found."""

    def __init__(self, source: str, violations: list[str]):
        self.source = source
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"{source}: {len(violations)} validation error(s):\n{lines}")


def expected_columns(spec: DatasetConfig) -> list[str]:
    """Every column the raw data must have (the derived target's source instead of the target itself)."""
    cols = [spec.id_column, spec.time, spec.target.name, *spec.features, *spec.sensitive, *spec.ignored]
    if spec.target.derive is not None:
        cols.append(spec.target.derive.source)
    return list(dict.fromkeys(cols))


def _examples(values: pd.Series, limit: int = 5) -> str:
    shown = [repr(v) for v in values.head(limit).tolist()]
    return ", ".join(shown) + (" ..." if len(values) > limit else "")


def _rows(mask: pd.Series, limit: int = 5) -> str:
    idx = np.flatnonzero(mask.to_numpy())
    return ", ".join(str(i) for i in idx[:limit]) + (" ..." if len(idx) > limit else "")


def check_columns(frame: pd.DataFrame, spec: DatasetConfig) -> list[str]:
    """Missing and unexpected columns."""
    expected = set(expected_columns(spec))
    out = []
    missing = [c for c in expected_columns(spec) if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    if missing:
        out.append(f"missing columns: {missing}")
    if extra:
        out.append(f"unexpected columns: {extra} (add them to 'ignored' in the dataset config to allow them)")
    return out


def check_numeric(frame: pd.DataFrame, name: str, spec: Any) -> list[str]:
    """Dtype, null rate and range of one numeric column."""
    col = frame[name]
    if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
        return [f"column '{name}': expected a numeric dtype, got {col.dtype} (e.g. {_examples(col.dropna())})"]
    out = []
    raw, col = col, col.astype("float64")  # nullable Int64/Float64: <NA> becomes NaN, so masks stay boolean
    null_rate = float(col.isna().mean()) if len(col) else 0.0
    if null_rate > spec.max_null_rate:
        out.append(f"column '{name}': null rate {null_rate:.4f} exceeds max_null_rate {spec.max_null_rate}")
    if spec.min is not None and (bad := col < spec.min).any():
        out.append(f"column '{name}': {int(bad.sum())} value(s) below min {spec.min} at rows {_rows(bad)} "
                   f"(e.g. {_examples(raw[bad])})")
    if spec.max is not None and (bad := col > spec.max).any():
        out.append(f"column '{name}': {int(bad.sum())} value(s) above max {spec.max} at rows {_rows(bad)} "
                   f"(e.g. {_examples(raw[bad])})")
    if (bad := np.isinf(col)).any():
        out.append(f"column '{name}': {int(bad.sum())} infinite value(s) at rows {_rows(bad)}")
    return out


def check_categorical(frame: pd.DataFrame, name: str, spec: Any) -> list[str]:
    """Dtype, null rate and unknown-category rate of one categorical column."""
    col = frame[name]
    if pd.api.types.is_float_dtype(col) or pd.api.types.is_bool_dtype(col):
        return [f"column '{name}': expected strings (categorical), got {col.dtype}"]
    out = []
    null_rate = float(col.isna().mean()) if len(col) else 0.0
    if null_rate > spec.max_null_rate:
        out.append(f"column '{name}': null rate {null_rate:.4f} exceeds max_null_rate {spec.max_null_rate}")
    if spec.categories is not None and len(col):
        unknown = col.notna() & ~col.astype("string").isin(spec.categories)
        rate = float(unknown.mean())
        if rate > spec.max_unknown_rate:
            levels = sorted(col[unknown].astype(str).unique().tolist())
            out.append(f"column '{name}': unknown categories in {rate:.4f} of rows (max_unknown_rate "
                       f"{spec.max_unknown_rate}): {levels[:10]} at rows {_rows(unknown)}")
    return out


def check_target(frame: pd.DataFrame, spec: DatasetConfig) -> list[str]:
    """The target is binary 0/1 without nulls and has enough positives."""
    t = spec.target
    col = frame[t.name]
    if col.isna().any():
        return [f"target '{t.name}': {int(col.isna().sum())} null value(s) at rows {_rows(col.isna())}"]
    values = set(pd.unique(col).tolist())
    if not values <= {0, 1}:
        return [f"target '{t.name}' is not binary: values {sorted(map(str, values))[:10]}"]
    positives = int(col.astype("int64").sum())
    out = []
    if positives < t.min_positives:
        out.append(f"target '{t.name}': only {positives} positive row(s), min_positives is {t.min_positives}")
    if len(col) and positives / len(col) > t.max_positive_rate:
        out.append(f"target '{t.name}': positive rate {positives / len(col):.4f} exceeds max_positive_rate "
                   f"{t.max_positive_rate}")
    return out


def check_keys(frame: pd.DataFrame, spec: DatasetConfig) -> list[str]:
    """Unique ids and parseable, non-empty timestamps."""
    out = []
    ids = frame[spec.id_column]
    dup = ids.duplicated(keep=False) & ids.notna()
    if dup.any():
        out.append(f"id column '{spec.id_column}': {int(ids[dup].nunique())} duplicated id(s) "
                   f"(e.g. {_examples(pd.Series(ids[dup].unique()))}) at rows {_rows(dup)}")
    if ids.isna().any():
        out.append(f"id column '{spec.id_column}': {int(ids.isna().sum())} empty id(s) at rows {_rows(ids.isna())}")
    t = frame[spec.time]
    if not pd.api.types.is_datetime64_any_dtype(t):
        t = pd.to_datetime(t, utc=True, errors="coerce", format="mixed")
    if t.isna().any():
        out.append(f"time column '{spec.time}': {int(t.isna().sum())} empty or unparseable timestamp(s) "
                   f"at rows {_rows(t.isna())}")
    return out


def validate(frame: pd.DataFrame, spec: DatasetConfig, source: str) -> pd.DataFrame:
    """Check ``frame`` against ``spec``; raise one :class:`DataValidationError` listing every violation.

    Returns:
        The frame sorted by time, with the target as int64 and categoricals as strings.
    """
    if frame.empty:
        raise DataValidationError(source, ["the data is empty (0 rows)"])
    violations = check_columns(frame, spec)
    present = set(frame.columns)
    if len(frame) < spec.min_rows:
        violations.append(f"only {len(frame)} row(s), min_rows is {spec.min_rows}")
    for name, num in spec.numeric.items():
        violations += check_numeric(frame, name, num) if name in present else []
    for name, cat in spec.categorical.items():
        violations += check_categorical(frame, name, cat) if name in present else []
    if spec.target.name in present:
        violations += check_target(frame, spec)
    if {spec.id_column, spec.time} <= present:
        violations += check_keys(frame, spec)
    if violations:
        raise DataValidationError(source, violations)
    return normalize(frame, spec)


def normalize(frame: pd.DataFrame, spec: DatasetConfig) -> pd.DataFrame:
    """Keep the schema's columns, coerce dtypes, and sort by time (stable, then by id)."""
    cols = [spec.id_column, spec.time, *spec.features, *[s for s in spec.sensitive if s not in spec.features],
            spec.target.name]
    out = frame[list(dict.fromkeys(cols))].copy()
    for name in spec.categorical:
        out[name] = out[name].astype("object").where(out[name].notna(), None)
        out[name] = out[name].map(lambda v: v if v is None else str(v))
    for name in spec.numeric:
        out[name] = out[name].astype("float64")
    out[spec.target.name] = out[spec.target.name].astype("int64")
    return out.sort_values([spec.time, spec.id_column], kind="stable").reset_index(drop=True)


class ScoreInputError(ValueError):
    """The input cannot be scored; the message names the file (or location) and the problem."""


class SchemaMismatch(ScoreInputError):
    """An input file lacks columns the model needs, or has them with unusable types; the message names them."""


def required_columns(spec: DatasetConfig) -> list[str]:
    """The columns a scoring input must have: the id and every model feature."""
    return [spec.id_column, *spec.features]


def _numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)


def _string_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def check_schema(schema: pa.Schema, spec: DatasetConfig, source: str) -> None:
    """Raise :class:`SchemaMismatch` naming ``source`` and every missing or wrongly typed column."""
    names = set(schema.names)
    missing = [c for c in required_columns(spec) if c not in names]
    wrong = [f"{c} ({schema.field(c).type}, expected numeric)" for c in spec.numeric
             if c in names and not _numeric_type(schema.field(c).type)]
    wrong += [f"{c} ({schema.field(c).type}, expected string)" for c in spec.categorical
              if c in names and not _string_type(schema.field(c).type)]
    problems = ([f"missing columns {missing}"] if missing else []) + (
        [f"columns with unusable types: {', '.join(wrong)}"] if wrong else [])
    if problems:
        raise SchemaMismatch(f"{source}: schema mismatch: " + "; ".join(problems))


def _null_mask(col: pd.Series) -> np.ndarray:
    """Missing values of a column; for strings '' counts as missing (the pipeline maps it to MISSING too)."""
    mask = col.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
        mask = mask | (col.astype("object") == "").to_numpy()
    elif isinstance(col.dtype, pd.CategoricalDtype):
        empty = np.asarray(col.cat.categories == "")
        codes = col.cat.codes.to_numpy()
        mask = mask | ((codes >= 0) & np.append(empty, False)[codes])
    return mask


def _unknown_mask(col: pd.Series, allowed: list[str], nulls: np.ndarray) -> np.ndarray:
    """Non-missing values outside ``allowed``."""
    if isinstance(col.dtype, pd.CategoricalDtype):  # compare the few levels, then look up by code
        bad_level = ~np.asarray(col.cat.categories.astype(str).isin(allowed))
        codes = col.cat.codes.to_numpy()
        return (codes >= 0) & np.append(bad_level, False)[codes] & ~nulls
    return ~nulls & ~col.astype("object").isin(allowed).to_numpy()


Rule = tuple[str, np.ndarray, pd.Series]  # (label, mask, column whose value the reason quotes)


def _rules(frame: pd.DataFrame, spec: DatasetConfig) -> Iterator[Rule]:
    """Every row-level rule of the dataset schema that some row breaks: (label, mask, column)."""
    missing = [c for c in required_columns(spec) if c not in frame.columns]
    if missing:
        raise SchemaMismatch(f"schema mismatch: missing columns {missing}")
    ident = frame[spec.id_column]
    yield f"{spec.id_column} is null", ident.isna().to_numpy(), ident
    for name, num in spec.numeric.items():
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            coerced = pd.to_numeric(col.astype("object"), errors="coerce")
            yield f"{name} is not a number", (col.notna() & coerced.isna()).to_numpy(), col
            col = coerced
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        if num.max_null_rate == 0.0:
            yield f"{name} is null", np.isnan(values), col
        finite = np.isfinite(values)
        yield f"{name} is infinite", np.isinf(values), col
        if num.min is not None:
            yield f"{name} below min {num.min:g}", finite & (values < num.min), col
        if num.max is not None:
            yield f"{name} above max {num.max:g}", finite & (values > num.max), col
    for name, cat in spec.categorical.items():
        col = frame[name]
        nulls = _null_mask(col)
        if cat.max_null_rate == 0.0:
            yield f"{name} is null", nulls, col
        if cat.categories is not None and cat.max_unknown_rate == 0.0:
            yield f"{name} unknown category", _unknown_mask(col, cat.categories, nulls), col


def row_violations(frame: pd.DataFrame, spec: DatasetConfig) -> pd.Series:
    """The reason each row breaks the dataset schema (``'; '``-joined), or None for a valid row.

    Row-level reading of ``validate``'s rules: the id must be present; numeric values must be numbers within
    [min, max] and finite, and present unless the column has a null budget (``max_null_rate`` > 0); categoricals
    must be present unless they have a null budget, and a known level unless they have an unknown budget
    (``max_unknown_rate`` > 0; the model then maps unseen levels to its unknown code). Dataset-level budgets
    (rates) are not judged per row; the quarantine rate is judged per run.
    """
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    rules = [(label, mask, col) for label, mask, col in _rules(frame, spec) if mask.any()]
    if rules:
        bad = np.flatnonzero(np.logical_or.reduce([mask for _, mask, _ in rules]))
        texts: list[list[str]] = [[] for _ in bad]
        for label, mask, col in rules:
            for j in np.flatnonzero(mask[bad]):
                value = col.iloc[bad[j]]
                value = value.item() if isinstance(value, np.generic) else value
                texts[j].append(label if pd.isna(value) or "null" in label else f"{label} (got {value!r})")
        reasons[bad] = ["; ".join(t) for t in texts]
    return pd.Series(reasons, index=frame.index, name="reason", dtype=object)


def reason_labels(reason: str) -> list[str]:
    """The rule labels in a reason (values dropped), for counting."""
    return [part.split(" (got ")[0] for part in reason.split("; ")]
