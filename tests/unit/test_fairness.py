"""Fairness gates: fairlearn slices, disparities over gated groups, and the per-group report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.config import CandidateConfig, DatasetConfig, FairnessGates, load_file
from steps.data import synth
from steps.data.contract import validate
from steps.gates.fairness import fairness_gates
from steps.modeling import models

ROOT = Path(__file__).resolve().parents[2]
SENSITIVE = ["customer_age_band", "region"]
INTERSECTION = "customer_age_band×region"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """12,000 synthetic transactions (about 240 frauds)."""
    return synth.generate(synth.SynthSpec(rows=12_000, seed=3, row_group_rows=6_000))


@pytest.fixture(scope="module")
def labels(frame: pd.DataFrame) -> np.ndarray:
    """The 0/1 fraud labels."""
    return frame["is_fraud"].to_numpy()


@pytest.fixture(scope="module")
def fair(labels: np.ndarray) -> np.ndarray:
    """An equally good scorer for every group: positives score >= 0.7, negatives < 0.3."""
    rng = np.random.default_rng(0)
    return 0.7 * labels + 0.3 * rng.uniform(size=len(labels))


def by_name(results: list) -> dict:
    """Gate results keyed by name."""
    return {r.name: r for r in results}


@pytest.mark.parametrize("intersections, expected", [(True, 9), (False, 6)])
def test_fair_predictor_passes_every_gate(frame, labels, fair, intersections, expected):
    results, report = fairness_gates(labels, fair, frame[SENSITIVE], FairnessGates(intersections=intersections), 0.5)
    assert len(results) == expected
    assert all(r.suite == "fairness" and r.passed for r in results), [r for r in results if not r.passed]
    assert (INTERSECTION in report) is intersections
    assert by_name(results)["equalized_odds_difference[region]"].actual == pytest.approx(0.0)


@pytest.mark.parametrize("attribute, group", [("region", "latam"), ("region", "mea"), ("customer_age_band", "18-25")])
def test_zeroing_one_group_fails_equalized_odds_and_names_it(frame, labels, fair, attribute, group):
    proba = np.where(frame[attribute].eq(group).to_numpy(), 0.0, fair)
    results = by_name(fairness_gates(labels, proba, frame[SENSITIVE], FairnessGates(), 0.5)[0])
    odds = results[f"equalized_odds_difference[{attribute}]"]
    assert not odds.passed and odds.gated
    assert odds.actual == pytest.approx(1.0)
    assert f"worst {group} (0.0000)" in odds.detail
    auc = results[f"worst_group_auc_ratio[{attribute}]"]
    assert not auc.passed and f"worst {group} (AUC 0.5000)" in auc.detail
    inter = results[f"equalized_odds_difference[{INTERSECTION}]"]
    assert not inter.passed and group in inter.detail.split(";")[0]


def test_demographic_parity_fails_when_one_group_is_always_flagged(frame, labels, fair):
    proba = np.where(frame["region"].eq("apac").to_numpy(), 0.99, fair)
    results = by_name(fairness_gates(labels, proba, frame[SENSITIVE], FairnessGates(), 0.5)[0])
    parity = results["demographic_parity_difference[region]"]
    assert not parity.passed and parity.actual > 0.9
    assert "highest selection rate apac (1.0000)" in parity.detail
    assert results["demographic_parity_difference[customer_age_band]"].passed


@pytest.mark.parametrize("cfg", [FairnessGates(), FairnessGates(min_slice_size=1, min_slice_positives=10)],
                         ids=["too_few_rows", "too_few_positives"])
def test_small_slices_are_reported_but_not_gated(frame, labels, fair, cfg):
    small = frame["customer_age_band"].str.cat(frame["region"], sep="×")
    counts = pd.DataFrame({"group": small, "y": labels}).groupby("group")["y"].agg(["size", "sum"])
    below = counts[(counts["size"] < cfg.min_slice_size) | (counts["sum"] < cfg.min_slice_positives)]
    assert len(below) and len(below) < len(counts), "the fixture must hold both large and small slices"
    target = below.index[0]
    proba = np.where(small.eq(target).to_numpy(), 0.0, fair)  # the model is useless on that small slice only
    results, report = fairness_gates(labels, proba, frame[SENSITIVE], cfg, 0.5)
    odds = by_name(results)[f"equalized_odds_difference[{INTERSECTION}]"]
    assert odds.passed and odds.gated
    assert "not gated" in odds.detail and target in odds.detail
    rows = {r["group"]: r for r in report[INTERSECTION]}
    assert rows[target]["gated"] is False and rows[target]["tpr"] in (0.0, None)
    assert {g for g, r in rows.items() if not r["gated"]} == set(below.index)


def test_fewer_than_two_gated_groups_gives_reported_only_results(frame, labels, fair):
    cfg = FairnessGates(min_slice_size=len(frame), intersections=False)
    results, _ = fairness_gates(labels, fair, frame[SENSITIVE], cfg, 0.5)
    assert len(results) == 6
    assert all(not r.gated and r.actual is None for r in results)
    assert all("fewer than 2 groups" in r.detail for r in results)


def test_report_is_json_with_every_group_and_nan_as_null(labels, fair):
    sensitive = pd.DataFrame({"band": np.where(labels == 1, "a", np.array(["a", "b", None], dtype=object)[
        np.arange(len(labels)) % 3])})  # 'b' and the missing group hold no positives
    results, report = fairness_gates(labels, fair, sensitive, FairnessGates(min_slice_size=1), 0.5)
    json.dumps(report, allow_nan=False)
    rows = {r["group"]: r for r in report["band"]}
    assert set(rows) == {"a", "b", "__missing__"}
    assert set(rows["a"]) == {"group", "rows", "positives", "selection_rate", "tpr", "fpr", "auc", "gated"}
    assert rows["b"]["positives"] == 0 and rows["b"]["auc"] is None and rows["b"]["tpr"] is None
    assert rows["a"]["gated"] and not rows["b"]["gated"]
    assert sum(r["rows"] for r in rows.values()) == len(labels)
    assert len(results) == 3  # one attribute: no intersection


def test_decision_threshold_moves_selection_rates(frame, labels, fair):
    _, low = fairness_gates(labels, fair, frame[SENSITIVE], FairnessGates(intersections=False), 0.0)
    _, high = fairness_gates(labels, fair, frame[SENSITIVE], FairnessGates(intersections=False), 0.5)
    assert all(r["selection_rate"] == 1.0 for r in low["region"])
    assert all(r["selection_rate"] < 0.1 for r in high["region"])


def test_length_mismatch_is_an_error(frame, labels, fair):
    with pytest.raises(ValueError, match="length mismatch"):
        fairness_gates(labels[:-1], fair, frame[SENSITIVE], FairnessGates(), 0.5)


def test_fitted_pipeline_on_validated_data(frame):
    spec = load_file(DatasetConfig, ROOT / "config" / "dataset.yaml")
    clean = validate(frame, spec, "fixture")
    train, test = clean.iloc[:8000], clean.iloc[8000:]
    candidate = CandidateConfig(name="logreg", type="logistic_regression", params={"C": 0.5})
    pipeline, _ = models.fit(models.build_pipeline(candidate, spec, seed=0, threads=1), train, spec, threads=1)
    proba = models.predict_proba(pipeline, test, spec)
    results, report = fairness_gates(test[spec.target.name], proba, test[spec.sensitive], FairnessGates(), 0.1)
    assert {r.name for r in results} == {f"{m}[{a}]" for a in [*spec.sensitive, INTERSECTION] for m in (
        "demographic_parity_difference", "equalized_odds_difference", "worst_group_auc_ratio")}
    assert all(r.actual is None or np.isfinite(r.actual) for r in results)
    assert set(report) == {*spec.sensitive, INTERSECTION}


def _fairlearn_table(y: np.ndarray, score: np.ndarray, groups: pd.Series, threshold: float) -> pd.DataFrame:
    """The per-group table as fairlearn's MetricFrame computed it before (the oracle)."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate
    from sklearn.metrics import recall_score, roc_auc_score

    def decided(metric):
        return lambda t, s: float(metric(t, (np.asarray(s) >= threshold).astype(int)))

    fns = {"rows": lambda t, s: float(len(t)), "positives": lambda t, s: float(np.sum(t)),
           "selection_rate": decided(selection_rate),
           "tpr": decided(lambda t, d: recall_score(t, d, zero_division=np.nan)),
           "fpr": decided(lambda t, d: false_positive_rate(t, d) if (np.asarray(t) == 0).any() else np.nan),
           "auc": lambda t, s: float(roc_auc_score(t, s)) if len(np.unique(t)) == 2 else np.nan}
    table = MetricFrame(metrics=fns, y_true=y, y_pred=score, sensitive_features=groups).by_group
    table.index = table.index.astype(str)
    return table


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("rounding", [None, 1])  # rounded scores: many ties inside each group
def test_group_table_equals_fairlearn(threshold, rounding):
    from steps.gates.fairness import by_group

    rng = np.random.default_rng(4)
    n = 3000
    groups = pd.Series(rng.choice(["a", "b", "c", "only_neg", "only_pos"], n, p=[0.4, 0.3, 0.2, 0.05, 0.05]),
                       name="g")
    y = (rng.uniform(size=n) < 0.3).astype(int)
    y[groups.to_numpy() == "only_neg"], y[groups.to_numpy() == "only_pos"] = 0, 1
    score = np.clip(0.5 * y + rng.uniform(size=n) * 0.6, 0, 1)
    score = np.round(score, rounding) if rounding is not None else score
    ours = by_group(y, score, groups, FairnessGates(), threshold).drop(columns="gated")
    oracle = _fairlearn_table(y, score, groups, threshold)[ours.columns]
    assert list(ours.index) == list(oracle.index)
    pd.testing.assert_frame_equal(ours, oracle.astype(float), check_names=False, rtol=1e-12)


