"""Monitoring: the reference profile, drift statistics per period, moving baselines, and late-label performance.

A *period* is one ScoreFlow partition date. Each statistic of a period (PSI, Jensen-Shannon distance, KS statistic,
null-rate change, decision/review-rate change) is judged against its own trailing history (robust z-score or
percentile), or against a static threshold while that history is short. The statistics come from scipy:
``scipy.special.rel_entr`` (PSI is the symmetrised relative entropy), ``scipy.spatial.distance.jensenshannon``,
``scipy.stats.ks_2samp`` and ``scipy.stats.median_abs_deviation``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score

from steps import score
from steps.config import BaselineConfig, DatasetConfig, DriftConfig, FeedbackConfig, ReferenceConfig, StatisticThreshold
from steps.stats import bootstrap_ci

logger = logging.getLogger(__name__)

NULL, OTHER = "__null__", "__other__"
EPS = 1e-4  # floor of a bin's share, so an empty bin does not make PSI infinite
FEATURE_STATISTICS = {"numeric": ("psi", "ks"), "categorical": ("psi", "js")}


# --------------------------------------------------------------------------------------------------- reference
def _numeric_reference(values: pd.Series, cfg: ReferenceConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Quantile bin edges, bin shares, null rate and a sorted sample of one numeric column."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    present = x[~np.isnan(x)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, cfg.bins + 1)[1:-1])) if present.size else np.array([])
    sample = np.sort(rng.choice(present, size=min(cfg.sample_rows, present.size), replace=False)) \
        if present.size else np.array([])
    return {"kind": "numeric", "edges": edges.tolist(), "shares": numeric_shares(present, edges).tolist(),
            "count": int(present.size),
            "null_rate": float(np.isnan(x).mean()) if x.size else 0.0, "sample": sample.tolist(),
            "dtype": str(values.dtype)}


def _categorical_reference(values: pd.Series, cfg: ReferenceConfig) -> dict[str, Any]:
    """Level shares (top ``max_levels``, the rest pooled), and the null rate of one categorical column."""
    present = values.dropna().astype(str)
    counts = present.value_counts()
    levels = sorted(counts.index[:cfg.max_levels].tolist())
    shares = categorical_shares(present, levels)
    return {"kind": "categorical", "levels": levels, "shares": shares.tolist(), "count": int(len(present)),
            "null_rate": float(values.isna().mean()) if len(values) else 0.0, "dtype": str(values.dtype)}


def reference_profile(frame: pd.DataFrame, scores: np.ndarray, spec: DatasetConfig, cfg: ReferenceConfig,
                      seed: int = 0) -> dict[str, Any]:
    """What production data is compared with: every feature, the score, and the realized AUC on ``frame``.

    Args:
        frame: the temporal hold-out (the latest data the model was judged on).
        scores: the model's probabilities on ``frame`` (ten times ``sample_rows`` of them are kept, so decision and
            review rates can be computed later at whatever threshold ScoreFlow uses).
    """
    rng = np.random.default_rng(seed)
    features = {name: _numeric_reference(frame[name], cfg, rng) for name in spec.numeric}
    features |= {name: _categorical_reference(frame[name], cfg) for name in spec.categorical}
    scores = np.asarray(scores, dtype=float)
    score_ref = _numeric_reference(pd.Series(scores), cfg.model_copy(update={"sample_rows": 10 * cfg.sample_rows}),
                                   rng)
    y = frame[spec.target.name].to_numpy().astype(int)
    auc = float(roc_auc_score(y, scores)) if np.unique(y).size == 2 else float("nan")
    return {"version": 1, "rows": int(len(frame)), "features": features, "score": score_ref,
            "performance": {"roc_auc": auc, "positives": int(y.sum()), "rows": int(len(y))},
            "time_range": [str(frame[spec.time].min()), str(frame[spec.time].max())]}


def build_reference(model: Any, holdout: pd.DataFrame, spec: DatasetConfig, cfg: ReferenceConfig) -> dict[str, Any]:
    """Score the hold-out with ``model`` and profile it (TrainFlow stores the result with the model)."""
    scores = model.predict_proba(holdout[spec.features])[:, 1]
    return reference_profile(holdout, scores, spec, cfg)


# --------------------------------------------------------------------------------------------------- statistics
def numeric_shares(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """Share of the (non-null) values in each bin cut at ``edges`` (len(edges) + 1 bins)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype=float), values, side="right"),
                         minlength=len(edges) + 1)
    return counts / counts.sum() if counts.sum() else np.full(len(edges) + 1, 1.0 / (len(edges) + 1))


