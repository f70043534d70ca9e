"""Load a table (path, ``s3://`` URL, or DVC-tracked data at a git revision) and record its lineage."""

from __future__ import annotations

import hashlib
import io
import logging
import operator
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from steps.config.dataset import DatasetConfig
from steps.core import storage
from steps.core.errors import UserError
from steps.core.project import PROJECT_ROOT
from steps.data import content, table
from steps.data.contract import DataValidationError, time_label, validate

logger = logging.getLogger(__name__)

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


class DataSourceError(UserError, FileNotFoundError):
    """The data source does not exist or cannot be read; the message names it."""


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


def read_source(source: str, data_rev: str | None = None, repo: str | Path | None = None) -> bytes:
    """The raw bytes of ``source``: a local path, an ``s3://`` URL, or a DVC-tracked path at git ``data_rev``."""
    if data_rev is not None:
        import dvc.api

        try:
            return dvc.api.read(source, repo=str(repo or PROJECT_ROOT), rev=data_rev, mode="rb")
        except Exception as err:  # dvc raises many types; the message must name path and revision
            raise DataSourceError(f"cannot read DVC-tracked {source} at revision {data_rev}: {err}") from err
    if storage.is_s3(source):
        try:
            body = storage.read_bytes(source)
        except Exception as err:  # botocore: no credentials, access denied, no such bucket, endpoint unreachable
            raise DataSourceError(f"cannot read {source}: {type(err).__name__}: {err}") from None
        if body is None:
            raise DataSourceError(f"data object not found: {source}")
        return body
    path = Path(source)
    if path.is_dir():
        raise DataSourceError(f"{path.resolve()} is a folder: the data is one Parquet file (its bytes are hashed for "
                              "lineage); combine the parts into one file, or track the file with DVC")
    if not path.is_file():
        raise DataSourceError(f"data file not found: {path.resolve()}")
    return path.read_bytes()


def parse_table(blob: bytes | Path, source: str) -> pd.DataFrame:
    """Parse Parquet or CSV (bytes, or a local file read in place) by extension into a DataFrame; unreadable input
    names the file."""
    suffix = Path(source.split("?")[0]).suffix.lower()
    body = io.BytesIO(blob) if isinstance(blob, bytes) else blob
    try:
        if suffix in (".csv", ".gz") or source.endswith(".csv.gz"):
            return pd.read_csv(body, compression="infer" if suffix == ".csv" else "gzip")
        frame = pd.read_parquet(body, to_pandas_kwargs=table.TO_PANDAS)
    except Exception as err:
        raise DataValidationError(source, [f"file is not readable as {suffix or 'parquet'}: {err}"]) from err
    table.release_arrow_memory()
    return frame


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


def load_table(source: str, spec: DatasetConfig, data_rev: str | None = None,
               repo: str | Path | None = None, remote: str | None = None) -> tuple[pd.DataFrame, Lineage]:
    """Read ``source`` (or the DVC-tracked file at ``data_rev`` of ``repo``), derive the target, validate it
    (``contract.validate``: DataValidationError naming the file), and only then store its bytes in ``remote`` (a
    rejected file never lands there) and record lineage.

    Args:
        source: a local path or s3:// URL; with ``data_rev``, a path inside the DVC repository.
        spec: the dataset schema.
        data_rev: a git revision (commit, tag, branch) of the DVC-tracked data, or None for the file as it is.
        repo: the git+DVC repository to read ``data_rev`` from (default: this project).
        remote: where the bytes are stored content-addressed for reproductions (``steps.data.content``).
    """
    if data_rev is not None and source.startswith(("s3://", "/")):
        raise UserError(f"--data-rev needs a path inside the DVC repository, got {source}")
    repo_path = Path(repo) if repo else PROJECT_ROOT
    label = source if data_rev is None else f"{source}@{data_rev}"
    local = data_rev is None and not storage.is_s3(source) and Path(source).is_file()
    if local:  # hashed in chunks and parsed in place: the file's bytes are never held whole
        path = Path(source)
        digest, size = storage.sha256_file(path), path.stat().st_size
        frame = validate(derive_columns(parse_table(path, source), spec), spec, label)
        stored = content.store(path, remote)
    else:
        blob = read_source(source, data_rev, repo_path)
        digest, size = hashlib.sha256(blob).hexdigest(), len(blob)
        frame = validate(derive_columns(parse_table(blob, source), spec), spec, label)
        stored = content.store(blob, remote)
        del blob
    revision, dirty = git_state()  # the code revision; the data version is data_rev + dvc_md5
    lineage = Lineage(
        source=label,
        sha256=digest,
        size_bytes=size,
        rows=len(frame),
        data_rev=data_rev,
        dvc_md5=dvc_md5(rev=data_rev, repo=repo_path) if data_rev or tracked_by_dvc(source) else None,
        git_revision=revision,
        git_dirty=dirty,
        extra={**({"data_repo": str(repo_path)} if data_rev is not None else {}),
               "content": stored},
    )
    logger.info("loaded %d rows from %s", len(frame), lineage.source)
    return frame, lineage


def derive_columns(frame: pd.DataFrame, spec: DatasetConfig) -> pd.DataFrame:
    """Add the derived target where the dataset config asks for one (rows without its source are dropped)."""
    derive = spec.target.derive
    if derive is None or derive.source not in frame.columns:
        return frame
    frame = frame.loc[frame[derive.source].notna()].reset_index(drop=True)
    return frame.assign(**{spec.target.name: _OPS[derive.op](frame[derive.source], derive.value).astype("int64")})


def finish_lineage(lineage: Lineage, frame: pd.DataFrame, spec: DatasetConfig) -> Lineage:
    """Lineage with the validated frame's row count and time range (real dates, or periods) filled in."""
    times = frame[spec.time_column] if spec.time_column else None
    first = time_label(times.min(), spec.time) if times is not None else None
    last = time_label(times.max(), spec.time) if times is not None else None
    return Lineage(**{**lineage.to_dict(), "rows": len(frame), "time_min": first, "time_max": last})
