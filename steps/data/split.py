"""Train / validation / hold-out: by time (the default), by a column's values, or stratified at random.

Which split applies: the dataset config's ``split`` when it has one, else train.yaml's; a dataset without a time
column gets a random split instead of a time split (with a warning in the split summary, shown on the cards: a random
hold-out overstates production quality when the data drift over time). A split that cannot be made says why and what
to set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from steps.config.dataset import DatasetConfig, SplitSpec, category_label
from steps.core.errors import UserError
from steps.data.contract import label_values, time_label

RANDOM_WARNING = ("random hold-out: the model is judged on rows from the same period it was trained on, which "
                  "overstates production quality when the data drift over time")
PARTS = ("train", "validation", "holdout")


class SplitError(UserError):
    """The split cannot be made from this data and config; the message says why and what to set."""


@dataclass(frozen=True)
class Split:
    """Train, validation and hold-out frames, how they were cut, and the part of every row (``codes``: 0 train,
    1 validation, 2 hold-out, in the frame's row order; what TrainFlow stores instead of the frames)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    method: str = "time"
    warnings: list[str] = field(default_factory=list)
    codes: np.ndarray | None = None

    def stats(self, spec: DatasetConfig) -> dict[str, dict[str, Any]]:
        """:func:`part_stats` of each part."""
        return {name: part_stats(part[spec.target.name], part[spec.time_column] if spec.time_column else None)
                for name, part in zip(PARTS, (self.train, self.validation, self.holdout), strict=True)}

    def summary(self, spec: DatasetConfig) -> dict[str, Any]:
        """Rows, positives and time range per part, the method, and any warning."""
        return summarize(self.stats(spec), self.method, self.warnings, spec)


@dataclass(frozen=True)
class Cut:
    """The part of every row (``codes``, as in :class:`Split`), how the rows were cut, any warning, and each part's
    rows, positives and time range (``stats``): a checked split without copies of its parts."""

    codes: np.ndarray
    method: str
    warnings: list[str]
    stats: dict[str, dict[str, Any]]

    def summary(self, spec: DatasetConfig) -> dict[str, Any]:
        """Rows, positives and time range per part, the method, and any warning (as :meth:`Split.summary`)."""
        return summarize(self.stats, self.method, self.warnings, spec)


def part_stats(target: pd.Series | np.ndarray, times: pd.Series | pd.api.extensions.ExtensionArray | None
               ) -> dict[str, Any]:
    """One part's rows, positives, whether it has both classes, and its first and last time (raw values)."""
    y = np.asarray(target)
    return {"rows": len(y), "positives": int(y.sum()), "both_classes": bool(len(y) and y.min() != y.max()),
            "time_min": times.min() if times is not None else None,
            "time_max": times.max() if times is not None else None}


def summarize(stats: dict[str, dict[str, Any]], method: str, warnings: list[str],
              spec: DatasetConfig) -> dict[str, Any]:
    """The split summary (cards, notebooks): per part rows, positives and time range as labels; method; warnings."""
    out: dict[str, Any] = {
        name: {"rows": s["rows"], "positives": s["positives"],
               "time_min": time_label(s["time_min"], spec.time) if spec.time_column else None,
               "time_max": time_label(s["time_max"], spec.time) if spec.time_column else None}
        for name, s in stats.items()}
    return {**out, "method": method, "warnings": list(warnings)}


def effective_split(spec: DatasetConfig, default: SplitSpec) -> tuple[SplitSpec, list[str]]:
    """The split that applies to ``spec`` (its own, else ``default``) and the warnings it comes with."""
    chosen = spec.split or default
    if chosen.method == "time" and spec.time is None:
        chosen = SplitSpec(method="random", validation_fraction=chosen.validation_fraction,
                           holdout_fraction=chosen.holdout_fraction, seed=chosen.seed)
    return chosen, [RANDOM_WARNING] if chosen.method == "random" else []


def split_columns(spec: DatasetConfig, default: SplitSpec) -> list[str]:
    """The columns cutting and checking the split reads from a validated table: the target, time and split column.

    Not the id: validation rejects duplicated and empty ids, so parts that partition the table's rows never share
    one, and a set (or hash table) of millions of ids was most of the split step's memory (``bench_train``).
    """
    chosen, _ = effective_split(spec, default)
    cols = [spec.target.name, spec.time_column, chosen.column if chosen.method == "column" else None]
    return list(dict.fromkeys(c for c in cols if c))


def split_dtypes(spec: DatasetConfig) -> dict[str, str]:
    """How :func:`split_columns` are best held: the 0/1 target (validated) in one byte a row, not eight."""
    return {spec.target.name: "int8"}


def cut(frame: pd.DataFrame, spec: DatasetConfig, default: SplitSpec) -> Cut:
    """Each row's part of ``frame`` (validated, sorted by time) by the split that applies, checked (SplitError
    saying what to set), without copying the parts: ``frame`` needs only :func:`split_columns` (what TrainFlow
    reads), and the parts' statistics come from one mask at a time."""
    chosen, warnings = effective_split(spec, default)
    if chosen.method == "time":
        codes = time_codes(frame, spec, chosen)
    elif chosen.method == "column":
        codes = column_codes(frame, spec, chosen)
    else:
        codes = random_codes(frame, spec, chosen.holdout_fraction, chosen.validation_fraction, chosen.seed)
    stats = parts_stats(codes, frame[spec.target.name], frame[spec.time_column] if spec.time_column else None)
    _raise(stat_problems(stats, chosen.method, spec), chosen.method)
    return Cut(codes, chosen.method, warnings, stats)


STATS_CHUNK_ROWS = 1 << 20  # rows whose masks parts_stats holds at a time


def parts_stats(codes: np.ndarray, target: pd.Series, times: pd.Series | None) -> dict[str, dict[str, Any]]:
    """:func:`part_stats` of each part (``codes``) of a 0/1 target, from chunks of rows: one chunk's masked copies
    at a time, never a copy of a part (at 10M rows the training part's target and times were 107 MiB)."""
    y = target.to_numpy()  # arrays, not Series: a masked Series builds an index as large
    t = times.array if times is not None else None
    chunks: dict[str, list[dict[str, Any]]] = {name: [] for name in PARTS}
    for start in range(0, len(codes), STATS_CHUNK_ROWS):
        rows = slice(start, start + STATS_CHUNK_ROWS)
        for k, name in enumerate(PARTS):
            mask = codes[rows] == k
            if mask.any():
                chunks[name].append(part_stats(y[rows][mask], t[rows][mask] if t is not None else None))
    return {name: _merged(found, t is not None) if found else part_stats(y[:0], t[:0] if t is not None else None)
            for name, found in chunks.items()}


def _merged(chunks: list[dict[str, Any]], timed: bool) -> dict[str, Any]:
    """One part's statistics from those of its chunks (rows and positives summed; a 0/1 target has both classes
    when it has positives and other rows)."""
    rows, positives = sum(c["rows"] for c in chunks), sum(c["positives"] for c in chunks)
    return {"rows": rows, "positives": positives, "both_classes": 0 < positives < rows,
            "time_min": min(c["time_min"] for c in chunks) if timed else None,
            "time_max": max(c["time_max"] for c in chunks) if timed else None}


def split_frame(frame: pd.DataFrame, spec: DatasetConfig, default: SplitSpec) -> Split:
    """:func:`cut`, then the parts as frames holding whatever columns ``frame`` has (ids checked disjoint when it
    has them)."""
    c = cut(frame, spec, default)
    train, validation, holdout = (frame[c.codes == k].reset_index(drop=True) for k in range(3))
    split = Split(train, validation, holdout, method=c.method, warnings=c.warnings, codes=c.codes)
    _raise(id_problems(split, spec), split.method)
    return split


def time_codes(frame: pd.DataFrame, spec: DatasetConfig, split: SplitSpec) -> np.ndarray:
    """The oldest rows train, then validation, the most recent rows the hold-out; no time is shared by two parts."""
    assert spec.time_column is not None
    times = frame[spec.time_column]
    first, last = times.min(), times.max()
    if not ((times > first) & (times < last)).any():  # under 3 distinct values (no hash table of millions of times)
        values = [str(time_label(v, spec.time)) for v in sorted(times.dropna().unique())]
        raise SplitError(f"split by time needs at least 3 distinct values of time column '{spec.time_column}'; it has "
                         f"{len(values)} ({', '.join(values)}). Set in the dataset config split: {{method: column, "
                         f"column: {spec.time_column}, holdout_values: [<the latest value>]}} (validation is then cut "
                         "from the rest), or split: {method: random}")
    cut_valid = times.quantile(1.0 - split.holdout_fraction - split.validation_fraction)
    cut_hold = times.quantile(1.0 - split.holdout_fraction)
    if cut_hold <= cut_valid:  # few distinct times: give the hold-out the latest one, validation the one before
        cut_valid, cut_hold = times[times < last].max(), last
    return (times >= cut_valid).to_numpy().astype(np.int8) + (times >= cut_hold).to_numpy().astype(np.int8)


def column_codes(frame: pd.DataFrame, spec: DatasetConfig, split: SplitSpec) -> np.ndarray:
    """Hold-out and validation chosen by a column's values; validation from the rest when no values name it."""
    assert split.column is not None
    if split.column not in frame.columns:
        raise SplitError(f"split column '{split.column}' is not a column the dataset config keeps (time, id, "
                         "features, sensitive); choose one of those")
    labels = _split_labels(frame, spec, split.column)
    hold = labels.isin([category_label(v) for v in split.holdout_values]).to_numpy()
    codes = np.where(hold, 2, 0).astype(np.int8)
    if split.validation_values:
        valid = labels.isin([category_label(v) for v in split.validation_values]).to_numpy()
        codes[valid & ~hold] = 1
        return codes
    rest = frame[~hold]
    rest_codes = np.zeros(len(rest), dtype=np.int8)
    times = rest[spec.time_column] if spec.time_column else None
    if times is not None and times.nunique() >= 2 and times.min() < (
            cut := times.quantile(1.0 - split.validation_fraction, interpolation="higher")):
        rest_codes[(times >= cut).to_numpy()] = 1
    else:
        rest_codes = random_codes(rest, spec, 0.0, split.validation_fraction, split.seed)
    codes[~hold] = rest_codes
    return codes


def _split_labels(frame: pd.DataFrame, spec: DatasetConfig, column: str) -> pd.Series:
    """A column's values as the split config names them: the time column as written in the data (a year as
    ``2004``, a period as ``2``, a timestamp or date as ``2024-03-01``), any other column as its string."""
    values = frame[column]
    if spec.time is not None and column == spec.time.column:
        if spec.time.unit == "year":
            return values.dt.year.astype(str)
        if spec.time.unit == "period":
            return values.astype(str)
        return values.dt.strftime("%Y-%m-%d")
    return pd.Series(label_values(values), index=frame.index)


def random_codes(frame: pd.DataFrame, spec: DatasetConfig, holdout_fraction: float, validation_fraction: float,
                 seed: int) -> np.ndarray:
    """A random split stratified by the target (each part keeps the base rate), in the frame's row order."""
    rng = np.random.default_rng(seed)
    part = np.zeros(len(frame), dtype=np.int8)  # 0 train, 1 validation, 2 hold-out
    y = frame[spec.target.name].to_numpy()
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_hold = int(round(holdout_fraction * len(rows)))
        n_valid = int(round(validation_fraction * len(rows)))
        part[rows[:n_hold]] = 2
        part[rows[n_hold:n_hold + n_valid]] = 1
    return part


def stat_problems(stats: dict[str, dict[str, Any]], method: str, spec: DatasetConfig) -> list[str]:
    """What makes a split unusable, from its parts' statistics: a part without both classes; parts of a time split
    that overlap in time."""
    problems = [f"the {name} part has {s['rows']} rows and needs both classes"
                for name, s in stats.items() if not s["both_classes"]]
    if not problems and method == "time" and spec.time_column:
        if stats["train"]["time_max"] >= stats["validation"]["time_min"]:
            problems.append("train and validation overlap in time")
        if stats["validation"]["time_max"] >= stats["holdout"]["time_min"]:
            problems.append("validation and holdout overlap in time")
    return problems


def id_problems(parts: Split, spec: DatasetConfig) -> list[str]:
    """Ids found in more than one part (when the parts have the id column)."""
    named = (parts.train, parts.validation, parts.holdout)
    if not spec.id or not all(spec.id in p.columns for p in named):
        return []
    ids = [set(p[spec.id].dropna()) for p in named]
    shared = (ids[0] & ids[1]) | (ids[1] & ids[2]) | (ids[0] & ids[2])
    if not shared:
        return []
    return [f"{len(shared)} id(s) appear in more than one part (e.g. {sorted(map(str, shared))[0]!r})"]


def check_split(parts: Split, spec: DatasetConfig) -> None:
    """SplitError unless every part has rows of both classes, and time/id-disjointness holds where it should."""
    _raise(stat_problems(parts.stats(spec), parts.method, spec) or id_problems(parts, spec), parts.method)


def _raise(problems: list[str], method: str) -> None:
    """SplitError listing ``problems`` with what to try for ``method``; nothing when there are none."""
    if problems:
        hint = {"time": "fewer, larger parts (validation_fraction, holdout_fraction) or split method column/random",
                "column": "other holdout_values/validation_values", "random": "larger fractions or more data"}
        raise SplitError(f"{method} split failed: " + "; ".join(problems) + f". Try {hint[method]} in "
                         "the dataset config's split")
