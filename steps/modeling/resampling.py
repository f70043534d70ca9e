"""Bootstrap intervals whose cost is linear in the hold-out: scores sorted once, resamples as Poisson weights.

A bootstrap resample draws every row k ~ Poisson(1) times (the Poisson bootstrap: the same limit distribution as
drawing n rows with replacement). Every metric here is a function of weighted sums over rows in one fixed order, the
hold-out sorted by score once, so a resample never re-sorts. A chunk of resamples (about ``WORK_CELLS`` weights, so
memory stays flat whatever the hold-out size) costs one integer cumulative sum of its 1-byte weights; everything
else reads few positions: ROC AUC, average precision and recall at a precision only change at the tie groups (rows
with equal scores) that hold a positive, so they read the cumulative weight there and the positives' own weights;
log loss, Brier score and the mean score are one matrix-vector product each; the calibration error reads the
cumulative weights at its quantile edges and one dot product per bin. All metrics of a resample share its sums
(``Weighted``). Poisson(1) counts come from a 16-bit inverse-CDF table (exact to 2^-16 in probability), an order of
magnitude cheaper than drawing them one by one.

The point estimate of each metric uses weight 1 for every row and equals scikit-learn's; a resample's value equals
scikit-learn's on its rows repeated by their weights (both tested).

The products are small (a dot product per bin, a matrix-vector product per chunk), so BLAS runs them on one thread
(``one_blas_thread``): on two cores with other work running, OpenBLAS's threads made 200 resamples of 150k rows
take 1.8-5.2 s instead of 0.3 s.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

CHUNK_CELLS = 4_000_000  # weights drawn per call of the generator (changing it changes the draws)
WORK_CELLS = 500_000  # weights per chunk worked on: a worker's working set is ~13 bytes a weight (2M took the same
# time for 200 resamples of 150k-1.5M rows on two threads, with ~45 MiB more peak RSS at 150k rows)
EPS = 1e-15
T = TypeVar("T")
# the Poisson(1) inverse CDF at the midpoints of 65,536 equal slices of [0, 1]: entry u is the smallest k whose CDF
# exceeds (u + 0.5) / 65536 (0 to 8; k >= 9 has probability 1e-6 and falls in the last slice's value). Looked up by
# indexing, not ``np.take``: take casts the 16-bit indices to 64 bits first (+31 MiB for a 4M-weight draw).
_POISSON_TABLE = np.searchsorted(stats.poisson.cdf(np.arange(32), 1.0), (np.arange(65536) + 0.5) / 65536,
                                 side="right").astype(np.uint8)


@dataclass(frozen=True)
class Ranked:
    """A hold-out sorted by score (ascending) once, with its tie groups: what every weighted metric reads."""

    y: np.ndarray  # labels (float 0/1) in score order
    p: np.ndarray  # scores, ascending
    ends: np.ndarray  # last position of each group of equal scores (ascending)
    order: np.ndarray  # original row index of each sorted position

    @property
    def rows(self) -> int:
        """Rows in the hold-out."""
        return int(self.y.size)

    @cached_property
    def positive_rows(self) -> np.ndarray:
        """Positions of the positive rows."""
        return np.flatnonzero(self.y)

    @cached_property
    def hits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The tie groups that hold a positive, the only ones where ranking metrics can change (a group without
        positive weight adds nothing to AUC or average precision, and its threshold is dominated by the next one):
        their first and last positions, and where each group's run of positive rows starts among
        ``positive_rows`` (None when every such group holds one positive row)."""
        group = np.searchsorted(self.ends, self.positive_rows)  # the tie group of each positive row
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else np.zeros(0, dtype=np.int64)
        hit = group[starts]
        first = np.where(hit > 0, self.ends[np.maximum(hit - 1, 0)] + 1, 0)
        return first, self.ends[hit], None if starts.size == group.size else starts

    @cached_property
    def log_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """The log loss of a row if it were negative and, at the tie groups that hold a positive, what being positive
        adds (scores clipped as scikit-learn): what :meth:`Weighted.mean_of` reads, one array a row instead of two."""
        p = np.clip(self.p, EPS, 1 - EPS)
        if_negative = -np.log1p(-p)
        _, last, _ = self.hits
        return -np.log(p[last]) - if_negative[last], if_negative

    @cached_property
    def squared_errors(self) -> tuple[np.ndarray, np.ndarray]:
        """The squared error of a row if it were negative and, at the tie groups that hold a positive, what being
        positive adds (as :attr:`log_losses`)."""
        _, last, _ = self.hits
        return (self.p[last] - 1.0) ** 2 - self.p[last] ** 2, self.p ** 2


