"""Robustness gates: synthetic edge cases, small input perturbations and quality under missing values.

``predict`` is any callable from a raw DataFrame (at least the ``spec.features`` columns) to one positive-class
score per row, e.g. ``lambda f: models.predict_proba(pipeline, f, spec)`` or an ONNX session wrapper. A predict
that raises never escapes from here: it becomes a failed gate whose detail carries the exception.

"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from steps.config.dataset import DatasetConfig, NumericSpec
from steps.config.gates import RobustnessGates, Threshold
from steps.gates.result import GateResult, check, describe

logger = logging.getLogger(__name__)


SUITE = "robustness"


CASE = "case"


UNSEEN = "__unseen_category__"


FAR_FUTURE = "2262-01-01"  # near the end of the nanosecond Timestamp range, valid at every resolution


Predict = Callable[[pd.DataFrame], np.ndarray]


def numeric_cases(name: str, spec: NumericSpec) -> list[tuple[str, float]]:
    """(case, value) pairs for one numeric feature: missing, and min, max, 10x max, below min where known."""
    cases: list[tuple[str, float]] = [(f"missing:{name}", np.nan)]
    lo, hi = spec.min, spec.max
    if lo is not None:
        span = (hi - lo) if hi is not None else abs(lo)
        cases += [(f"min:{name}", lo), (f"below_min:{name}", lo - max(1.0, span))]
    if hi is not None:
        cases += [(f"max:{name}", hi), (f"10x_max:{name}", hi * 10.0 if hi > 0 else hi + 10.0)]
    return cases


def categorical_cases(name: str) -> list[tuple[str, Any]]:
    """(case, value) pairs for one categorical feature: missing, an unseen level and the empty string."""
    return [(f"missing:{name}", None), (f"unseen:{name}", UNSEEN), (f"empty:{name}", "")]


def time_cases(base_value: Any) -> list[tuple[str, pd.Timestamp]]:
    """Boundary timestamps (the epoch and the far future) in the time zone of ``base_value``."""
    tz = getattr(base_value, "tz", None)
    return [("time:epoch", pd.Timestamp(0, unit="s", tz=tz)), ("time:far_future", pd.Timestamp(FAR_FUTURE, tz=tz))]


def edge_cases(spec: DatasetConfig, base_row: pd.DataFrame) -> pd.DataFrame:
    """Synthetic edge-case rows built from one real row, labelled in a ``case`` column.

    Each row changes one value of ``base_row`` (first row used): every feature missing, numeric features at
    their configured min and max, at 10x max and below min (out of range), categorical features at an unseen
    level and the empty string, and the time column at the epoch and the far future. ``base`` is the row
    unchanged and ``all_missing`` has every feature missing. The model only reads ``spec.features``.
    """
    base = base_row.iloc[0].to_dict()
    changes: list[tuple[str, dict[str, Any]]] = [("base", {})]
    for name, num in spec.numeric.items():
        changes += [(case, {name: value}) for case, value in numeric_cases(name, num)]
    for name in spec.categorical:
        changes += [(case, {name: value}) for case, value in categorical_cases(name)]
    if spec.time is not None and spec.time.unit != "period":  # a period is an ordered integer, not a date
        changes += [(case, {spec.time.column: value}) for case, value in time_cases(base.get(spec.time.column))]
    changes.append(("all_missing", {**{n: np.nan for n in spec.numeric}, **{n: None for n in spec.categorical}}))
    return pd.DataFrame([{**base, **change, CASE: case} for case, change in changes])


def scores(predict: Predict, frame: pd.DataFrame) -> np.ndarray:
    """``predict(frame)`` as a flat float array, checked to hold one score per row."""
    out = np.asarray(predict(frame), dtype=float).reshape(-1)
    if len(out) != len(frame):
        raise ValueError(f"predict returned {len(out)} scores for {len(frame)} rows")
    return out


def safe_scores(predict: Predict, frame: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """(scores, None) or (None, 'ExceptionType: message') when predicting raises."""
    try:
        return scores(predict, frame), None
    except Exception as err:  # noqa: BLE001 - any failure of the model is a gate result, not a crash
        return None, f"{type(err).__name__}: {err}"


def _bad(values: np.ndarray) -> bool:
    """True when any score is non-finite or outside [0, 1]."""
    return bool((~np.isfinite(values) | (values < 0.0) | (values > 1.0)).any())


def _names(items: list[str], limit: int = 10) -> str:
    """A comma-separated list, cut after ``limit`` items."""
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _json_score(single: np.ndarray | None) -> float | None:
    """The one score of a single-row prediction, or None when it raised or is not finite (strict JSON)."""
    return float(single[0]) if single is not None and np.isfinite(single[0]) else None


def _failed(name: str, metric: str, threshold: Threshold, detail: str) -> GateResult:
    """A failed gate without a measured value (the model raised or returned unusable scores)."""
    return GateResult(suite=SUITE, name=name, metric=metric, threshold=describe(threshold), actual=None,
                      passed=False, detail=detail)


Outcome = tuple[np.ndarray | None, str | None]


def no_error_gate(labels: list[str], outcomes: list[Outcome], batch_error: str | None) -> GateResult:
    """Gate (a): no edge case raises, one row at a time or all together; the detail names the first failure."""
    errors = [(case, err) for case, (_, err) in zip(labels, outcomes, strict=True) if err is not None]
    if batch_error is not None:
        errors.append((f"batch of all {len(labels)} cases", batch_error))
    detail = (f"first failing case '{errors[0][0]}': {errors[0][1]}; failing: {_names([c for c, _ in errors])}"
              if errors else f"all {len(labels)} cases predicted one by one and as one batch")
    return check(SUITE, "edge_cases_no_error", "failing edge cases", Threshold(max=0), len(errors), detail=detail)


def finite_gate(labels: list[str], outcomes: list[Outcome], batch: np.ndarray | None) -> GateResult:
    """Gate (b): every edge-case score (single-row and batch) is finite and in [0, 1]; names offending cases."""
    name, metric, none = "edge_cases_finite_in_unit_interval", "edge cases with invalid scores", Threshold(max=0)
    raised = [case for case, (_, err) in zip(labels, outcomes, strict=True) if err is not None]
    if len(raised) == len(labels) and batch is None:
        return _failed(name, metric, none, "no edge case produced a score (see edge_cases_no_error)")
    bad = [case for i, (case, (single, _)) in enumerate(zip(labels, outcomes, strict=True))
           if (single is not None and _bad(single)) or (batch is not None and _bad(batch[i:i + 1]))]
    detail = f"non-finite or outside [0, 1]: {_names(bad)}" if bad else "every score finite and in [0, 1]"
    if raised:
        detail += f"; {len(raised)} cases raised and were not checked (see edge_cases_no_error)"
    return check(SUITE, name, metric, none, len(bad), detail=detail)


def edge_case_gates(predict: Predict, cases: pd.DataFrame) -> tuple[list[GateResult], dict[str, Any]]:
    """Gates (a) and (b) on the edge-case frame: each row predicted alone (to name failures) and all as one batch."""
    inputs = cases.drop(columns=[CASE])
    labels = cases[CASE].tolist()
    batch, batch_error = safe_scores(predict, inputs)
    outcomes = [safe_scores(predict, inputs.iloc[[i]]) for i in range(len(inputs))]
    results = [no_error_gate(labels, outcomes, batch_error), finite_gate(labels, outcomes, batch)]
    report = {"cases": [{"case": case, "score": _json_score(single), "error": err}
                        for case, (single, err) in zip(labels, outcomes, strict=True)],
              "batch_error": batch_error}
    return results, report


def is_discrete(values: pd.Series) -> bool:
    """True when every non-missing value is a whole number (counts, flags, hours), whatever the dtype."""
    known = values.dropna().to_numpy(dtype=float)
    return bool(len(known)) and bool(np.array_equal(known, np.round(known)))


def perturb(sample: pd.DataFrame, spec: DatasetConfig, reference: pd.DataFrame, relative_noise: float,
            rng: np.random.Generator) -> pd.DataFrame:
    """``sample`` with Gaussian noise (std = ``relative_noise`` x the column's std in ``reference``) on numerics.

    Noisy values are clipped to the configured range so the check measures sensitivity, not range handling
    (the edge cases cover that). Whole-number columns (in ``reference``) stay whole numbers: their noisy values
    are rounded, since a fractional count or flag is not a realistic input and tree models split just above each
    integer. Missing values stay missing.
    """
    noisy = sample.copy()
    for name, num in spec.numeric.items():
        std = float(reference[name].std())
        scale = relative_noise * std if np.isfinite(std) else 0.0
        values = sample[name].astype(float) + rng.normal(0.0, scale, len(sample))
        values = values.round() if is_discrete(reference[name]) else values
        noisy[name] = values.clip(num.min, num.max)
    return noisy


def knock_out(sample: pd.DataFrame, spec: DatasetConfig, rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """``sample`` with ``rate`` of the cells of every numeric and categorical feature set missing."""
    out = sample.copy()
    k = int(round(rate * len(sample)))
    for name in spec.features:
        mask = np.zeros(len(sample), dtype=bool)
        mask[rng.choice(len(sample), size=k, replace=False)] = True
        out[name] = out[name].mask(mask)
    return out


def perturbation_gates(predict: Predict, clean: np.ndarray, noisy_frame: pd.DataFrame,
                       cfg: RobustnessGates) -> tuple[list[GateResult], dict[str, Any]]:
    """Gates (c): mean and 99th-percentile absolute score change under small numeric noise.

    The 99th percentile, not the maximum: a row sitting on a real step of the scoring rule (e.g. a distance
    threshold) legitimately moves when nudged across it; what must stay rare is large moves.
    """
    mean_t, max_t = Threshold(max=cfg.max_mean_abs_change), Threshold(max=cfg.max_p99_abs_change)
    names = (("perturbation_mean_abs_change", "mean |score change|", mean_t),
             ("perturbation_p99_abs_change", "p99 |score change|", max_t))
    noisy, error = safe_scores(predict, noisy_frame)
    if noisy is not None and not np.isfinite(noisy).all():
        error = f"{int((~np.isfinite(noisy)).sum())} non-finite scores on the perturbed rows"
    if error is not None:
        return [_failed(n, m, t, f"predict failed on perturbed rows: {error}") for n, m, t in names], {"error": error}
    change = np.abs(noisy - clean)
    stats = {"rows": len(clean), "relative_noise": cfg.relative_noise,
             "mean_abs_change": float(change.mean()), "p99_abs_change": float(np.quantile(change, 0.99)),
             "max_abs_change": float(change.max())}
    detail = (f"{len(clean)} hold-out rows, noise std {cfg.relative_noise:g} x column std on every numeric "
              f"feature (whole-number columns rounded); largest change at sample row {int(change.argmax())}")
    return [check(SUITE, names[0][0], names[0][1], mean_t, stats["mean_abs_change"], detail=detail),
            check(SUITE, names[1][0], names[1][1], max_t, stats["p99_abs_change"], detail=detail)], stats


def missing_gate(predict: Predict, y: np.ndarray, clean: np.ndarray, holed: pd.DataFrame,
                 cfg: RobustnessGates) -> tuple[GateResult, dict[str, Any]]:
    """Gate (d): AUC with ``missing_rate`` of every feature's cells missing, relative to the clean AUC."""
    name, metric = "auc_with_missing_values", "AUC(with missing) / AUC(clean)"
    threshold = Threshold(min=cfg.min_auc_ratio_with_missing)
    if len(np.unique(y)) < 2:
        detail = "the sample holds one class only: AUC undefined, not gated"
        return GateResult(suite=SUITE, name=name, metric=metric, threshold=describe(threshold), actual=None,
                          passed=True, detail=detail, gated=False), {"error": detail}
    holed_scores, error = safe_scores(predict, holed)
    if holed_scores is not None and not np.isfinite(holed_scores).all():
        error = f"{int((~np.isfinite(holed_scores)).sum())} non-finite scores on rows with missing values"
    if error is not None:
        return _failed(name, metric, threshold, f"predict failed with missing values: {error}"), {"error": error}
    auc_clean, auc_missing = float(roc_auc_score(y, clean)), float(roc_auc_score(y, holed_scores))
    ratio = auc_missing / auc_clean if auc_clean > 0 else 0.0
    stats = {"rows": len(y), "missing_rate": cfg.missing_rate, "auc_clean": auc_clean,
             "auc_missing": auc_missing, "ratio": ratio}
    detail = (f"AUC {auc_missing:.4f} with {cfg.missing_rate:.0%} of each feature's cells missing vs "
              f"{auc_clean:.4f} clean, on {len(y)} hold-out rows")
    return check(SUITE, name, metric, threshold, ratio, detail=detail), stats


def sample_failures(cfg: RobustnessGates, detail: str) -> list[GateResult]:
    """Failed (c) and (d) gates when even the clean sample cannot be scored."""
    return [_failed("perturbation_mean_abs_change", "mean |score change|", Threshold(max=cfg.max_mean_abs_change),
                    detail),
            _failed("perturbation_p99_abs_change", "p99 |score change|", Threshold(max=cfg.max_p99_abs_change),
                    detail),
            _failed("auc_with_missing_values", "AUC(with missing) / AUC(clean)",
                    Threshold(min=cfg.min_auc_ratio_with_missing), detail)]


def _base_row(holdout: pd.DataFrame, spec: DatasetConfig, rng: np.random.Generator) -> pd.DataFrame:
    """One hold-out row, preferring rows without missing features (positions only: no copy of the complete rows)."""
    complete = np.flatnonzero(holdout[spec.features].notna().all(axis=1).to_numpy())
    pool = complete if len(complete) else np.arange(len(holdout))
    return holdout.iloc[[int(pool[int(rng.integers(len(pool)))])]]


def robustness_gates(predict: Predict, holdout: pd.DataFrame, spec: DatasetConfig, cfg: RobustnessGates,
                     seed: int) -> tuple[list[GateResult], dict[str, Any]]:
    """Edge-case, perturbation and missing-value gates of one model.

    Args:
        predict: raw rows in, one positive-class score per row out.
        holdout: labelled hold-out rows (features and ``spec.target.name``).
        spec: the dataset schema (feature ranges and levels).
        cfg: noise, missing rate, sample size and the bounds.
        seed: seeds the base row, the sample, the noise and the knocked-out cells.

    Returns:
        Five gate results and a JSON-able report: ``edge_cases``, ``perturbation`` and ``missing``.
    """
    rng = np.random.default_rng(seed)
    cases = edge_cases(spec, _base_row(holdout, spec, rng))
    results, edge_report = edge_case_gates(predict, cases)
    sample = holdout.sample(n=min(cfg.sample_rows, len(holdout)), random_state=seed).reset_index(drop=True)
    y = sample[spec.target.name].to_numpy().astype(int)
    noisy_frame = perturb(sample, spec, holdout, cfg.relative_noise, rng)
    holed = knock_out(sample, spec, cfg.missing_rate, rng)
    clean, error = safe_scores(predict, sample)
    if clean is not None and not np.isfinite(clean).all():
        error = f"{int((~np.isfinite(clean)).sum())} non-finite scores on the clean hold-out sample"
    if clean is None or error is not None:
        results += sample_failures(cfg, f"predict failed on the clean hold-out sample: {error}")
        perturbation: dict[str, Any] = {"error": error}
        missing: dict[str, Any] = {"error": error}
    else:
        perturbation_results, perturbation = perturbation_gates(predict, clean, noisy_frame, cfg)
        missing_result, missing = missing_gate(predict, y, clean, holed, cfg)
        results += [*perturbation_results, missing_result]
    failed = [r.name for r in results if r.gated and not r.passed]
    logger.info("robustness: %d edge cases, %d sample rows, failed: %s", len(cases), len(sample), failed or "none")
    return results, {"edge_cases": edge_report, "perturbation": perturbation, "missing": missing}
