"""Load a training table (path, s3:// URL, or DVC-tracked data at a git revision), validate it, split it by time.

Validation collects every violation before it raises, so one run tells the data scientist everything that is
wrong with the file, and no training starts on bad data.
"""

from __future__ import annotations

import hashlib
import io
import logging
import operator
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from steps.config import DatasetConfig, SplitConfig

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


class DataValidationError(ValueError):
    """The data broke the dataset schema; ``violations`` lists every problem found."""

    def __init__(self, source: str, violations: list[str]):
        self.source = source
        self.violations = violations
        lines = "\n".join(f"  - {v}" for v in violations)
        super().__init__(f"{source}: {len(violations)} validation error(s):\n{lines}")


@dataclass(frozen=True)
class Lineage:
    """Where the training data came from and what it contained."""

    source: str
    sha256: str
    size_bytes: int
    rows: int = 0
    time_min: str | None = None
    time_max: str | None = None
    data_rev: str | None = None
    dvc_md5: str | None = None
    git_revision: str | None = None
    git_dirty: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for artifacts, cards and JSON."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------- loading
def read_bytes(source: str, data_rev: str | None = None, repo: str | Path | None = None) -> bytes:
    """The raw bytes of ``source``: a local path, an ``s3://`` URL, or a DVC-tracked path at git ``data_rev``."""
    if data_rev is not None:
        import dvc.api

        try:
            return dvc.api.read(source, repo=str(repo or PROJECT_ROOT), rev=data_rev, mode="rb")
        except Exception as err:  # dvc raises many types; the message must name path and revision
            raise FileNotFoundError(f"cannot read DVC-tracked {source} at revision {data_rev}: {err}") from err
    if source.startswith("s3://"):
        import s3fs

        try:
            with s3fs.S3FileSystem().open(source, "rb") as fh:
                return fh.read()
        except FileNotFoundError as err:
            raise FileNotFoundError(f"data object not found: {source}") from err
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path.resolve()}")
    return path.read_bytes()


def parse_table(blob: bytes, source: str) -> pd.DataFrame:
    """Parse Parquet or CSV bytes (by extension) into a DataFrame; unreadable input names the file."""
    suffix = Path(source.split("?")[0]).suffix.lower()
    try:
        if suffix in (".csv", ".gz") or source.endswith(".csv.gz"):
            return pd.read_csv(io.BytesIO(blob), compression="infer" if suffix == ".csv" else "gzip")
        return pd.read_parquet(io.BytesIO(blob))
    except Exception as err:
        raise DataValidationError(source, [f"file is not readable as {suffix or 'parquet'}: {err}"]) from err


def dvc_md5(dvc_file: str | Path = "data.dvc", rev: str | None = None, repo: Path = PROJECT_ROOT) -> str | None:
    """The md5 that ``data.dvc`` records (at git ``rev`` when given), or None when it is not available."""
    try:
        text = (git("show", f"{rev}:{dvc_file}", cwd=repo) if rev else (repo / dvc_file).read_text())
        outs = yaml.safe_load(text)["outs"]
        return str(outs[0]["md5"])
    except Exception:  # lineage is best effort: a flow on AWS Batch has no git checkout
        return None


def tracked_by_dvc(source: str, dvc_file: str = "data.dvc", repo: Path = PROJECT_ROOT) -> bool:
    """True when ``source`` is a local file inside the output ``data.dvc`` tracks (so its md5 describes it)."""
    if source.startswith("s3://"):
        return False
    try:
        out = (repo / yaml.safe_load((repo / dvc_file).read_text())["outs"][0]["path"]).resolve()
        return Path(source).resolve().is_relative_to(out)
    except Exception:  # no data.dvc (e.g. on a remote task): nothing to claim
        return False


def git(*args: str, cwd: Path = PROJECT_ROOT) -> str:
    """Run git and return its stripped stdout."""
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def git_state(repo: Path = PROJECT_ROOT) -> tuple[str | None, bool | None]:
    """(HEAD revision, dirty flag) of the project checkout, or (None, None) outside a git repository."""
    try:
        return git("rev-parse", "HEAD", cwd=repo), bool(git("status", "--porcelain", "--untracked-files=no", cwd=repo))
    except Exception:
        return None, None