def rank(y: np.ndarray, p: np.ndarray) -> Ranked:
    """Sort ``(y, p)`` by score and find the groups of tied scores."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    ends = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True]) if ps.size else np.zeros(0, dtype=np.int64)
    return Ranked(np.asarray(y, dtype=np.float64)[order], ps, ends, order)


def poisson_chunks(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Poisson(1) weights as 1-byte integers, ``[b, rows]`` per chunk, ``resamples`` rows of weights in all
    (deterministic per seed). Drawn about ``CHUNK_CELLS`` weights at a time (the generator's calls, and so the
    draws, as before ``WORK_CELLS``), handed out about ``WORK_CELLS`` at a time: what a worker holds is half. The
    metrics' products grouped by chunk may differ from a larger chunk's in the last bits (~1e-16), not more."""
    rng = np.random.default_rng(seed)
    per_draw = max(1, CHUNK_CELLS // max(rows, 1))
    per_chunk = max(1, WORK_CELLS // max(rows, 1))
    done = 0
    while done < resamples:
        b = min(per_draw, resamples - done)
        drawn = _POISSON_TABLE[rng.integers(0, 65536, size=(b, rows), dtype=np.uint16)]
        yield from (drawn[i:i + per_chunk] for i in range(0, b, per_chunk))
        done += b


def _cumulative(w: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums of weights, in 32-bit integers when 1-byte counts cannot overflow them."""
    if w.dtype == np.uint8 and w.shape[1] * (int(w.max()) if w.size else 0) < 2**31:  # the sums fit 32 bits
        return np.cumsum(w, axis=1, dtype=np.int32)
    return np.cumsum(w, axis=1, dtype=np.int64 if np.issubdtype(w.dtype, np.integer) else np.float64)


def _before(cumulative: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``cumulative`` summed over the positions before each of ``positions`` (0 before the first)."""
    return np.where(positions > 0, cumulative[..., np.maximum(positions - 1, 0)], 0)


class _per_chunk(Generic[T]):  # noqa: N801 - used as a decorator, like functools.cached_property
    """``functools.cached_property`` without its lock: on Python 3.11 that lock is one per property for every
    instance, so the threads of :func:`map_chunks` would compute their own chunks' sums one at a time. Each chunk's
    ``Weighted`` is used by one thread only."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> T:
        value: T = self.fn(obj)
        obj.__dict__[self.name] = value  # read from the instance from now on (a non-data descriptor)
        return value


class Weighted:
    """One chunk of resamples ``[b, rows]`` of a ranked hold-out (weights in score order) and the sums every metric
    reads: one integer cumulative sum of the weights over all rows, and the positive weight of each tie group that
    holds a positive (``Ranked.hits``) with its cumulative sum over those groups only. Ranking metrics read the
    positive groups; means are one matrix-vector product; nothing is summed per tie group of the whole hold-out."""

    def __init__(self, r: Ranked, w: np.ndarray) -> None:
        w = np.asarray(w)
        if w.dtype.kind == "f" and w.size and np.array_equal(w, np.round(w)) and 0 <= w.min() and w.max() < 256:
            w = w.astype(np.uint8)  # whole-number weights (a caller's float ones) take the integer path
        self.r, self.w, self.b = r, w, w.shape[0]
        self.cum_every = _cumulative(w)
        first, _, runs = r.hits
        on_positives = w[:, r.positive_rows]
        self.pos_hit = on_positives if runs is None else np.add.reduceat(
            on_positives, runs, axis=1, dtype=self.cum_every.dtype)
        self.cum_pos_hit = _cumulative(self.pos_hit)
        self.every_before_hit = _before(self.cum_every, first)  # all weight below each positive group

    @_per_chunk
    def total(self) -> np.ndarray:
        """Total weight per resample."""
        return self.cum_every[:, -1].astype(np.float64) if self.r.rows else np.zeros(self.b)

    @_per_chunk
    def positives(self) -> np.ndarray:
        """Positive weight per resample."""
        return self.cum_pos_hit[:, -1].astype(np.float64) if self.cum_pos_hit.shape[1] else np.zeros(self.b)

    @_per_chunk
    def negatives(self) -> np.ndarray:
        """Negative weight per resample."""
        return self.total - self.positives

    @_per_chunk
    def prevalence(self) -> np.ndarray:
        """The base rate of each resample."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.positives / self.total

    @_per_chunk
    def at_hits(self) -> dict[str, np.ndarray]:
        """At the tie groups holding a positive: positive and negative weight, negative weight below, true positives
        and precision when flagging that group and every higher score."""
        _, last, _ = self.r.hits
        pos = self.pos_hit.astype(np.float64)
        neg = self.cum_every[:, last] - self.every_before_hit - pos
        pos_below = self.cum_pos_hit - pos
        tp = self.positives[:, None] - pos_below
        flagged = self.total[:, None] - self.every_before_hit
        precision = np.ones_like(tp)
        np.divide(tp, flagged, out=precision, where=flagged > 0)
        return {"pos": pos, "neg": neg, "below": self.every_before_hit - pos_below, "tp": tp, "precision": precision}

    @_per_chunk
    def w_f(self) -> np.ndarray:
        """The weights as floats (what matrix products read)."""
        return self.w.astype(np.float64)

    def mean(self, if_positive: np.ndarray, if_negative: np.ndarray) -> np.ndarray:
        """Weighted mean per resample of a per-row value that depends on the label and the score: ``if_positive`` and
        ``if_negative`` are its values per row (in score order) for either label; tied rows share them."""
        _, last, _ = self.r.hits
        return self.mean_of(if_positive[last] - if_negative[last], if_negative)

    def mean_of(self, positive_extra: np.ndarray, if_negative: np.ndarray) -> np.ndarray:
        """:meth:`mean` from the value of every row if negative and, at each tie group holding a positive (its last
        row), what a positive adds to it."""
        sums = self.w_f @ if_negative + self.pos_hit @ positive_extra
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.total > 0, sums / self.total, np.nan)


def roc_auc(s: Weighted) -> np.ndarray:
    """ROC AUC: P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    h = s.at_hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((s.positives > 0) & (s.negatives > 0),
                        (h["pos"] * (h["below"] + 0.5 * h["neg"])).sum(axis=1) / (s.positives * s.negatives), np.nan)


def average_precision(s: Weighted) -> np.ndarray:
    """Average precision, scikit-learn's step sum over thresholds."""
    h = s.at_hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s.positives > 0, (h["pos"] * h["precision"]).sum(axis=1) / s.positives, np.nan)


def recall_at_precision(s: Weighted, target: float | np.ndarray) -> np.ndarray:
    """The highest recall at a threshold whose precision is at least ``target`` (0 if none)."""
    h = s.at_hits
    bar = np.broadcast_to(np.asarray(target, dtype=float), (s.b,))[:, None]
    reach = np.where(h["precision"] >= bar - 1e-12, h["tp"], 0.0).max(axis=1, initial=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s.positives > 0, reach / s.positives, np.nan)


def log_loss(s: Weighted) -> np.ndarray:
    """Binary cross-entropy (scores clipped to [1e-15, 1 - 1e-15], as scikit-learn)."""
    return s.mean_of(*s.r.log_losses)


def brier(s: Weighted) -> np.ndarray:
    """Mean squared error of the scores."""
    return s.mean_of(*s.r.squared_errors)


def log_loss_skill(s: Weighted) -> np.ndarray:
    """1 - log loss / the log loss of always predicting the base rate (0: no better than the base rate)."""
    pi = np.clip(s.prevalence, EPS, 1 - EPS)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - log_loss(s) / -(pi * np.log(pi) + (1 - pi) * np.log1p(-pi))


def brier_skill(s: Weighted) -> np.ndarray:
    """1 - Brier score / the Brier score of always predicting the base rate."""
    pi = s.prevalence
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - brier(s) / (pi * (1 - pi))


def average_precision_skill(s: Weighted) -> np.ndarray:
    """(average precision - base rate) / (1 - base rate): 0 for a random ranking, 1 for a perfect one."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (average_precision(s) - s.prevalence) / (1 - s.prevalence)


def recall_at_relative_precision(s: Weighted, lift: float) -> np.ndarray:
    """Recall at precision ``base rate + lift x (1 - base rate)``: a precision bar that means the same on any base
    rate (lift 0.25: a quarter of the way from flagging at random to flagging only positives)."""
    return recall_at_precision(s, s.prevalence + lift * (1 - s.prevalence))


def _quantile_edges(p: np.ndarray, cum: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges of ``bins`` quantile bins of the sorted scores ``p`` with integer weights whose cumsum is ``cum``;
    equal to ``np.percentile`` (linear) of the rows repeated by their weights, without repeating them."""
    q = np.linspace(0, 1, bins + 1)[1:-1] * 100 / 100  # the quantiles as scikit-learn hands them to NumPy (percent)
    h = (cum[-1] - 1) * q
    lo = np.floor(h)
    whole = lo.astype(cum.dtype)  # searching with another dtype would copy ``cum`` into it first
    value_lo = p[np.minimum(np.searchsorted(cum, whole, side="right"), p.size - 1)]
    value_hi = p[np.minimum(np.searchsorted(cum, whole + 1, side="right"), p.size - 1)]
    t, gap = h - lo, value_hi - value_lo  # NumPy's interpolation, to the last bit (an edge can equal a score)
    return np.where(t >= 0.5, value_hi - gap * (1 - t), value_lo + gap * t)


def calibration_error(s: Weighted, bins: int = 10) -> np.ndarray:
    """Mean |observed rate - mean score| over the non-empty quantile bins (scikit-learn's ``calibration_curve`` with
    ``strategy="quantile"``: edges are quantiles of the scores, tied scores share a bin).

    Scores are sorted, so each bin is a run of rows: its weight comes from the cumulative weights, its positive weight
    from that of the positive groups, its score sum from one dot product per bin.
    """
    out = np.full(s.b, np.nan)
    p, (_, last, _) = s.r.p, s.r.hits
    for i in range(s.b):
        cum = s.cum_every[i]
        if s.r.rows == 0 or cum[-1] <= 0:
            continue
        ends = np.r_[np.searchsorted(p, _quantile_edges(p, cum, bins), side="right"), p.size]  # past each bin
        weight = np.diff(_before(cum, ends), prepend=0)
        observed = np.diff(np.r_[0, s.cum_pos_hit[i]][np.searchsorted(last, ends)], prepend=0)
        predicted = np.array([s.w_f[i, a:b] @ p[a:b] for a, b in itertools.pairwise(np.r_[0, ends])])
        present = weight > 0
        out[i] = float(np.mean(np.abs(observed[present] - predicted[present]) / weight[present]))
    return out


def relative_calibration_error(s: Weighted, bins: int = 10) -> np.ndarray:
    """The calibration error on the model's own scale: divided by its mean score."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return calibration_error(s, bins) / s.mean(s.r.p, s.r.p)


WeightedMetric = Callable[[Weighted], np.ndarray]


def point(metrics: dict[str, WeightedMetric], r: Ranked) -> dict[str, float]:
    """Each metric on the hold-out itself (every weight 1)."""
    s = Weighted(r, np.ones((1, r.rows), dtype=np.uint8))
    return {name: float(metric(s)[0]) for name, metric in metrics.items()}


def one_blas_thread() -> threadpool_limits:
    """BLAS on one thread for the resamples' small products (threads only wait on each other there)."""
    return threadpool_limits(limits=1, user_api="blas")


def map_chunks(fn: Callable[[np.ndarray], T], chunks: Iterable[np.ndarray], threads: int = 1) -> list[T]:
    """``fn`` of every chunk of resamples, in order, with BLAS on one thread.

    With ``threads`` > 1, chunks are worked on by that many threads while the next one is drawn: the draws stay in
    order (one generator), so the results equal one thread's, and at most ``threads`` chunks are held at once (those
    being worked on and the one being drawn), each with its working set (about 13 bytes a cell: the weights as
    floats and their integer cumulative sums). The first chunk is worked on alone, so whatever ``fn`` caches on
    shared objects (``Ranked``'s properties) exists before the threads start. NumPy releases the GIL in the large
    array operations: 200 resamples of 1.5M rows on two threads took 3.9-4.1 s instead of 5.5 s for the performance
    metrics, 3.2 s instead of 5.4 s for the disparities. A failure cancels the chunks not yet started.
    """
    with one_blas_thread():
        it = iter(chunks)
        first = next(it, None)
        if first is None:
            return []
        out = [fn(first)]
        del first
        if threads <= 1:
            return out + [fn(chunk) for chunk in it]
        pending: deque[Future[T]] = deque()
        with ThreadPoolExecutor(threads) as pool:
            try:
                for chunk in it:
                    pending.append(pool.submit(fn, chunk))
                    if len(pending) >= threads:
                        out.append(pending.popleft().result())
                out.extend(f.result() for f in pending)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        return out


def distributions(metrics: dict[str, WeightedMetric], r: Ranked, resamples: int, seed: int,
                  threads: int = 1) -> dict[str, np.ndarray]:
    """Each metric on the same ``resamples`` Poisson-weighted resamples (one pass over the weights, chunks of them on
    ``threads`` threads: the same values on any number)."""
    def chunk(w: np.ndarray) -> dict[str, np.ndarray]:
        s = Weighted(r, w)
        return {name: metric(s) for name, metric in metrics.items()}

    parts = map_chunks(chunk, poisson_chunks(r.rows, resamples, seed), threads)
    return {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0) for name in metrics}


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of the finite ``values`` (NaN, NaN when there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def paired_differences(metric: WeightedMetric, a: Ranked, b: Ranked, resamples: int, seed: int) -> np.ndarray:
    """``metric(b) - metric(a)`` on the same resamples of the same rows (each model sorted by its own scores).

    Weights are drawn in ``a``'s score order and carried to ``b``'s (one gather per chunk).
    """
    to_b = np.argsort(a.order)[b.order]  # position in a's order of each row in b's order
    with one_blas_thread():
        out = [metric(Weighted(b, w[:, to_b])) - metric(Weighted(a, w))
               for w in poisson_chunks(a.rows, resamples, seed)]
    return np.concatenate(out) if out else np.zeros(0)


@dataclass(frozen=True)
class AucIndex:
    """One model's scores seen from the negatives: their order by score, and for each positive how many negatives
    score below it (``lo``) and at most equal to it (``hi``)."""

    order: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def auc_index(y: np.ndarray, p: np.ndarray) -> AucIndex:
    """Sort the negatives' scores once and place every positive among them."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=np.float64)
    neg_scores = p[~y]
    order = np.argsort(neg_scores, kind="stable")
    ranked = neg_scores[order]
    return AucIndex(order, np.searchsorted(ranked, p[y], "left"), np.searchsorted(ranked, p[y], "right"))


def _weighted_auc(index: AucIndex, w_neg: np.ndarray, w_pos: np.ndarray) -> np.ndarray:
    """ROC AUC per resample from integer weights of the negatives (in ``index``'s score order) and the positives."""
    below = np.zeros((w_neg.shape[0], w_neg.shape[1] + 1), dtype=np.int32)  # < 2^31: at most 8 per row
    np.cumsum(w_neg, axis=1, out=below[:, 1:])
    pairs = (w_pos * (np.take(below, index.lo, axis=1) + np.take(below, index.hi, axis=1))).sum(axis=1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):  # pairs: negatives below plus half the ties
        return pairs / (w_pos.sum(axis=1, dtype=np.float64) * below[:, -1])


def _small_poisson(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Poisson(1) counts ``[rows, cols]`` as uint8: four 16-bit table indices from each raw 64-bit draw."""
    raw = rng.bit_generator.random_raw(-(-rows * cols // 4)).view(np.uint16)[:rows * cols]
    return _POISSON_TABLE[raw].reshape(rows, cols)


def paired_auc_differences(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, resamples: int,
                           seed: int) -> np.ndarray:
    """``roc_auc(b) - roc_auc(a)`` on the same Poisson(1) resamples, ``resamples`` of them.

    The AUC only needs, per positive, the weight of the negatives below it: negatives are sorted once per model, a
    resample's weights are 1-byte integers drawn separately for negatives and positives, and each model costs one
    integer cumulative sum over the negatives (weights are drawn in ``a``'s order and gathered once into ``b``'s):
    several times cheaper than the generic :func:`paired_differences`, and tested to agree with it in distribution.
    """
    y = np.asarray(y).astype(bool)
    a, b = auc_index(y, p_a), auc_index(y, p_b)
    to_b = np.argsort(a.order)[b.order]  # position in a's order of each negative in b's order
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_CELLS // max(y.size, 1))
    out, done = [], 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        w_neg, w_pos = _small_poisson(rng, k, n_neg), _small_poisson(rng, k, n_pos)
        out.append(_weighted_auc(b, np.take(w_neg, to_b, axis=1), w_pos) - _weighted_auc(a, w_neg, w_pos))
        done += k
    return np.concatenate(out) if out else np.zeros(0)