def categorical_shares(values: pd.Series, levels: list[str]) -> np.ndarray:
    """Share of each known level plus a last ``__other__`` share (nulls excluded)."""
    present = values.dropna().astype(str)
    counts = present.value_counts()
    known = np.array([counts.get(level, 0) for level in levels], dtype=float)
    shares = np.append(known, len(present) - known.sum())
    return shares / shares.sum() if shares.sum() else np.full(len(levels) + 1, 1.0 / (len(levels) + 1))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index: ``sum((a - e) ln(a / e))``, the symmetrised relative entropy (scipy)."""
    e, a = np.clip(np.asarray(expected, float), EPS, None), np.clip(np.asarray(actual, float), EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum(special.rel_entr(a, e) + special.rel_entr(e, a)))


def js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2 (0 = same distribution, 1 = disjoint)."""
    return float(jensenshannon(np.asarray(expected, float), np.asarray(actual, float), base=2))


@dataclass(frozen=True)
class Measurement:
    """One statistic of one subject (a feature, or ``score``) in one period, and how it was judged."""

    signal: str
    subject: str
    statistic: str
    value: float
    p_value: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    method: str = "unjudged"
    breach: bool = False

    def key(self) -> str:
        """Identity of the time series this value belongs to."""
        return f"{self.signal}/{self.subject}/{self.statistic}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for artifacts and JSON."""
        return asdict(self)


def homogeneity_p(ref: dict[str, Any], shares: np.ndarray, count: int) -> float | None:
    """Chi-square test that the period's binned counts and the reference's come from one distribution (scipy).

    None when the reference does not record its row count (profiles from before it did).
    """
    if not ref.get("count") or not count:
        return None
    table = np.vstack([np.asarray(ref["shares"], float) * ref["count"], np.asarray(shares, float) * count])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def _numeric_measurements(signal: str, name: str, ref: dict[str, Any], values: pd.Series) -> list[Measurement]:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    present = x[~np.isnan(x)]
    shares = numeric_shares(present, ref["edges"])
    out = [Measurement(signal, name, "psi", psi(ref["shares"], shares), homogeneity_p(ref, shares, present.size))]
    if present.size and ref["sample"]:
        res = stats.ks_2samp(np.asarray(ref["sample"]), present, method="asymp")
        out.append(Measurement(signal, name, "ks", float(res.statistic), float(res.pvalue)))
    return out


def _categorical_measurements(name: str, ref: dict[str, Any], values: pd.Series) -> list[Measurement]:
    shares = categorical_shares(values, ref["levels"])
    p_value = homogeneity_p(ref, shares, int(values.notna().sum()))
    return [Measurement("feature_drift", name, "psi", psi(ref["shares"], shares), p_value),
            Measurement("feature_drift", name, "js", js_distance(ref["shares"], shares), p_value)]


def feature_measurements(profile: dict[str, Any], frame: pd.DataFrame) -> list[Measurement]:
    """Drift and null-rate change of every profiled feature present in ``frame``."""
    out: list[Measurement] = []
    for name, ref in profile["features"].items():
        if name not in frame.columns:
            continue
        col = frame[name]
        if ref["kind"] == "numeric":
            out += _numeric_measurements("feature_drift", name, ref, col)
        else:
            out += _categorical_measurements(name, ref, col)
        out.append(Measurement("null_rate", name, "null_rate_change", abs(float(col.isna().mean()) - ref["null_rate"])))
    return out


def _rate_change(actual: float, reference: float) -> float:
    """|log(actual / reference)| with both rates floored at 1e-4 (a symmetric relative change)."""
    return abs(math.log(max(actual, 1e-4) / max(reference, 1e-4)))


