"""Late labels: realized performance per day and group, and concept drift."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from steps.config.dataset import DatasetConfig
from steps.config.monitor import FeedbackConfig
from steps.data.contract import ScoreInputError
from steps.modeling.metrics import bootstrap_ci
from steps.monitoring.drift import read_inputs, window_dates
from steps.scoring.partition import read_manifest, read_partition
from steps.scoring.plan import InputsUnreadable, list_inputs, open_parquet

logger = logging.getLogger(__name__)


SOURCE, ROW = "_source", "_row"  # where each label came from: its file and row (for errors about its id)


def read_labels(location: str, id_column: str, cfg: FeedbackConfig) -> pd.DataFrame:
    """Every label file under ``location`` (id, label, label time, and each row's file and row number); empty when
    there are none yet. A missing label is not a label yet (the row is left out).

    Raises:
        ScoreInputError: a file lacks a required column, or holds labels other than 0/1 (named with the file, rows
            and values).
    """
    try:
        files = list_inputs(location)
    except InputsUnreadable:
        raise  # no credentials or no endpoint is not "no labels yet"
    except ScoreInputError:
        logger.info("no labels at %s yet", location)
        return pd.DataFrame(columns=[id_column, cfg.label_column, cfg.label_time_column, SOURCE, ROW])
    frames = []
    for path in files:
        table = open_parquet(path).read()
        missing = [c for c in (id_column, cfg.label_column) if c not in table.column_names]
        if missing:
            raise ScoreInputError(f"{path}: label file lacks column(s) {missing}")
        frame = table.to_pandas()
        where = {SOURCE: pd.Categorical.from_codes(np.zeros(len(frame), np.int8), [path]), ROW: np.arange(len(frame))}
        frames.append(_binary_labels(frame.assign(**where), cfg.label_column, path))
    labels = pd.concat(frames, ignore_index=True)
    if cfg.label_time_column in labels.columns:  # a corrected label supersedes the earlier one
        labels = labels.sort_values(cfg.label_time_column, kind="stable")
    return labels.drop_duplicates(id_column, keep="last")


def _binary_labels(frame: pd.DataFrame, label: str, path: str) -> pd.DataFrame:
    """``frame``'s labelled rows with 0/1 (or boolean) labels as integers; an error naming the rows otherwise."""
    values = frame[label]
    known = values.notna()
    numbers = pd.to_numeric(values.where(known).astype("object"), errors="coerce")
    bad = known & ~numbers.isin([0, 1])
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        examples = ", ".join(repr(v) for v in values[bad].drop_duplicates().head(3))
        raise ScoreInputError(f"{path}: label column {label!r} holds values other than 0/1 ({examples}) at "
                              f"{len(rows)} row(s), first {rows[:5].tolist()}")
    return frame[known].assign(**{label: numbers[known].astype("int64")})


def as_prediction_ids(labels: pd.DataFrame, id_column: str, ids: pd.Series) -> pd.Series:
    """The labels' ids in the type of the predictions' ``ids`` (integer ids written as text or whole floats are
    the same ids); an error naming the label file and row of an id that cannot be one."""
    theirs = labels[id_column]
    if theirs.dtype == ids.dtype:
        return theirs
    if not pd.api.types.is_integer_dtype(ids):
        return theirs.astype(ids.dtype)  # text ids (or row keys): compared as text
    numbers = pd.to_numeric(theirs.astype("object"), errors="coerce")
    bad = (numbers.isna() | (numbers % 1 != 0)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = theirs.iloc[i].item() if isinstance(theirs.iloc[i], np.generic) else theirs.iloc[i]
        raise ScoreInputError(f"{labels[SOURCE].iloc[i]}: row {labels[ROW].iloc[i]}: {id_column} {value!r} is not an "
                              f"id of the predictions (they are {ids.dtype}); {int(bad.sum())} label id(s) like it")
    return numbers.astype(ids.dtype)


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
    manifest = read_manifest(predictions_root, day)
    if manifest is None or labels.empty:
        return None
    preds = read_partition(predictions_root, day).select([spec.id_column, "score", "decision"]).to_pandas()
    mine = labels[[cfg.label_column]].assign(**{spec.id_column: as_prediction_ids(labels, spec.id_column,
                                                                                   preds[spec.id_column])})
    joined = preds.merge(mine, on=spec.id_column, how="inner")
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
                           "roc_auc", samples=cfg.bootstrap_samples, seed=0)
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