def test_group_aucs_of_an_empty_group_or_none_are_nan_or_empty():
    from sklearn.metrics import roc_auc_score

    from steps.gates.fairness import group_aucs

    y, score = np.array([0, 1, 0, 1, 1, 0]), np.array([0.1, 0.9, 0.4, 0.4, 0.2, 0.8])
    codes = np.array([0, 0, 0, 2, 2, 2])  # group 1 holds no row
    aucs = group_aucs(y, score, codes, 3)
    assert aucs[0] == roc_auc_score(y[:3], score[:3]) and np.isnan(aucs[1])
    assert aucs[2] == roc_auc_score(y[3:], score[3:])
    assert group_aucs(y[:0], score[:0], codes[:0], 0).shape == (0,)


def _multinomial_widening(y, p_champion, p_challenger, sensitive, cfg, threshold, samples, seed):
    """The earlier implementation (per-resample row indices drawn with replacement): the statistical oracle."""
    def gaps(y, d, codes, k, keep):
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = np.bincount(codes, minlength=k)
            pos = np.bincount(codes, weights=y, minlength=k)
            sel = np.bincount(codes, weights=d, minlength=k)[keep] / rows[keep]
            tpr = np.bincount(codes, weights=d * y, minlength=k)[keep] / pos[keep]
            fpr = np.bincount(codes, weights=d * (1 - y), minlength=k)[keep] / (rows - pos)[keep]
        return np.nanmax(sel) - np.nanmin(sel), max(np.nanmax(tpr) - np.nanmin(tpr), np.nanmax(fpr) - np.nanmin(fpr))

    y = np.asarray(y, dtype=float)
    d = [(np.asarray(p) >= threshold).astype(float) for p in (p_champion, p_challenger)]
    idx = np.random.default_rng(seed).integers(0, len(y), size=(samples, len(y)))
    out = {}
    for attribute in sensitive.columns:
        codes, uniques = pd.factorize(sensitive[attribute].astype(str))
        k = len(uniques)
        keep = (np.bincount(codes, minlength=k) >= cfg.min_slice_size) & (
            np.bincount(codes, weights=y, minlength=k) >= cfg.min_slice_positives)
        boot = np.array([np.subtract(gaps(y[i], d[1][i], codes[i], k, keep), gaps(y[i], d[0][i], codes[i], k, keep))
                         for i in idx])
        for j, name in enumerate(("demographic_parity_difference", "equalized_odds_difference")):
            out[f"{name}[{attribute}]"] = boot[:, j]
    return out


