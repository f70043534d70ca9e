"""Statistics behind the gates: intervals, and champion-versus-challenger tests with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

from steps.core import timing
from steps.modeling import metrics, resampling


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


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.99])
def test_the_two_tests_give_intervals_at_the_configured_confidence(confidence):
    rng = np.random.default_rng(6)
    y = (rng.uniform(size=6000) < 0.05).astype(int)
    shared = rng.normal(size=6000)
    champion, challenger = shared + rng.normal(size=6000) + y, shared + rng.normal(size=6000) + 1.15 * y
    boot = metrics.paired_bootstrap(y, champion, challenger, samples=2000, confidence=confidence)
    analytic = metrics.delong(y, champion, challenger, confidence=confidence)
    assert (analytic.high - analytic.low) / (metrics.delong(y, champion, challenger).high
                                             - metrics.delong(y, champion, challenger).low) == pytest.approx(
        stats.norm.ppf(0.5 + confidence / 2) / stats.norm.ppf(0.975))
    assert (boot.high - boot.low) == pytest.approx(analytic.high - analytic.low, rel=0.25)


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


@pytest.mark.parametrize("decimals", [None, 1, 3])  # continuous scores, heavy ties, some ties
def test_delong_components_equal_the_three_rankdata_definition(decimals):
    y, score = _scores(3000, 1.0, 9, prevalence=0.2)
    score = score if decimals is None else np.round(score, decimals)
    pos, neg = score[y == 1], score[y == 0]
    every = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (every[:pos.size] - stats.rankdata(pos)) / neg.size
    v01 = 1.0 - (every[pos.size:] - stats.rankdata(neg)) / pos.size
    auc, ours10, ours01 = metrics._midrank_auc_components(score, y.astype(bool))
    np.testing.assert_allclose(ours10, v10, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours01, v01, rtol=0, atol=1e-12)
    assert auc == pytest.approx(roc_auc_score(y, score), abs=1e-12)


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
    estimate = metrics.bootstrap_ci(y, s, "roc_auc", samples=200)
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


def _old_recall_at_precision(y, p, precision):
    prec, rec, _ = precision_recall_curve(y, p)
    ok = prec >= precision
    return float(rec[ok].max()) if ok.any() else 0.0


def _old_calibration_error(y, p, bins=10):
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    return float(np.mean(np.abs(observed - predicted)))


SKLEARN = {  # the metrics as scikit-learn (and the implementation before resampling.py) computed them
    "roc_auc": roc_auc_score,
    "average_precision": average_precision_score,
    "log_loss": lambda y, p: log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]),
    "brier": brier_score_loss,
    "recall_at_precision": lambda y, p: _old_recall_at_precision(y, p, 0.5),
    "calibration_error": _old_calibration_error,
}


def _holdout(ties: bool, prevalence: float = 0.1, n: int = 1500, seed: int = 3):
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < prevalence).astype(int)
    p = np.clip(rng.normal(0.2, 0.15, size=n) + 0.3 * y, 0.001, 0.999)
    return y, (np.round(p, 2) if ties else p)


@pytest.mark.parametrize("ties", [True, False], ids=["ties", "distinct"])
@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_each_weighted_metric_at_unit_weights_equals_sklearn(name, ties):
    y, p = _holdout(ties)
    ranked = resampling.rank(y, p)
    value = resampling.point({name: metrics.weighted_metrics()[name]}, ranked)[name]
    assert value == pytest.approx(SKLEARN[name](y, p), abs=1e-12)


@pytest.mark.parametrize("ties", [True, False], ids=["ties", "distinct"])
@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_each_weighted_metric_on_a_resample_equals_sklearn_on_the_repeated_rows(name, ties):
    """A resample's weights mean "this row k times": each metric equals scikit-learn's on the rows repeated."""
    y, p = _holdout(ties, n=600)
    ranked = resampling.rank(y, p)
    weights = next(resampling.poisson_chunks(len(y), 3, seed=2))  # [3, rows] in score order
    values = metrics.weighted_metrics()[name](resampling.Weighted(ranked, weights))
    for row, value in zip(weights, values, strict=True):
        ys, ps = np.repeat(ranked.y.astype(int), row), np.repeat(ranked.p, row)
        assert value == pytest.approx(SKLEARN[name](ys, ps), abs=1e-12)


@pytest.mark.parametrize("prevalence", [0.02, 0.5])
def test_relative_metrics_follow_their_definitions(prevalence):
    y, p = _holdout(False, prevalence, n=4000, seed=11)
    base = y.mean()
    got = resampling.point({n: f for n, f in metrics.weighted_metrics().items() if n in metrics.RELATIVE},
                           resampling.rank(y, p))
    entropy = -(base * np.log(base) + (1 - base) * np.log(1 - base))
    assert got["log_loss_skill"] == pytest.approx(1 - SKLEARN["log_loss"](y, p) / entropy)
    assert got["brier_skill"] == pytest.approx(1 - brier_score_loss(y, p) / (base * (1 - base)))
    assert got["average_precision_skill"] == pytest.approx((average_precision_score(y, p) - base) / (1 - base))
    assert got["recall_at_relative_precision"] == pytest.approx(
        _old_recall_at_precision(y, p, base + 0.25 * (1 - base)))
    assert got["relative_calibration_error"] == pytest.approx(_old_calibration_error(y, p) / p.mean())


def test_a_resample_with_one_class_gives_nan_not_an_error():
    ranked = resampling.rank(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]))
    weights = np.array([[1.0, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1]])  # only negatives; both; both
    auc = resampling.roc_auc(resampling.Weighted(ranked, weights))
    assert np.isnan(auc[0]) and auc[1] == pytest.approx(0.5) and auc[2] == pytest.approx(0.75)


@pytest.mark.parametrize("name", ["roc_auc", "average_precision", "log_loss", "brier", "calibration_error"])
def test_poisson_bootstrap_interval_matches_the_multinomial_bootstrap_of_before(name):
    """Statistically the same interval as scipy.stats.bootstrap (the percentile bootstrap with replacement that
    the gates used before): on 1,500 rows and 2,000 resamples each, the endpoints agree to a tenth of the width."""
    y, p = _holdout(False, 0.1)
    fn = SKLEARN[name]
    old = stats.bootstrap((y, p), lambda yy, pp: fn(yy, pp) if yy.min() != yy.max() else np.nan, paired=True,
                          vectorized=False, n_resamples=2000, confidence_level=0.95, method="percentile",
                          random_state=1).confidence_interval
    new = metrics.bootstrap_ci(y, p, name, samples=2000, seed=1)
    width = old.high - old.low
    assert new.low == pytest.approx(old.low, abs=0.1 * width)
    assert new.high == pytest.approx(old.high, abs=0.1 * width)


@pytest.mark.parametrize("rows", [999, 1000])  # an odd count of 16-bit draws per call leaves half a word unused
def test_smaller_working_chunks_hand_out_the_same_draws(monkeypatch, rows):
    monkeypatch.setattr(resampling, "CHUNK_CELLS", 4 * rows)  # drawn 4 resamples at a time
    drawn = list(resampling.poisson_chunks(rows, 10, seed=1))
    monkeypatch.setattr(resampling, "WORK_CELLS", rows)  # worked on one at a time
    worked = list(resampling.poisson_chunks(rows, 10, seed=1))
    assert [len(c) for c in drawn] == [4, 4, 2] and [len(c) for c in worked] == [1] * 10
    np.testing.assert_array_equal(np.concatenate(worked), np.concatenate(drawn))


@pytest.mark.parametrize("cells", ["CHUNK_CELLS", "WORK_CELLS"])
def test_resample_chunks_do_not_change_the_result(monkeypatch, cells):
    y, p = _holdout(True)
    whole = metrics.performance(y, p, samples=60, seed=5)
    monkeypatch.setattr(resampling, cells, 7 * y.size)  # 7 resamples per chunk (drawn or worked on) instead of all
    chunked = metrics.performance(y, p, samples=60, seed=5)
    for name, estimate in whole.items():  # the same resamples; sums in another grouping differ in the last bits
        assert (chunked[name].low, chunked[name].high) == pytest.approx((estimate.low, estimate.high), abs=1e-12)


def test_a_draw_of_weights_holds_its_own_bytes_not_64_bit_copies(monkeypatch):
    rows = 100_000
    monkeypatch.setattr(resampling, "CHUNK_CELLS", 20 * rows)
    assert next(resampling.poisson_chunks(rows, 20, seed=0)).dtype == np.uint8
    peak_mb = timing.peak_traced_mb(lambda n: next(resampling.poisson_chunks(n, 20, seed=0)), rows)
    # 2 bytes a cell for the 16-bit draw and 1 for the counts; a lookup through 64-bit indices would hold 8 more
    assert peak_mb * 1e6 < 4 * 20 * rows


def test_poisson_table_has_the_moments_of_poisson_one():
    draws = next(resampling.poisson_chunks(200_000, 1, seed=0))[0]
    assert draws.mean() == pytest.approx(1.0, abs=0.01) and draws.var() == pytest.approx(1.0, abs=0.02)
    assert set(np.unique(draws)) <= set(range(9))


@pytest.mark.parametrize("decimals", [None, 2])  # distinct scores, and many ties
def test_integer_weight_auc_is_sklearns_on_the_sample_itself(decimals):
    y, p = _scores(5000, 1.0, 3)
    p = 1 / (1 + np.exp(-p))
    p = np.round(p, decimals) if decimals is not None else p
    index = resampling.auc_index(y, p)
    ones = np.ones((1, int((y == 0).sum())), dtype=np.uint8), np.ones((1, int(y.sum())), dtype=np.uint8)
    assert resampling._weighted_auc(index, *ones)[0] == pytest.approx(roc_auc_score(y, p), abs=1e-12)


@pytest.mark.parametrize("decimals", [None, 2])
def test_paired_auc_differences_agree_with_the_generic_bootstrap(decimals):
    y, a = _scores(6000, 1.0, 5)
    b = a + 0.3 * np.random.default_rng(6).normal(size=a.size)
    if decimals is not None:
        a, b = np.round(a, decimals), np.round(b, decimals)
    fast = resampling.paired_auc_differences(y, a, b, 2000, 0)
    generic = resampling.paired_differences(resampling.roc_auc, resampling.rank(y, a), resampling.rank(y, b), 2000, 1)
    assert fast.size == 2000
    assert np.mean(fast) == pytest.approx(np.mean(generic), abs=0.15 * np.std(generic))
    assert np.std(fast) == pytest.approx(np.std(generic), rel=0.1)
    assert np.quantile(fast, [0.025, 0.975]) == pytest.approx(np.quantile(generic, [0.025, 0.975]),
                                                             abs=0.2 * np.std(generic))


def test_resamples_run_blas_on_one_thread():
    """Small products on several BLAS threads only wait on each other (5-15x slower on a busy 2-core box)."""
    from threadpoolctl import threadpool_info

    seen = []

    def probe(s):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return resampling.roc_auc(s)

    from threadpoolctl import threadpool_limits

    y, p = _holdout(False)
    ranked = resampling.rank(y, p)
    with threadpool_limits(limits=2, user_api="blas"):  # two outside, as on a 2-core box
        resampling.distributions({"auc": probe}, ranked, 5, seed=0)
        resampling.distributions({"auc": probe}, ranked, 5, seed=0, threads=2)  # the workers too
        resampling.paired_differences(probe, ranked, resampling.rank(y, p[::-1].copy()), 5, seed=0)
    assert seen and all(threads == {1} for threads in seen)


@pytest.mark.parametrize("threads", [2, 3])
def test_resamples_on_threads_give_the_values_of_one_thread(monkeypatch, threads):
    y, p = _holdout(True)
    monkeypatch.setattr(resampling, "CHUNK_CELLS", 3 * y.size)  # 3 resamples a chunk: 14 chunks for 40 resamples
    chosen = metrics.weighted_metrics()
    ranked = resampling.rank(y, p)
    one = resampling.distributions(chosen, ranked, 40, seed=3)
    many = resampling.distributions(chosen, resampling.rank(y, p), 40, seed=3, threads=threads)
    for name in chosen:  # the same draws in the same order: equal to the last bit, not only close
        assert np.array_equal(many[name], one[name], equal_nan=True), name
    estimates = metrics.performance(y, p, samples=40, seed=3, threads=threads)
    assert estimates == metrics.performance(y, p, samples=40, seed=3)


def test_map_chunks_works_on_chunks_at_once_in_order_and_holds_a_bounded_number():
    import threading

    both = threading.Barrier(2, timeout=10)  # chunks 1 and 2 must be worked on at the same time to pass it
    first_done = threading.Event()
    drawn, finished, held = [0], [0], []
    lock = threading.Lock()

    def chunks():
        for i in range(12):
            with lock:
                drawn[0] += 1
                held.append(drawn[0] - finished[0])  # chunks drawn and not yet finished, this one included
            yield np.full(3, i)

    def work(chunk):
        i = int(chunk[0])
        assert i == 0 or first_done.is_set()  # the first chunk alone, before any thread starts
        if i in (1, 2):
            both.wait()
        with lock:
            finished[0] += 1
        first_done.set()
        return i, threading.get_ident()

    out = resampling.map_chunks(work, chunks(), threads=2)
    assert [i for i, _ in out] == list(range(12))
    assert len({ident for _, ident in out[1:]}) == 2
    assert max(held) == 2  # one being worked on and the one being drawn: never more than the threads


def test_map_chunks_passes_a_failure_on_and_handles_no_chunks():
    def work(chunk):
        if chunk[0] == 4:
            raise ValueError("chunk 4")
        return chunk[0]

    with pytest.raises(ValueError, match="chunk 4"):
        resampling.map_chunks(work, (np.full(2, i) for i in range(8)), threads=2)
    assert resampling.map_chunks(work, iter(()), threads=2) == []