def _rate_measurement(signal: str, hits: np.ndarray, reference_hits: np.ndarray) -> Measurement:
    """|log rate ratio| of a rate against the reference's, with a chi-square p-value of the 2x2 table."""
    k, n = int(hits.sum()), int(hits.size)
    k_ref, n_ref = int(reference_hits.sum()), int(reference_hits.size)
    table = np.array([[k, n - k], [k_ref, n_ref - k_ref]])
    p_value = 1.0 if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any() else float(
        stats.chi2_contingency(table).pvalue)
    return Measurement(signal, "score", "rate_change", _rate_change(k / max(n, 1), k_ref / max(n_ref, 1)), p_value)


def score_measurements(profile: dict[str, Any], preds: pd.DataFrame, threshold: float,
                       band: tuple[float, float]) -> list[Measurement]:
    """Prediction drift on the score distribution, and the decision and review rates against the reference's.

    The reference rates come from the reference score sample at ScoreFlow's own threshold and review band.
    """
    ref, scores = profile["score"], preds["score"].to_numpy(float)
    out = _numeric_measurements("prediction_drift", "score", ref, pd.Series(scores))
    shares = numeric_shares(scores, ref["edges"])
    out.append(Measurement("prediction_drift", "score", "js", js_distance(ref["shares"], shares),
                           homogeneity_p(ref, shares, scores.size)))
    if len(scores):
        sample = np.asarray(ref["sample"], dtype=float)
        out.append(_rate_measurement("decision_rate", preds["decision"].to_numpy(bool), sample >= threshold))
        out.append(_rate_measurement("review_rate", preds["review"].to_numpy(bool),
                                     (sample >= band[0]) & (sample <= band[1])))
    return out


def schema_changes(profile: dict[str, Any], schema_names: list[str], frame: pd.DataFrame) -> list[str]:
    """Profiled features that are missing from the input, or whose kind changed (numeric <-> text)."""
    problems = [f"missing column {name}" for name in profile["features"] if name not in schema_names]
    for name, ref in profile["features"].items():
        if name in frame.columns and ref["kind"] == "numeric" and not (
                pd.api.types.is_numeric_dtype(frame[name]) or frame[name].isna().all()):
            problems.append(f"column {name} is {frame[name].dtype}, expected numeric")
    return problems


# --------------------------------------------------------------------------------------------------- baselines
def _threshold_for(statistic: str, cfg: DriftConfig) -> StatisticThreshold:
    return {"psi": cfg.psi, "js": cfg.js, "ks": cfg.ks, "null_rate_change": cfg.null_rate,
            "rate_change": cfg.rate_change}[statistic]


def _history_for(history: list[tuple[str, float]], period: str, cfg: BaselineConfig) -> tuple[list[float], str]:
    """The trailing values to judge against (same weekday when seasonal and there are enough)."""
    earlier = [(p, v) for p, v in history if p < period and v is not None and not math.isnan(v)]
    if cfg.seasonal:
        weekday = date.fromisoformat(period).weekday()
        same = [(p, v) for p, v in earlier if date.fromisoformat(p).weekday() == weekday]
        if len(same) >= cfg.min_history:
            return [v for _, v in same[-cfg.history:]], "seasonal"
    return [v for _, v in earlier[-cfg.history:]], "moving"


def judge(value: float, history: list[tuple[str, float]], period: str, limit: StatisticThreshold,
          cfg: BaselineConfig) -> tuple[bool, float, float | None, str]:
    """(breach, threshold, baseline, method) for one value against its own history.

    With at least ``min_history`` earlier values: a robust z-score (median and normal-consistent MAD, scipy) above
    ``z``, or a value above the history's ``percentile``, breaches, but never below the statistic's ``floor``.
    Otherwise the ``static`` threshold decides.
    """
    values, method = _history_for(history, period, cfg)
    if len(values) < cfg.min_history:
        return value > limit.static, limit.static, None, "static"
    arr = np.asarray(values, dtype=float)
    median = float(np.median(arr))
    if cfg.method == "percentile":
        threshold = float(np.percentile(arr, cfg.percentile))
    else:
        mad = float(stats.median_abs_deviation(arr, scale="normal"))
        threshold = median + cfg.z * max(mad, 1e-3 * max(abs(median), 1e-6))
    threshold = max(threshold, limit.floor)
    return value > threshold, threshold, median, method