def test_disparity_widening_agrees_with_the_multinomial_bootstrap(frame, labels, fair):
    from steps.gates.fairness import compare_disparities

    rng = np.random.default_rng(1)
    champion = np.clip(fair + rng.normal(0, 0.2, len(fair)), 0, 1)
    cfg = FairnessGates(min_slice_size=300, min_slice_positives=5)
    ours = compare_disparities(labels, champion, fair, frame[SENSITIVE], cfg, 0.5, samples=600, seed=0)
    oracle = _multinomial_widening(labels, champion, fair, frame[SENSITIVE], cfg, 0.5, 600, 1)
    assert len(ours) == len(oracle) == 4
    for row in ours:
        spread = oracle[row["name"]]
        low, high = np.nanquantile(spread, [0.025, 0.975])
        width = high - low
        assert width > 0
        assert abs(row["low"] - low) < 0.2 * width and abs(row["high"] - high) < 0.2 * width, (row, low, high)


def _weighted_widening(y, decisions, codes, keep, w):
    """Widening of both disparities on one resample, from per-row weights with plain weighted bincounts."""
    def gaps(d):
        k = len(keep)
        rows, pos = np.bincount(codes, w, k), np.bincount(codes, w * y, k)
        sel, tp = np.bincount(codes, w * d, k), np.bincount(codes, w * d * y, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = [(sel / rows)[keep], (tp / pos)[keep], ((sel - tp) / (rows - pos))[keep]]
        spread = [np.nanmax(r) - np.nanmin(r) if np.isfinite(r).any() else np.nan for r in rates]
        return spread[0], np.fmax(spread[1], spread[2])
    return np.subtract(gaps(decisions[1]), gaps(decisions[0]))


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_disparity_widening_equals_per_row_weights_on_the_same_draws(frame, labels, fair, seed, threshold):
    from steps.gates.fairness import _labelled, compare_disparities
    from steps.modeling import resampling as rs

    champion = np.clip(fair + np.random.default_rng(seed).normal(0, 0.2, len(fair)), 0, 1)
    cfg = FairnessGates(min_slice_size=300, min_slice_positives=5)
    ours = {r["name"]: r for r in compare_disparities(labels, champion, fair, frame[SENSITIVE], cfg, threshold,
                                                      samples=40, seed=seed, confidence=0.9)}
    y, decisions = labels.astype(float), [(p >= threshold).astype(float) for p in (champion, fair)]
    draws = np.concatenate(list(rs.poisson_chunks(len(y), 40, seed))).astype(float)
    for attribute in SENSITIVE:
        codes, uniques = _labelled(frame[attribute])
        keep = (np.bincount(codes, minlength=len(uniques)) >= 300) & (
            np.bincount(codes, weights=y, minlength=len(uniques)) >= 5)
        in_group_order = np.argsort(codes, kind="stable")  # draw j weighs the j-th row in group order
        spread = np.array([_weighted_widening(y, decisions, codes, keep, w[np.argsort(in_group_order)])
                           for w in draws])
        for j, name in enumerate(("demographic_parity_difference", "equalized_odds_difference")):
            row, finite = ours[f"{name}[{attribute}]"], spread[:, j][np.isfinite(spread[:, j])]
            assert (row["low"], row["high"]) == pytest.approx(tuple(np.quantile(finite, [0.05, 0.95])), abs=1e-12)
            point = _weighted_widening(y, decisions, codes, keep, np.ones(len(y)))[j]
            assert row["widening"] == pytest.approx(point, abs=1e-12)


@pytest.mark.parametrize("threads", [2, 3])
def test_disparity_widening_on_threads_equals_one_thread(monkeypatch, frame, labels, fair, threads):
    from steps.gates.fairness import compare_disparities
    from steps.modeling import resampling as rs

    monkeypatch.setattr(rs, "CHUNK_CELLS", 4 * len(labels))  # 4 resamples a chunk: 10 chunks
    champion = np.clip(fair + np.random.default_rng(2).normal(0, 0.2, len(fair)), 0, 1)
    cfg = FairnessGates(min_slice_size=300, min_slice_positives=5)
    one = compare_disparities(labels, champion, fair, frame[SENSITIVE], cfg, 0.4, samples=40, seed=1)
    assert len(one) == 4 and all(np.isfinite([r["low"], r["high"]]).all() for r in one)
    filters = list(warnings.filters)
    assert compare_disparities(labels, champion, fair, frame[SENSITIVE], cfg, 0.4, samples=40, seed=1,
                               threads=threads) == one
    assert warnings.filters == filters  # no filter left behind by the workers (catch_warnings is process-wide)


def test_a_gap_skips_nan_groups_without_a_warning(monkeypatch):
    from steps.gates.fairness import _gap

    used, real = [], warnings.catch_warnings

    def process_wide(*args, **kwargs):
        used.append(args)
        return real(*args, **kwargs)

    rates = np.array([[0.1, np.nan, 0.4], [np.nan, np.nan, np.nan], [0.2, 0.2, 0.2]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "catch_warnings", process_wide)  # _gap runs on the resamples' worker threads
        gaps = _gap(rates)
        monkeypatch.undo()
    assert not used  # catch_warnings changes every thread's filters: it left its 'ignore' behind under threads
    assert not caught  # and nothing to hide: an all-NaN row gives NaN without a warning
    np.testing.assert_allclose(gaps, [0.3, np.nan, 0.0])


def test_slices_label_every_row_as_the_string_labels_do():
    from steps.gates.fairness import JOIN, MISSING_GROUP, slices

    sensitive = pd.DataFrame({"sex": ["f", "m", None, "f", "m", "x"], "age": [1.0, np.nan, 3.0, 1.0, 2.0, 3.0],
                              "band": pd.array([10, 20, 10, None, 20, 10], dtype="Int64"),
                              "score": np.array([0.1, 0.2, 0.1, 0.1, 0.3, 0.2], dtype=np.float32)})
    labels = sensitive.astype("object").where(sensitive.notna(), MISSING_GROUP).astype(str)
    expected = {name: labels[name] for name in labels.columns}
    expected[JOIN.join(labels.columns)] = labels["sex"].str.cat(labels[["age", "band", "score"]], sep=JOIN)
    got = slices(sensitive, intersections=True)
    assert list(got) == list(expected)
    for name, series in got.items():
        assert series.astype(str).tolist() == expected[name].tolist(), name
        assert list(series.cat.categories) == sorted(set(expected[name])), name
