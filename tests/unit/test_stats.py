"""Statistics behind the gates: intervals, and champion-versus-challenger tests with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from steps.modeling import metrics


def _scores(n: int, signal: float, seed: int, prevalence: float = 0.05):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < prevalence).astype(int)
    return y, rng.normal(size=n) + signal * y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["paired_bootstrap", "delong"])
def test_identical_models_are_never_significant(seed, method):
    y, a = _scores(4000, 1.0, seed)
    result = metrics.paired_bootstrap(y, a, a.copy(), samples=200) if method == "paired_bootstrap" \
        else metrics.delong(y, a, a.copy())
    assert result.difference == 0.0
    assert result.p_value >= 0.5
    assert not result.significant(alpha=0.05, min_effect=0.0)


@pytest.mark.parametrize("method", ["paired_bootstrap", "delong"])
def test_a_clearly_better_model_is_significant(method):
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=5000) < 0.05).astype(int)
    champion = rng.normal(size=5000) + 0.6 * y
    challenger = rng.normal(size=5000) + 1.6 * y
    result = metrics.paired_bootstrap(y, champion, challenger, samples=300) if method == "paired_bootstrap" \
        else metrics.delong(y, champion, challenger)
    assert result.difference > 0.1 and result.low > 0
    assert result.significant(alpha=0.05, min_effect=0.01)


def test_a_worse_challenger_is_not_significant_and_has_negative_difference():
    y, champion = _scores(5000, 1.5, 4)
    rng = np.random.default_rng(5)
    challenger = champion + rng.normal(scale=2.0, size=champion.size)  # champion plus noise: strictly worse
    results = (metrics.paired_bootstrap(y, champion, challenger, samples=200), metrics.delong(y, champion, challenger))
    for result in results:
        assert result.difference < 0 and result.p_value > 0.5


def test_min_effect_blocks_a_significant_but_tiny_gain():
    comparison = metrics.Comparison("roc_auc", 0.80, 0.801, 0.001, 0.0005, 0.0015, 0.001, "delong")
    assert comparison.significant(alpha=0.05, min_effect=0.0)
    assert not comparison.significant(alpha=0.05, min_effect=0.002)


@pytest.mark.parametrize("gap", [0.0, 0.15, 0.4])
def test_paired_bootstrap_agrees_with_delong(gap):
    rng = np.random.default_rng(6)
    y = (rng.uniform(size=6000) < 0.05).astype(int)
    shared = rng.normal(size=6000)
    champion = shared + rng.normal(size=6000) + 1.0 * y
    challenger = shared + rng.normal(size=6000) + (1.0 + gap) * y
    boot = metrics.paired_bootstrap(y, champion, challenger, samples=1000)
    analytic = metrics.delong(y, champion, challenger)
    assert boot.difference == pytest.approx(analytic.difference, abs=1e-9)
    assert boot.p_value == pytest.approx(analytic.p_value, abs=0.06)
    assert (boot.high - boot.low) == pytest.approx(analytic.high - analytic.low, rel=0.25)


def test_delong_variance_matches_a_monte_carlo_simulation():
    """The analytic standard error of the AUC difference equals the spread over independent hold-outs."""
    diffs, ses = [], []
    for seed in range(200):
        rng = np.random.default_rng(100 + seed)
        y = (rng.uniform(size=1500) < 0.1).astype(int)
        shared = rng.normal(size=1500)
        a = shared + rng.normal(size=1500) + 1.0 * y
        b = shared + rng.normal(size=1500) + 1.2 * y
        result = metrics.delong(y, a, b)
        diffs.append(result.difference)
        ses.append((result.high - result.low) / (2 * 1.959964))
    assert np.mean(ses) == pytest.approx(np.std(diffs), rel=0.15)


def test_delong_false_positive_rate_is_near_alpha_under_the_null():
    rejections = 0
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        y = (rng.uniform(size=800) < 0.15).astype(int)
        a = rng.normal(size=800) + 1.0 * y
        b = rng.normal(size=800) + 1.0 * y  # equally good, different errors
        rejections += metrics.delong(y, a, b).p_value < 0.05
    assert 0.01 <= rejections / 300 <= 0.10


def test_bootstrap_interval_covers_the_point_and_agrees_with_sklearn():
    y, s = _scores(3000, 1.0, 7)
    estimate = metrics.bootstrap_ci(y, s, metrics.metric_functions()["roc_auc"], samples=200)
    assert estimate.point == pytest.approx(roc_auc_score(y, s))
    assert estimate.low < estimate.point < estimate.high
    assert estimate.high - estimate.low < 0.1


@pytest.mark.parametrize("precision", [0.99, 0.5, 1.01])
def test_recall_at_precision(precision):
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    # thresholds: top-2 -> precision 1.0 recall 2/3; top-4 -> precision 0.75 recall 1.0
    value = metrics.recall_at_precision(y, p, precision)
    assert value == pytest.approx({0.99: 2 / 3, 0.5: 1.0, 1.01: 0.0}[precision])


def test_calibration_error_is_small_for_calibrated_scores_and_large_for_shifted_ones():
    rng = np.random.default_rng(8)
    p = rng.uniform(0.01, 0.3, size=20000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    assert metrics.calibration_error(y, p) < 0.01
    assert metrics.calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15


SKLEARN = {
    "roc_auc": roc_auc_score,
    "log_loss": lambda y, p: log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]),
    "brier": brier_score_loss,
}


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_rowwise_metrics_equal_sklearn_row_by_row(name):
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=(5, 400)) < 0.1).astype(int)
    p = np.round(np.clip(rng.normal(0.2, 0.15, size=y.shape) + 0.3 * y, 0, 1), 2)  # rounded: many ties
    fn = metrics.metric_functions()[name]
    rows = fn(y, p, axis=-1)
    assert rows.shape == (5,)
    assert rows == pytest.approx([SKLEARN[name](y[i], p[i]) for i in range(5)], abs=1e-12)
    assert fn(y[0], p[0]) == pytest.approx(SKLEARN[name](y[0], p[0]), abs=1e-12)


def test_rowwise_auc_is_nan_for_a_resample_with_one_class():
    y = np.array([[0, 0, 0, 0], [0, 1, 0, 1], [1, 1, 1, 1]])
    p = np.array([[0.1, 0.2, 0.3, 0.4]] * 3)
    auc = metrics.roc_auc(y, p)
    assert np.isnan(auc[0]) and np.isnan(auc[2]) and auc[1] == pytest.approx(0.75)  # 3 of 4 pairs ordered


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_vectorized_bootstrap_equals_the_one_resample_at_a_time_bootstrap(name):
    y, s = _scores(2000, 1.0, 9)
    p = 1 / (1 + np.exp(-(s - 3)))
    fn = metrics.metric_functions()[name]
    fast = metrics.bootstrap_ci(y, p, fn, samples=150, seed=4)
    slow = metrics.bootstrap_ci(y, p, lambda yy, pp: fn(yy, pp), samples=150, seed=4)  # a plain callable: not rowwise
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-12)