def judge_all(measurements: list[Measurement], series: dict[str, list[tuple[str, float]]], period: str,
              drift: DriftConfig, baseline: BaselineConfig) -> list[Measurement]:
    """Every measurement judged against the history of its own key (``series``: key -> [(period, value)])."""
    judged = []
    for m in measurements:
        if m.subject in drift.ignore:
            judged.append(Measurement(m.signal, m.subject, m.statistic, m.value, m.p_value, method="ignored"))
            continue
        breach, threshold, base, method = judge(m.value, series.get(m.key(), []), period,
                                                _threshold_for(m.statistic, drift), baseline)
        if m.p_value is not None and m.p_value >= drift.alpha:
            breach = False  # a large value on a handful of rows is noise, not a shift
        judged.append(Measurement(m.signal, m.subject, m.statistic, m.value, m.p_value, base, threshold, method,
                                  bool(breach)))
    return judged


def period_signals(measurements: list[Measurement], schema: list[str], rows: int, drift: DriftConfig,
                   scored: bool = True) -> dict[str, dict[str, Any]]:
    """Roll a period's judged measurements up into one breach flag per signal (the alert rules' input)."""
    if not scored:
        return {"scoring_failed": {"breach": True, "value": 1.0, "detail": "no trusted partition (no manifest)"}}
    signals: dict[str, dict[str, Any]] = {
        "scoring_failed": {"breach": False, "value": 0.0, "detail": ""},
        "schema_change": {"breach": bool(schema), "value": float(len(schema)), "detail": "; ".join(schema)},
    }
    if rows < drift.min_rows:
        return signals  # too few rows to judge drift: reported, neither a breach nor a clear
    for signal in ("feature_drift", "prediction_drift", "null_rate", "decision_rate", "review_rate"):
        hits = sorted({m.subject for m in measurements if m.signal == signal and m.breach})
        need = drift.min_features if signal == "feature_drift" else 1
        signals[signal] = {"breach": len(hits) >= need, "value": float(len(hits)), "detail": ", ".join(hits)}
    return signals