def load(source: str, spec: DatasetConfig, data_rev: str | None = None,
         repo: str | Path | None = None) -> tuple[pd.DataFrame, Lineage]:
    """Read ``source`` (or the DVC-tracked file at ``data_rev`` of ``repo``), derive target and id, record lineage.

    Args:
        source: a local path or s3:// URL; with ``data_rev``, a path inside the DVC repository.
        spec: the dataset schema.
        data_rev: a git revision (commit, tag, branch) of the DVC-tracked data, or None for the file as it is.
        repo: the git+DVC repository to read ``data_rev`` from (default: this project).
    """
    if data_rev is not None and source.startswith(("s3://", "/")):
        raise ValueError(f"--data-rev needs a path inside the DVC repository, got {source}")
    repo_path = Path(repo) if repo else PROJECT_ROOT
    blob = read_bytes(source, data_rev, repo_path)
    frame = parse_table(blob, source)
    frame = derive_columns(frame, spec)
    revision, dirty = git_state()  # the code revision; the data version is data_rev + dvc_md5
    lineage = Lineage(
        source=source if data_rev is None else f"{source}@{data_rev}",
        sha256=hashlib.sha256(blob).hexdigest(),
        size_bytes=len(blob),
        rows=len(frame),
        data_rev=data_rev,
        dvc_md5=dvc_md5(rev=data_rev, repo=repo_path) if data_rev or tracked_by_dvc(source) else None,
        git_revision=revision,
        git_dirty=dirty,
        extra={"data_repo": str(repo_path)} if data_rev is not None else {},
    )
    logger.info("loaded %d rows from %s", len(frame), lineage.source)
    return frame, lineage


def derive_columns(frame: pd.DataFrame, spec: DatasetConfig) -> pd.DataFrame:
    """Add the derived target and positional id where the dataset config asks for them."""
    frame = frame.copy()
    derive = spec.target.derive
    if derive is not None and derive.source in frame.columns:
        src = frame[derive.source]
        frame = frame.loc[src.notna()].reset_index(drop=True)
        frame[spec.target.name] = _OPS[derive.op](frame[derive.source], derive.value).astype("int64")
    if spec.id is None:
        frame.insert(0, "row_id", np.arange(len(frame), dtype=np.int64))
    if spec.time in frame.columns and not pd.api.types.is_datetime64_any_dtype(frame[spec.time]):
        frame[spec.time] = pd.to_datetime(frame[spec.time], utc=True, errors="coerce", format="mixed")
    return frame


def finish_lineage(lineage: Lineage, frame: pd.DataFrame, spec: DatasetConfig) -> Lineage:
    """Lineage with the validated frame's row count and time range filled in."""
    t = frame[spec.time]
    return Lineage(**{**lineage.to_dict(), "rows": len(frame), "time_min": str(t.min()), "time_max": str(t.max())})


# --------------------------------------------------------------------------------------------------- validation
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
    if not values <= {0, 1, True, False}:
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


# --------------------------------------------------------------------------------------------------- split
@dataclass(frozen=True)
class Split:
    """Train, validation and hold-out frames, ordered in time."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame

    def summary(self, time_col: str, target: str) -> dict[str, dict[str, Any]]:
        """Rows, positives and time range per part."""
        return {
            name: {
                "rows": len(part),
                "positives": int(part[target].sum()),
                "time_min": str(part[time_col].min()),
                "time_max": str(part[time_col].max()),
            }
            for name, part in (("train", self.train), ("validation", self.validation), ("holdout", self.holdout))
        }


def temporal_split(frame: pd.DataFrame, spec: DatasetConfig, split: SplitConfig) -> Split:
    """Cut a time-sorted frame at two timestamps: train < validation < hold-out, with no shared timestamp.

    Raises:
        ValueError: a part is empty, lacks positives, or the parts overlap in time or ids.
    """
    times = frame[spec.time]
    cut_valid = times.quantile(1.0 - split.holdout_fraction - split.validation_fraction)
    cut_hold = times.quantile(1.0 - split.holdout_fraction)
    parts = Split(
        train=frame[times < cut_valid].reset_index(drop=True),
        validation=frame[(times >= cut_valid) & (times < cut_hold)].reset_index(drop=True),
        holdout=frame[times >= cut_hold].reset_index(drop=True),
    )
    check_split(parts, spec)
    return parts


def check_split(parts: Split, spec: DatasetConfig) -> None:
    """Raise ValueError unless every part is non-empty, has both classes, and the parts are disjoint in time."""
    problems = []
    for name, part in (("train", parts.train), ("validation", parts.validation), ("holdout", parts.holdout)):
        if part.empty or part[spec.target.name].nunique() < 2:
            problems.append(f"the {name} part has {len(part)} rows and needs both classes")
    if not problems:
        if parts.train[spec.time].max() >= parts.validation[spec.time].min():
            problems.append("train and validation overlap in time")
        if parts.validation[spec.time].max() >= parts.holdout[spec.time].min():
            problems.append("validation and holdout overlap in time")
        ids = [set(p[spec.id_column]) for p in (parts.train, parts.validation, parts.holdout)]
        if ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2]:
            problems.append("the same id appears in more than one part")
    if problems:
        raise ValueError("temporal split failed: " + "; ".join(problems))
