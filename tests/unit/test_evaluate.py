"""steps/modeling/metrics.py: scores against known values, curve thinning and winner selection."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from steps.modeling import metrics

Y = np.array([0, 0, 1, 1])


@pytest.mark.parametrize("proba, roc_auc, average_precision", [
    ([0.1, 0.2, 0.8, 0.9], 1.0, 1.0),           # perfect ranking
    ([0.9, 0.8, 0.2, 0.1], 0.0, 5 / 12),        # inverted ranking: (1/3 + 2/4) / 2
    ([0.5, 0.5, 0.5, 0.5], 0.5, 0.5),           # no information
    ([0.1, 0.6, 0.4, 0.9], 0.75, 0.8333333333333333),
])
def test_ranking_metrics(proba: list[float], roc_auc: float, average_precision: float) -> None:
    s = metrics.scores(Y, np.array(proba))
    assert s["roc_auc"] == pytest.approx(roc_auc)
    assert s["average_precision"] == pytest.approx(average_precision)
    assert s["rows"] == 4 and s["positive_rate"] == 0.5


def test_probability_metrics_known_values() -> None:
    s = metrics.scores(np.array([0, 1]), np.array([0.2, 0.8]))
    assert s["log_loss"] == pytest.approx(-math.log(0.8))
    assert s["brier"] == pytest.approx(0.04)
    assert s["neg_log_loss"] == -s["log_loss"] and s["neg_brier"] == -s["brier"]
    assert set(s) == {"roc_auc", "average_precision", "log_loss", "brier", "positive_rate", "rows", "neg_log_loss",
                      "neg_brier"}
    assert all(isinstance(v, float) for k, v in s.items() if k != "rows") and isinstance(s["rows"], int)


def test_confident_mistakes_give_finite_log_loss() -> None:
    s = metrics.scores(np.array([0, 1]), np.array([1.0, 0.0]))
    assert math.isfinite(s["log_loss"]) and s["log_loss"] > 30  # clipped at 1e-15, not infinite
    assert s["brier"] == pytest.approx(1.0)


def test_boolean_and_list_inputs() -> None:
    s = metrics.scores([False, True, True], [0.3, 0.7, 0.9])
    assert s["roc_auc"] == 1.0 and s["positive_rate"] == pytest.approx(2 / 3)


def test_single_class_roc_auc_is_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = metrics.scores(np.zeros(5, dtype=int), np.linspace(0.1, 0.5, 5))
    assert math.isnan(s["roc_auc"])
    assert s["positive_rate"] == 0.0


@pytest.mark.parametrize("n, points", [(1000, 200), (5000, 10), (300, 50), (40, 200)])
def test_curves_are_thinned_to_at_most_points(n: int, points: int) -> None:
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    proba = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
    c = metrics.curves(y, proba, points)
    for name, (xs, ys) in {"roc": ("fpr", "tpr"), "pr": ("recall", "precision")}.items():
        x, v = c[name][xs], c[name][ys]
        assert len(x) == len(v) <= points
        assert len(x) >= min(points, 3)
        assert all(isinstance(val, float) for val in x + v)
        assert np.all(np.diff(x) >= 0), name  # x ascends
    assert (c["roc"]["fpr"][0], c["roc"]["tpr"][0]) == (0.0, 0.0)
    assert (c["roc"]["fpr"][-1], c["roc"]["tpr"][-1]) == (1.0, 1.0)
    assert c["pr"]["recall"][0] == 0.0 and c["pr"]["recall"][-1] == 1.0


def test_short_curves_are_kept_whole() -> None:
    c = metrics.curves(Y, np.array([0.1, 0.2, 0.8, 0.9]), points=200)
    assert c["roc"] == {"fpr": [0.0, 0.0, 0.0, 1.0], "tpr": [0.0, 0.5, 1.0, 1.0]}
    assert c["pr"]["precision"][-1] == 0.5 and c["pr"]["recall"][-1] == 1.0


@pytest.mark.parametrize("results, metric, expected", [
    ({"a": {"m": 0.7}, "b": {"m": 0.9}, "c": {"m": 0.8}}, "m", "b"),
    ({"zeta": {"m": 0.9}, "alpha": {"m": 0.9}, "mid": {"m": 0.5}}, "m", "alpha"),   # tie: first by name
    ({"b": {"m": 0.9}, "a": {"m": 0.9}}, "m", "a"),
    ({"x": {"neg_log_loss": -0.3}, "y": {"neg_log_loss": -0.1}}, "neg_log_loss", "y"),
    ({"only": {"m": 0.1}}, "m", "only"),
    ({"a": {"m": float("nan")}, "b": {"m": 0.6}}, "m", "b"),   # NaN never wins
    ({"b": {"m": float("nan")}, "c": {"m": 0.1}, "a": {"m": float("nan")}}, "m", "c"),
    ({"b": {"m": float("nan")}, "a": {"m": float("nan")}}, "m", "a"),
])
def test_select_best(results: dict, metric: str, expected: str) -> None:
    assert metrics.select_best(results, metric) == expected


def test_select_best_is_independent_of_insertion_order() -> None:
    results = {name: {"m": v} for name, v in [("c", 0.5), ("b", 0.8), ("a", 0.8), ("d", 0.1)]}
    assert metrics.select_best(results, "m") == metrics.select_best(dict(reversed(results.items())), "m") == "a"


def test_select_best_needs_candidates() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        metrics.select_best({}, "roc_auc")


JOIN_PROBE = """
import json, sys
from steps.core import decision
from steps.modeling import metrics
best = metrics.select_best({"a": {"roc_auc": 0.7}, "b": {"roc_auc": 0.9}}, "roc_auc")
record = decision.decision_record({"threshold": 0.3}, (0.4, 0.6))
print(json.dumps({"best": best, "loaded": sorted(m for m in ("scipy", "sklearn") if m in sys.modules)}))
"""


def test_trainflows_join_selects_without_importing_scikit_learn_or_scipy() -> None:
    """The join (a task of its own) picks the winner from numbers: ~2 s of imports spared in every run."""
    proc = subprocess.run([sys.executable, "-c", JOIN_PROBE], cwd=Path(__file__).parents[2], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"best": "b", "loaded": []}