# --------------------------------------------------------------------------------------------------- periods
def window_dates(end: str, days: int) -> list[str]:
    """The ``days`` dates ending at ``end`` (inclusive), oldest first."""
    last = date.fromisoformat(end)
    return [(last - timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


def read_inputs(manifest: dict[str, Any], columns: list[str], limit: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """The rows a partition scored, read back from the input files its manifest lists (``columns`` only).

    Returns the (sampled) frame and the union of the input files' column names.

    Raises:
        ScoreInputError: an input file is missing, unreadable, or its row groups changed since it was scored.
    """
    frames, names = [], set()
    for f in manifest["input"]["files"]:
        pf = score.open_parquet(f["path"])
        names |= set(pf.schema_arrow.names)
        now = tuple(pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups))
        if tuple(f["row_groups"]) != now:
            raise score.ScoreInputError(f"{f['path']}: row groups {list(now)} now, {list(f['row_groups'])} when "
                                        f"{manifest['partition']} was scored; the input changed after scoring")
        frames.append(pf.read(columns=[c for c in columns if c in pf.schema_arrow.names]).to_pandas())
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return _sample(frame, limit, seed), sorted(names)


def measure_period(day: str, predictions_root: str, profile: dict[str, Any], spec: DatasetConfig, limit: int,
                   seed: int) -> dict[str, Any]:
    """Unjudged drift measurements of one partition date (``scored`` False when it has no manifest)."""
    manifest = score.read_manifest(predictions_root, day)
    if manifest is None:
        logger.warning("%s has no manifest: counted as a scoring failure", score.partition_uri(predictions_root, day))
        return {"period": day, "scored": False, "rows": 0, "measurements": [], "schema": [], "model": None}
    wanted = [spec.id_column, *profile["features"], *spec.sensitive]
    frame, names = read_inputs(manifest, list(dict.fromkeys(wanted)), limit, seed)
    preds = score.read_partition(predictions_root, day).select(["score", "decision", "review"]).to_pandas()
    preds = _sample(preds, limit, seed)
    found = feature_measurements(profile, frame)
    found += score_measurements(profile, preds, float(manifest["decision_threshold"]),
                                tuple(manifest["review_band"]))
    logger.info("%s: %d input rows, %d predictions measured", day, len(frame), len(preds))
    return {"period": day, "scored": True, "rows": int(min(len(frame), len(preds))),
            "measurements": [m.to_dict() for m in found], "schema": schema_changes(profile, names, frame),
            "model": manifest.get("model")}


def series_from(periods: list[dict[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """key -> [(period, value)] from stored periods (oldest first)."""
    series: dict[str, list[tuple[str, float]]] = {}
    for p in sorted(periods, key=lambda p: p["period"]):
        for m in p.get("measurements", []):
            series.setdefault(f"{m['signal']}/{m['subject']}/{m['statistic']}", []).append((p["period"], m["value"]))
    return series


def judge_periods(raw: list[dict[str, Any]], history: list[dict[str, Any]], drift: DriftConfig,
                  baseline: BaselineConfig) -> list[dict[str, Any]]:
    """Judge the window's periods in date order, each against the history before it (earlier window days included).

    Args:
        raw: ``measure_period`` results for the window.
        history: stored periods from earlier runs (periods of the window in it are replaced).
    """
    window = {p["period"] for p in raw}
    known = [p for p in history if p["period"] not in window]
    judged = []
    for p in sorted(raw, key=lambda p: p["period"]):
        series = series_from(known)
        ms = judge_all([Measurement(**m) for m in p["measurements"]], series, p["period"], drift, baseline)
        done = {**p, "measurements": [m.to_dict() for m in ms],
                "signals": period_signals(ms, p["schema"], p["rows"], drift, p["scored"])}
        judged.append(done)
        known.append(done)
    return judged


# --------------------------------------------------------------------------------------------------- feedback
def read_labels(location: str, id_column: str, cfg: FeedbackConfig) -> pd.DataFrame:
    """Every label file under ``location`` (id, label, label time); empty when there are none yet.

    Raises:
        ScoreInputError: a file lacks a required column (named with the file).
    """
    try:
        files = score.list_inputs(location)
    except score.ScoreInputError:
        logger.info("no labels at %s yet", location)
        return pd.DataFrame(columns=[id_column, cfg.label_column, cfg.label_time_column])
    frames = []
    for path in files:
        table = score.open_parquet(path).read()
        missing = [c for c in (id_column, cfg.label_column) if c not in table.column_names]
        if missing:
            raise score.ScoreInputError(f"{path}: label file lacks column(s) {missing}")
        frames.append(table.to_pandas())
    labels = pd.concat(frames, ignore_index=True)
    if cfg.label_time_column in labels.columns:  # a corrected label supersedes the earlier one
        labels = labels.sort_values(cfg.label_time_column, kind="stable")
    return labels.drop_duplicates(id_column, keep="last")


def _group_metrics(frame: pd.DataFrame, label: str) -> dict[str, Any]:
    y, s, d = frame[label].to_numpy(int), frame["score"].to_numpy(float), frame["decision"].to_numpy(bool)
    tp = int((d & (y == 1)).sum())
    return {"rows": int(len(y)), "positives": int(y.sum()),
            "roc_auc": float(roc_auc_score(y, s)) if np.unique(y).size == 2 else None,
            "precision": tp / int(d.sum()) if d.sum() else None, "recall": tp / int(y.sum()) if y.sum() else None}


def _label_fingerprint(joined: pd.DataFrame, label: str, manifest: dict[str, Any]) -> str:
    """What a period's realized performance depends on: its manifest and its labelled rows."""
    digest = pd.util.hash_pandas_object(joined.iloc[:, :1].assign(_y=joined[label]), index=False).sum()
    return f"{manifest.get('created_at')}:{len(joined)}:{int(digest) & 0xFFFFFFFFFFFF:x}"


def realized_performance(day: str, predictions_root: str, labels: pd.DataFrame, spec: DatasetConfig,
                         cfg: FeedbackConfig, previous: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """AUC (with a bootstrap interval), precision and recall of one partition on its labelled rows, per group.

    None when the partition is untrusted or none of its rows is labelled yet. ``previous`` (this period's stored
    result) is returned as is when no label arrived or changed since, which saves the bootstrap.
    """
    manifest = score.read_manifest(predictions_root, day)
    if manifest is None or labels.empty:
        return None
    preds = score.read_partition(predictions_root, day).select([spec.id_column, "score", "decision"]).to_pandas()
    joined = preds.merge(labels[[spec.id_column, cfg.label_column]], on=spec.id_column, how="inner")
    if joined.empty:
        return None
    if previous and previous.get("fingerprint") == _label_fingerprint(joined, cfg.label_column, manifest):
        return previous
    groups_frame, _ = read_inputs(manifest, [spec.id_column, *spec.sensitive], 10**12, 0)
    joined = joined.merge(groups_frame, on=spec.id_column, how="left")
    out = {"period": day, **_group_metrics(joined, cfg.label_column), "auc_interval": None, "groups": {},
           "fingerprint": _label_fingerprint(joined, cfg.label_column, manifest)}
    if out["positives"] >= cfg.min_positives and out["roc_auc"] is not None:
        est = bootstrap_ci(joined[cfg.label_column].to_numpy(int), joined["score"].to_numpy(float),
                           roc_auc_score, samples=cfg.bootstrap_samples, seed=0)
        out["auc_interval"] = [est.low, est.high]
    for attr in spec.sensitive:
        out["groups"][attr] = {str(level): _group_metrics(g, cfg.label_column)
                               for level, g in joined.groupby(attr, observed=True)}
    return out


def feedback_window(end: str, predictions_root: str, labels: pd.DataFrame, spec: DatasetConfig,
                    cfg: FeedbackConfig, stored: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Realized performance of every trusted partition in the ``lookback_days`` ending at ``end`` that has labels.

    Args:
        stored: results of earlier runs; a period whose labels did not change is not recomputed.
    """
    if labels.empty:
        return []
    previous = {p["period"]: p for p in stored or []}
    found = [realized_performance(day, predictions_root, labels, spec, cfg, previous.get(day))
             for day in window_dates(end, cfg.lookback_days)]
    return [p for p in found if p is not None]


def merge_performance(stored: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored per-period performance with this run's recomputed periods replacing theirs, oldest first."""
    days = {p["period"] for p in fresh}
    return sorted([p for p in stored if p["period"] not in days] + fresh, key=lambda p: p["period"])


def with_signals(periods: list[dict[str, Any]], extra: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The periods with run-level signals (concept drift, AUC drop) added to the newest one."""
    if not periods:
        return periods
    newest = periods[-1]
    return [*periods[:-1], {**newest, "signals": {**newest["signals"], **extra}}]


def window_signals(periods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One flag per signal for the whole window: breached when any period breached (what the retraining reads)."""
    merged: dict[str, dict[str, Any]] = {}
    for p in periods:
        for name, sig in p["signals"].items():
            if name not in merged or (sig["breach"] and not merged[name]["breach"]):
                merged[name] = {**sig, "period": p["period"]}
    return merged


def degraded(perf: dict[str, Any], reference_auc: float, cfg: FeedbackConfig) -> bool | None:
    """True/False for a judged period, None when it has too few labelled positives to judge."""
    if perf["roc_auc"] is None or perf["positives"] < cfg.min_positives:
        return None
    judged = perf["auc_interval"][1] if cfg.use_interval and perf["auc_interval"] else perf["roc_auc"]
    return judged < reference_auc - cfg.drop


def concept_signals(performance: list[dict[str, Any]], reference_auc: float,
                    cfg: FeedbackConfig) -> dict[str, dict[str, Any]]:
    """``concept_drift`` (``consecutive`` degraded judged periods, newest last) and ``auc_drop`` (the newest one
    far below the reference); both absent when no period could be judged."""
    judged = [(p, degraded(p, reference_auc, cfg)) for p in sorted(performance, key=lambda p: p["period"])]
    judged = [(p, d) for p, d in judged if d is not None]
    if not judged:
        return {}
    streak = 0
    for _, d in reversed(judged):
        if not d:
            break
        streak += 1
    newest = judged[-1][0]
    upper = newest["auc_interval"][1] if newest["auc_interval"] else newest["roc_auc"]
    critical = newest["roc_auc"] < reference_auc - cfg.critical_drop and upper < reference_auc - cfg.drop
    return {
        "concept_drift": {"breach": streak >= cfg.consecutive, "value": float(streak),
                          "detail": f"{streak} consecutive labelled period(s) below AUC {reference_auc:.4f} - "
                                    f"{cfg.drop} (newest {newest['period']}: {newest['roc_auc']:.4f})"},
        "auc_drop": {"breach": bool(critical), "value": float(reference_auc - newest["roc_auc"]),
                     "detail": f"{newest['period']}: AUC {newest['roc_auc']:.4f} vs reference {reference_auc:.4f}"},
    }


def false_alarm_rate(periods: list[dict[str, Any]], signals: tuple[str, ...] = ("feature_drift",
                                                                                 "prediction_drift")) -> float:
    """Share of periods in which any of ``signals`` breached (on stable data: the false-alarm rate)."""
    judged = [p for p in periods if any(s in p["signals"] for s in signals)]
    hits = [p for p in judged if any(p["signals"].get(s, {}).get("breach") for s in signals)]
    return len(hits) / len(judged) if judged else 0.0


# --------------------------------------------------------------------------------------------------- model
def scoring_model(days: list[str], predictions_root: str) -> str | None:
    """The model run (pathspec) that scored the newest trusted partition among ``days``, or None."""
    for day in sorted(days, reverse=True):
        manifest = score.read_manifest(predictions_root, day)
        if manifest is not None and (manifest.get("model") or {}).get("run"):
            return str(manifest["model"]["run"])
    return None


def model_reference(model_run: str | None, branch: str, project: str, spec: DatasetConfig) -> dict[str, Any]:
    """The monitored model's run, reference profile, reference AUC and training time (Metaflow Client).

    Args:
        model_run: the pathspec that scored the partitions (a DistillFlow student brings its own profile: the
            teacher's hold-out scored by the student); None: the branch's TrainFlow champion.

    Runs trained before profiles existed get one built from their hold-out and verified model.

    Raises:
        RuntimeError: no model run given and no champion on the branch.
    """
    from metaflow import Run

    from steps.registry import Registry, global_namespace, load_model, started_at

    with global_namespace():
        run = Run(model_run) if model_run else Registry("TrainFlow", branch, project).champion()
        if run is None:
            raise RuntimeError(f"no champion for TrainFlow on branch {branch} of project {project} and no scored "
                               "partition names a model: nothing to monitor")
        teacher = Run(f"TrainFlow/{run.data.teacher_run_id}") if run.parent.id == "DistillFlow" else run
        source = run if "reference_profile" in run.data else teacher  # a student's own scores when it has them
        if "reference_profile" in source.data:
            profile = source.data.reference_profile
        else:
            logger.info("%s has no reference profile: building one from its hold-out", teacher.pathspec)
            profile = build_reference(load_model(teacher), teacher.data.holdout_df, spec, ReferenceConfig())
        return {"run": run.pathspec, "profile": profile, "reference_auc": float(profile["performance"]["roc_auc"]),
                "trained_at": started_at(teacher).isoformat(), "profile_of": source.pathspec}


def registry_notices(branch: str, project: str, after: str | None, flow: str = "TrainFlow") -> list[dict[str, Any]]:
    """Audit events (promotions, rollbacks) recorded after ``after`` (ISO time; None: none, first run)."""
    from steps.registry import Registry

    if after is None:
        return []
    return [e for e in Registry(flow=flow, branch=branch, project=project).history() if str(e["when"]) > after]


# --------------------------------------------------------------------------------------------------- state
STATE = "state.json"


def empty_state() -> dict[str, Any]:
    """The state of a monitor that has never run."""
    return {"version": 1, "periods": [], "rules": {}, "performance": [], "retrain": None, "delivered": [],
            "last_run": None}


def load_state(root: str) -> dict[str, Any]:
    """``<root>/state.json`` (history, alert states, last retraining), or an empty state."""
    body = score.read_bytes(score.join_uri(root, STATE))
    return json.loads(body) if body is not None else empty_state()


def rules_before(state: dict[str, Any], first_period: str) -> dict[str, dict[str, Any]]:
    """Alert-rule states as they stood before ``first_period`` (so a rerun of a date does not count it twice)."""
    earlier = [p for p in state["periods"] if p["period"] < first_period and "rules_after" in p]
    if earlier:
        return earlier[-1]["rules_after"]
    return {} if any(p["period"] >= first_period for p in state["periods"]) else state.get("rules", {})


def updated_state(state: dict[str, Any], judged: list[dict[str, Any]], snapshots: list[dict[str, Any]],
                  rules: dict[str, Any], performance: list[dict[str, Any]], keep: int) -> dict[str, Any]:
    """The state with the window's periods (and their rule snapshots) replacing any earlier copies."""
    window = {p["period"] for p in judged}
    compact = [{k: p[k] for k in ("period", "scored", "rows", "measurements", "signals", "model")} | {"rules_after": s}
               for p, s in zip(sorted(judged, key=lambda p: p["period"]), snapshots)]
    periods = sorted([p for p in state["periods"] if p["period"] not in window] + compact, key=lambda p: p["period"])
    perf_days = {p["period"] for p in performance}
    perf = sorted([p for p in state["performance"] if p["period"] not in perf_days] + performance,
                  key=lambda p: p["period"])
    return {**state, "periods": periods[-keep:], "rules": rules, "performance": perf[-keep:]}


def finished_state(state: dict[str, Any], judged: list[dict[str, Any]], snapshots: list[dict[str, Any]],
                   rules: dict[str, Any], performance: list[dict[str, Any]], retraining: dict[str, Any] | None,
                   delivered: list[str], run: str, keep: int) -> dict[str, Any]:
    """The state to save at the end of a run: history, rule states, retraining record, delivered event ids."""
    new = updated_state(state, judged, snapshots, rules, performance, keep)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if retraining is not None and retraining.get("run"):
        new["retrain"] = {**retraining, "at": now}
    new["delivered"] = (list(state["delivered"]) + list(delivered))[-2000:]
    new["last_run"] = {"run": run, "at": now, "window": [judged[0]["period"], judged[-1]["period"]] if judged else []}
    return new


def summary(periods: list[dict[str, Any]], events: list[dict[str, Any]], active: list[dict[str, Any]],
            decision: dict[str, Any], retraining: dict[str, Any] | None, state_uri: str) -> str:
    """A few lines for the end of a run: what breached, what fired, what was started, where the state is."""
    lines = []
    for p in periods:
        hits = [f"{name} ({s['detail']})" if s.get("detail") else name
                for name, s in p["signals"].items() if s.get("breach")]
        lines.append(f"{p['period']}: {p['rows']} rows; " + ("breached: " + "; ".join(hits) if hits else "clean"))
    lines += [f"event: {e['tier']} {e['rule']} {e['kind']} ({e['period']})" for e in events]
    lines.append("active alerts: " + (", ".join(f"{a['rule']} ({a['tier']})" for a in active) or "none"))
    lines.append(f"retraining: {decision['reason']}" + (
        f" -> {retraining['run']} {retraining['status']}" if retraining else ""))
    lines.append(f"state: {state_uri}")
    return "\n".join(lines)


def save_state(root: str, state: dict[str, Any]) -> str:
    """Write ``<root>/state.json`` atomically; returns its URI."""
    uri = score.join_uri(root, STATE)
    score.put_bytes(uri, json.dumps(state, sort_keys=True, default=str).encode())
    return uri
