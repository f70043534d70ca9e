"""Streaming, sharded batch scoring to Hive-partitioned Parquet (the logic behind ScoreFlow).

Layout of one scored date under the output root (a local folder or an ``s3://`` prefix)::

    dt=YYYY-MM-DD/part-00000-of-00003.parquet            one part per shard, deterministic name (shard i of n)
    dt=YYYY-MM-DD/_manifest.json                         written last; readers trust only the parts it lists
    _quarantine/dt=YYYY-MM-DD/part-00000-of-00003.parquet   rows that failed validation, with a ``reason`` column

(``_quarantine`` starts with an underscore so that dataset readers scanning the root skip it, as they skip
``_manifest.json``.)

* Shards: ``start`` lists the input files and their row groups and cuts shards of about ``shard_rows`` rows at
  row-group boundaries (a row group larger than ``shard_rows`` is a shard on its own).
* Streaming: a shard reads ``batch_rows`` rows at a time with ``ParquetFile.iter_batches`` (no pre-buffering,
  categoricals decoded as dictionaries), validates each row, scores the valid ones and appends them to its part;
  with ``overlap_io`` a second thread reads and validates the next batch while the current one is scored.
* Atomic parts: a part is written to a temporary name (``.part-...tmp-<uuid>``, beside the final name locally; a
  local temporary file for S3) and renamed into place, or sent with a single PUT. A killed attempt can leave a
  temporary file behind; ``join`` removes it.
* Idempotence: ``start`` retracts the date's old manifest (the partition is untrusted while it is rewritten);
  shards overwrite their parts by name; ``join`` deletes every file of the partition (and of its quarantine
  partition) that the new manifest does not list, then writes the manifest. A rerun therefore replaces the date,
  whatever the old shard count was, and readers never see duplicates through the manifest.
* Spot: between record batches a shard looks for the spot termination notice (``current.spot_termination_notice``
  on AWS Batch; ``MLOPS_SPOT_NOTICE_PATH`` overrides it, with ``{shard}`` and ``{attempt}`` filled in) and
  raises :class:`SpotTermination`, so ``@retry`` redoes the shard from scratch.
* Fault injection (tests): ``fault_injection`` in the score config, or ``MLOPS_SCORE_FAULT`` (JSON merged over
  it, e.g. ``{"enabled": true, "shards": [1]}``), makes chosen shards die after writing some batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date as Date
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from steps import models
from steps.config import DatasetConfig, FaultInjection, ScoreConfig
from steps.efficiency import in_band

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
QUARANTINE = "_quarantine"
MANIFEST_VERSION = 1
FAULT_ENV = "MLOPS_SCORE_FAULT"
SPOT_NOTICE_ENV = "MLOPS_SPOT_NOTICE_PATH"
FAULT_EXIT_CODE = 75
PREFETCH_DEPTH = 2
_HASH_CHUNK = 1 << 20


class ScoreInputError(ValueError):
    """The input cannot be scored; the message names the file (or location) and the problem."""


class SchemaMismatch(ScoreInputError):
    """An input file lacks columns the model needs, or has them with unusable types; the message names them."""


class ScoreModelError(RuntimeError):
    """No usable model: no champion, a run on another branch, a failed run, or a feature mismatch."""


class QuarantineLimitExceeded(RuntimeError):
    """More rows failed validation than ``max_quarantine_rate`` allows; the partition gets no manifest."""


class SpotTermination(RuntimeError):
    """A spot termination notice arrived: the shard stops, discards its temporary part and lets @retry redo it."""


class InjectedFault(RuntimeError):
    """A failure planted by fault injection."""


# --------------------------------------------------------------------------------------------------- storage
def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs."""
    return uri.startswith("s3://")


def join_uri(root: str, *parts: str) -> str:
    """``root/part/...`` for a local path or an ``s3://`` prefix."""
    if is_s3(root):
        return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root).joinpath(*parts))


def absolute(uri: str) -> str:
    """``uri`` unchanged for s3://, else the absolute local path."""
    return uri if is_s3(uri) else str(Path(uri).expanduser().resolve())


def _split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of an ``s3://`` URI."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def _endpoint() -> str | None:
    """The S3 endpoint override (a local server in tests): METAFLOW_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL."""
    return os.environ.get("METAFLOW_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


@lru_cache(maxsize=4)
def _s3_client(endpoint: str | None) -> Any:
    """A boto3 S3 client for ``endpoint`` (None: AWS)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint)


def s3_client() -> Any:
    """The boto3 S3 client for the configured endpoint."""
    return _s3_client(_endpoint())


@lru_cache(maxsize=4)
def _arrow_s3(endpoint: str | None, region: str | None) -> Any:
    """A pyarrow S3 filesystem for ``endpoint`` (None: AWS)."""
    from pyarrow import fs

    kwargs: dict[str, Any] = {"region": region} if region else {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    return fs.S3FileSystem(**kwargs)


def arrow_s3() -> Any:
    """The pyarrow S3 filesystem for the configured endpoint and region."""
    return _arrow_s3(_endpoint(), os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"))


def list_files(directory: str) -> list[str]:
    """Names of the files directly under ``directory`` (local folder or s3 prefix); [] when it does not exist."""
    if is_s3(directory):
        bucket, key = _split_s3(directory.rstrip("/") + "/")
        names = []
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key, Delimiter="/"):
            names.extend(o["Key"][len(key):] for o in page.get("Contents", []))
        return sorted(names)
    path = Path(directory)
    return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []


def delete(uri: str) -> None:
    """Delete one file or object (missing is fine)."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        s3_client().delete_object(Bucket=bucket, Key=key)
    else:
        Path(uri).unlink(missing_ok=True)


def read_bytes(uri: str) -> bytes | None:
    """The bytes of a file or object, or None when it does not exist."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = s3_client()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
    path = Path(uri)
    return path.read_bytes() if path.is_file() else None


def put_bytes(uri: str, body: bytes) -> None:
    """Write ``body`` atomically: tmp file + rename locally, one PUT on S3."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=body)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def use_lean_arrow_pool() -> str:
    """Switch Arrow to its jemalloc pool when built with it, with immediate page return (decay 0).

    Freed batch memory goes back to the system sooner than with mimalloc: on this project's data the peak RSS of a
    streamed shard is 30-70 MB lower. Returns the pool's name.
    """
    pool = pa.default_memory_pool()
    if pool.backend_name != "jemalloc":
        try:
            pa.set_memory_pool(pa.jemalloc_memory_pool())
        except (NotImplementedError, pa.ArrowNotImplementedError):
            return pool.backend_name
    if pa.default_memory_pool().backend_name == "jemalloc":
        pa.jemalloc_set_decay_ms(0)  # return freed pages at once: a shard's memory stays flat batch after batch
    return pa.default_memory_pool().backend_name


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class InputFile:
    """One input Parquet file: where it is and how many rows each of its row groups holds."""

    path: str
    row_groups: tuple[int, ...]
    size_bytes: int

    @property
    def rows(self) -> int:
        """Rows in the file."""
        return sum(self.row_groups)


def _visible(relative: str) -> bool:
    """False for paths with a component starting with '.' or '_' (temporary files, manifests, quarantine)."""
    return not any(part.startswith((".", "_")) for part in relative.split("/") if part)


def list_inputs(location: str) -> list[str]:
    """The Parquet files of ``location``: a file, or every ``*.parquet`` below a folder / s3 prefix, sorted.

    Raises:
        ScoreInputError: nothing to read there (a missing path, or a folder without Parquet files).
    """
    if is_s3(location):
        from pyarrow import fs

        filesystem, path = arrow_s3(), location[len("s3://"):].rstrip("/")
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.File:
            return [location]
        found = [] if info.type == fs.FileType.NotFound else filesystem.get_file_info(
            fs.FileSelector(path, recursive=True))
        files = sorted(f"s3://{f.path}" for f in found if f.type == fs.FileType.File and f.path.endswith(".parquet")
                       and _visible(f.path[len(path):]))
    else:
        root = Path(location)
        if root.is_file():
            return [str(root)]
        files = sorted(str(p) for p in root.rglob("*.parquet") if p.is_file()
                       and _visible(str(p.relative_to(root)))) if root.is_dir() else []
    if not files:
        raise ScoreInputError(f"no Parquet files at {location}")
    return files


def open_parquet(path: str, read_dictionary: list[str] | None = None) -> pq.ParquetFile:
    """Open one Parquet file (local or s3) for streaming, without pre-buffering; errors name the file."""
    try:
        source: Any = arrow_s3().open_input_file(path[len("s3://"):]) if is_s3(path) else path
        return pq.ParquetFile(source, pre_buffer=False, read_dictionary=read_dictionary)
    except FileNotFoundError as err:
        raise ScoreInputError(f"{path}: file not found") from err
    except Exception as err:  # ArrowInvalid, OSError, ...: a corrupt or unreadable file
        raise ScoreInputError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from err


def required_columns(spec: DatasetConfig) -> list[str]:
    """The columns a scoring input must have: the id and every model feature."""
    return [spec.id_column, *spec.features]


def _numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)


def _string_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def check_schema(schema: pa.Schema, spec: DatasetConfig, source: str) -> None:
    """Raise :class:`SchemaMismatch` naming ``source`` and every missing or wrongly typed column."""
    names = set(schema.names)
    missing = [c for c in required_columns(spec) if c not in names]
    wrong = [f"{c} ({schema.field(c).type}, expected numeric)" for c in spec.numeric
             if c in names and not _numeric_type(schema.field(c).type)]
    wrong += [f"{c} ({schema.field(c).type}, expected string)" for c in spec.categorical
              if c in names and not _string_type(schema.field(c).type)]
    problems = ([f"missing columns {missing}"] if missing else []) + (
        [f"columns with unusable types: {', '.join(wrong)}"] if wrong else [])
    if problems:
        raise SchemaMismatch(f"{source}: schema mismatch: " + "; ".join(problems))


def inspect_inputs(paths: list[str], spec: DatasetConfig) -> list[InputFile]:
    """Read each file's footer: schema check and rows per row group (no data pages are read)."""
    out = []
    for path in paths:
        pf = open_parquet(path)
        check_schema(pf.schema_arrow, spec, path)
        meta = pf.metadata
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        out.append(InputFile(path, groups, size))
    return out


# --------------------------------------------------------------------------------------------------- shards
@dataclass(frozen=True)
class Piece:
    """Some consecutive row groups of one input file."""

    path: str
    row_groups: tuple[int, ...]
    rows: int


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the pieces it reads and the part it writes."""

    index: int
    count: int
    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        """Rows in the shard."""
        return sum(p.rows for p in self.pieces)

    @property
    def part_name(self) -> str:
        """The deterministic file name of its output part."""
        return part_name(self.index, self.count)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (artifact, foreach item)."""
        return {"index": self.index, "count": self.count, "rows": self.rows,
                "pieces": [{"path": p.path, "row_groups": list(p.row_groups), "rows": p.rows} for p in self.pieces]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Shard":
        """Inverse of :meth:`to_dict`."""
        pieces = tuple(Piece(p["path"], tuple(p["row_groups"]), p["rows"]) for p in data["pieces"])
        return cls(data["index"], data["count"], pieces)


def part_name(index: int, count: int) -> str:
    """``part-<index, 5 digits>-of-<count, 5 digits>.parquet``."""
    return f"part-{index:05d}-of-{count:05d}.parquet"


def plan_shards(files: list[InputFile], shard_rows: int) -> list[Shard]:
    """Cut shards of about ``shard_rows`` rows at row-group boundaries, in file order; never zero shards.

    A shard may span files; empty row groups are skipped; an input without rows gives one empty shard (it writes
    an empty part, so the date still gets a partition and a manifest).
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    groups: list[list[tuple[str, int, int]]] = [[]]  # per shard: (path, row group, rows)
    filled = 0
    for f in files:
        for i, rows in enumerate(f.row_groups):
            if rows == 0:
                continue
            if filled >= shard_rows:
                groups.append([])
                filled = 0
            groups[-1].append((f.path, i, rows))
            filled += rows
    shards = []
    for index, members in enumerate(groups):
        pieces: list[Piece] = []
        for path, rg, rows in members:
            if pieces and pieces[-1].path == path:
                last = pieces[-1]
                pieces[-1] = Piece(path, (*last.row_groups, rg), last.rows + rows)
            else:
                pieces.append(Piece(path, (rg,), rows))
        shards.append(Shard(index, len(groups), tuple(pieces)))
    return shards


def partition_date(value: str | None = None) -> str:
    """``value`` checked as YYYY-MM-DD, or today's date in UTC."""
    if not value:
        return datetime.now(timezone.utc).date().isoformat()
    try:
        return Date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"--date must be YYYY-MM-DD, got {value!r}") from None


def partition_uri(output_root: str, day: str) -> str:
    """``<root>/dt=<day>``."""
    return join_uri(output_root, f"dt={day}")


def quarantine_uri(output_root: str, day: str) -> str:
    """``<root>/_quarantine/dt=<day>``."""
    return join_uri(output_root, QUARANTINE, f"dt={day}")


# --------------------------------------------------------------------------------------------------- validation
def _null_mask(col: pd.Series) -> np.ndarray:
    """Missing values of a column; for strings '' counts as missing (the pipeline maps it to MISSING too)."""
    mask = col.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
        mask = mask | (col.astype("object") == "").to_numpy()
    elif isinstance(col.dtype, pd.CategoricalDtype):
        empty = np.asarray(col.cat.categories == "")
        codes = col.cat.codes.to_numpy()
        mask = mask | ((codes >= 0) & np.append(empty, False)[codes])
    return mask


def _unknown_mask(col: pd.Series, allowed: list[str], nulls: np.ndarray) -> np.ndarray:
    """Non-missing values outside ``allowed``."""
    if isinstance(col.dtype, pd.CategoricalDtype):  # compare the few levels, then look up by code
        bad_level = ~np.asarray(col.cat.categories.astype(str).isin(allowed))
        codes = col.cat.codes.to_numpy()
        return (codes >= 0) & np.append(bad_level, False)[codes] & ~nulls
    return ~nulls & ~col.astype("object").isin(allowed).to_numpy()


Rule = tuple[str, np.ndarray, pd.Series]  # (label, mask, column whose value the reason quotes)


def _rules(frame: pd.DataFrame, spec: DatasetConfig) -> Iterator[Rule]:
    """Every row-level rule of the dataset schema that some row breaks: (label, mask, column)."""
    missing = [c for c in required_columns(spec) if c not in frame.columns]
    if missing:
        raise SchemaMismatch(f"schema mismatch: missing columns {missing}")
    ident = frame[spec.id_column]
    yield f"{spec.id_column} is null", ident.isna().to_numpy(), ident
    for name, num in spec.numeric.items():
        col = frame[name]
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            coerced = pd.to_numeric(col.astype("object"), errors="coerce")
            yield f"{name} is not a number", (col.notna() & coerced.isna()).to_numpy(), col
            col = coerced
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        if num.max_null_rate == 0.0:
            yield f"{name} is null", np.isnan(values), col
        finite = np.isfinite(values)
        yield f"{name} is infinite", np.isinf(values), col
        if num.min is not None:
            yield f"{name} below min {num.min:g}", finite & (values < num.min), col
        if num.max is not None:
            yield f"{name} above max {num.max:g}", finite & (values > num.max), col
    for name, cat in spec.categorical.items():
        col = frame[name]
        nulls = _null_mask(col)
        if cat.max_null_rate == 0.0:
            yield f"{name} is null", nulls, col
        if cat.categories is not None and cat.max_unknown_rate == 0.0:
            yield f"{name} unknown category", _unknown_mask(col, cat.categories, nulls), col


def row_violations(frame: pd.DataFrame, spec: DatasetConfig) -> pd.Series:
    """The reason each row breaks the dataset schema (``'; '``-joined), or None for a valid row.

    Row-level reading of ``data.validate``'s rules: the id must be present; numeric values must be numbers within
    [min, max] and finite, and present unless the column has a null budget (``max_null_rate`` > 0); categoricals
    must be present unless they have a null budget, and a known level unless they have an unknown budget
    (``max_unknown_rate`` > 0; the model then maps unseen levels to its unknown code). Dataset-level budgets
    (rates) are not judged per row; the quarantine rate is judged per run.
    """
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    rules = [(label, mask, col) for label, mask, col in _rules(frame, spec) if mask.any()]
    if rules:
        bad = np.flatnonzero(np.logical_or.reduce([mask for _, mask, _ in rules]))
        texts: list[list[str]] = [[] for _ in bad]
        for label, mask, col in rules:
            for j in np.flatnonzero(mask[bad]):
                value = col.iloc[bad[j]]
                value = value.item() if isinstance(value, np.generic) else value
                texts[j].append(label if pd.isna(value) or "null" in label else f"{label} (got {value!r})")
        reasons[bad] = ["; ".join(t) for t in texts]
    return pd.Series(reasons, index=frame.index, name="reason", dtype=object)


def reason_labels(reason: str) -> list[str]:
    """The rule labels in a reason (values dropped), for counting."""
    return [part.split(" (got ")[0] for part in reason.split("; ")]


# --------------------------------------------------------------------------------------------------- models
class Scorer(Protocol):
    """Raw rows in, one positive-class probability per row out."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores for ``frame``'s rows."""


class NativeScorer:
    """The fitted scikit-learn pipeline itself."""

    def __init__(self, pipeline: Any, features: list[str], threads: int = 1) -> None:
        self.pipeline, self.features = pipeline, list(features)
        estimator = pipeline[-1]
        if "n_jobs" in estimator.get_params():
            estimator.set_params(n_jobs=threads)  # a runtime setting of the loaded copy; the stored bytes are unchanged

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probabilities (float64)."""
        if frame.empty:
            return np.empty(0)
        return np.asarray(self.pipeline.predict_proba(frame[self.features])[:, 1], dtype=np.float64)


def build_scorer(runtime: str, pipeline: Any, spec: DatasetConfig, onnx_bytes: bytes | None = None,
                 threads: int = 1) -> Scorer:
    """The configured runtime: ``native`` (the pipeline) or ``onnx`` (ONNX Runtime on ``onnx_bytes``)."""
    if runtime == "native":
        return NativeScorer(pipeline, spec.features, threads)
    if runtime == "onnx":
        from steps.export import OnnxScorer

        if onnx_bytes is None:
            raise ValueError("runtime onnx needs the model's ONNX bytes")
        return OnnxScorer(onnx_bytes, threads)
    raise ValueError(f"unknown runtime {runtime!r} (native or onnx)")


def check_explainable(pipeline: Any, top_k: int) -> list[str]:
    """The transformed feature names when ``top_k`` contributions can be computed; ScoreModelError otherwise."""
    estimator = pipeline[-1]
    if type(estimator).__name__ != "LGBMClassifier":
        raise ScoreModelError(f"top_k contributions need a LightGBM model (pred_contrib); the model is "
                              f"{type(estimator).__name__}: set top_k: 0")
    names = [str(n) for n in pipeline[:-1].get_feature_names_out()]
    if top_k > len(names):
        raise ScoreModelError(f"top_k {top_k} exceeds the model's {len(names)} features")
    return names


def top_contributions(pipeline: Any, frame: pd.DataFrame, features: list[str], k: int) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """(feature index [n, k], contribution [n, k]) of the k largest |contributions| per row (LightGBM, log-odds)."""
    transformed = pipeline[:-1].transform(frame[features])
    contrib = pipeline[-1].predict(transformed, pred_contrib=True)[:, :-1]  # the last column is the bias
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(contrib, order, axis=1)


@dataclass(frozen=True)
class ResolvedModel:
    """A TrainFlow run's model, verified against its fingerprint."""

    run: str
    name: str
    fingerprint: str
    features: list[str]
    blob: bytes = field(repr=False)
    pipeline: Any = field(repr=False, compare=False)
    onnx: bytes | None = field(default=None, repr=False)  # a DistillFlow student's registered ONNX graph

    def describe(self) -> dict[str, Any]:
        """Run, name and fingerprint (for artifacts and the manifest)."""
        return {"run": self.run, "name": self.name, "fingerprint": self.fingerprint}


def resolve_model(model_run: str | None, branch: str, project: str, spec: DatasetConfig | None = None,
                  flow: str = "TrainFlow") -> ResolvedModel:
    """``model_run`` (run id or pathspec, on this project branch) or the branch's champion, fingerprint-verified.

    With ``spec``, the model's recorded features must be the dataset config's (ScoreModelError otherwise).
    """
    from steps.registry import Registry, RegistryError, load_model

    reg = Registry(flow=flow, branch=branch, project=project)
    try:
        run = reg.run(model_run) if model_run else reg.champion()
    except RegistryError as err:
        raise ScoreModelError(str(err)) from err
    if run is None:
        raise ScoreModelError(f"no champion for {flow} on branch {branch} of project {project}: "
                              "promote one, or pass --model-run")
    if not model_run:
        student = serving_student(run.id, branch, project)
        if student is not None:
            return student
    if not run.successful:
        raise ScoreModelError(f"run {run.pathspec} did not finish successfully")
    pipeline = load_model(run)  # refuses bytes that do not hash to the recorded fingerprint
    data = run.data
    schema = data.feature_schema if "feature_schema" in data else {}
    resolved = ResolvedModel(run.pathspec, str(data.model_name), str(data.model_fingerprint),
                             list(schema.get("features", [])), data.model_blob, pipeline)
    if spec is not None:
        check_features(resolved, spec)
    return resolved


def serving_student(teacher_run_id: str, branch: str, project: str) -> ResolvedModel | None:
    """The newest DistillFlow run tagged ``serving`` whose teacher is ``teacher_run_id``, verified; or None.

    The distilled student serves in place of its teacher; once the champion changes, its old student no longer
    matches and the new champion itself is used until it is distilled.
    """
    from steps.registry import Registry, load_model

    for run in Registry(flow="DistillFlow", branch=branch, project=project).runs("serving"):
        data = run.data
        if str(data.teacher_run_id) != str(teacher_run_id):
            continue
        if models.fingerprint(data.onnx_model) != data.onnx_fingerprint:
            raise ScoreModelError(f"serving student {run.pathspec}: ONNX bytes do not match their fingerprint")
        logger.info("serving the distilled student %s of champion %s", run.pathspec, teacher_run_id)
        return ResolvedModel(run.pathspec, str(data.model_name), str(data.model_fingerprint), [], data.model_blob,
                             load_model(run), data.onnx_model)
    return None


def check_features(model: ResolvedModel, spec: DatasetConfig) -> None:
    """ScoreModelError when the model was trained on other features than the dataset config lists."""
    if model.features and model.features != spec.features:
        raise ScoreModelError(f"model {model.run} was trained on features {model.features}, but the dataset config "
                              f"lists {spec.features}")


def load_pipeline(blob: bytes, fingerprint: str) -> Any:
    """The pipeline from its bytes, only when they hash to ``fingerprint``."""
    return models.deserialize(blob, fingerprint)


# --------------------------------------------------------------------------------------------------- writing
class PartWriter:
    """One Parquet file written atomically: a temporary file, then a rename (local) or a single PUT (s3)."""

    def __init__(self, uri: str, schema: pa.Schema, compression: str = "zstd",
                 dictionary_columns: list[str] | None = None, tmp_dir: str | None = None) -> None:
        self.uri, self.schema, self.rows = uri, schema, 0
        if is_s3(uri):
            fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=tmp_dir)
            os.close(fd)
            self.tmp = Path(tmp)
        else:
            final = Path(uri)
            final.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex}")
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self.tmp, schema, compression=compression, use_dictionary=dictionary_columns or False,
            write_statistics=True, store_schema=False)

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one record batch (one row group)."""
        assert self._writer is not None, "writer already closed"
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def commit(self) -> dict[str, Any]:
        """Close, hash and move the file into place; returns uri, rows, bytes and sha256."""
        assert self._writer is not None, "writer already closed"
        self._writer.close()
        self._writer = None
        digest, size = sha256_file(self.tmp), self.tmp.stat().st_size
        if is_s3(self.uri):
            bucket, key = _split_s3(self.uri)
            with open(self.tmp, "rb") as fh:
                s3_client().put_object(Bucket=bucket, Key=key, Body=fh)  # one PUT: the object appears whole or not
            self.tmp.unlink()
        else:
            os.replace(self.tmp, self.uri)
        return {"uri": self.uri, "rows": self.rows, "bytes": size, "sha256": digest}

    def abort(self) -> None:
        """Close and delete the temporary file."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if self._writer is not None:
            self.abort()


def output_schema(id_type: pa.DataType, id_column: str, top_k: int = 0, shadow: bool = False) -> pa.Schema:
    """Columns of a prediction row (constant strings dictionary-encoded, floats plain)."""
    label = pa.dictionary(pa.int32(), pa.string())
    fields = [pa.field(id_column, id_type), pa.field("score", pa.float64()), pa.field("decision", pa.bool_()),
              pa.field("review", pa.bool_()), pa.field("model_run", label), pa.field("model_fingerprint", label),
              pa.field("scored_at", pa.timestamp("us", tz="UTC"))]
    for i in range(1, top_k + 1):
        fields += [pa.field(f"top{i}_feature", label), pa.field(f"top{i}_contribution", pa.float64())]
    if shadow:
        fields += [pa.field("shadow_score", pa.float64()), pa.field("shadow_decision", pa.bool_())]
    return pa.schema(fields)


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns to dictionary-encode in Parquet: the dictionary-typed ones (never the floats)."""
    return [f.name for f in schema if pa.types.is_dictionary(f.type)]


def _constant(value: str, n: int) -> pa.DictionaryArray:
    """``n`` copies of one string as a dictionary array (no per-row string copies)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


# --------------------------------------------------------------------------------------------------- guard
def fault_settings(configured: FaultInjection, env: str | None = None) -> FaultInjection:
    """The config's fault injection, with ``MLOPS_SCORE_FAULT`` (JSON object, or '1') merged over it."""
    raw = os.environ.get(FAULT_ENV, "") if env is None else env
    if not raw.strip():
        return configured
    override = {"enabled": True} if raw.strip().lower() in ("1", "true", "yes") else json.loads(raw)
    return FaultInjection.model_validate({**configured.model_dump(), **override})


def spot_notice_path(current_notice: str | None, shard: int, attempt: int) -> str | None:
    """Where the spot termination notice appears: MLOPS_SPOT_NOTICE_PATH, else Metaflow's.

    ``{shard}`` and ``{attempt}`` in the override are filled in: a test hook, since on AWS Batch every attempt runs
    on its own instance and a notice never outlives the attempt it was meant for.
    """
    override = os.environ.get(SPOT_NOTICE_ENV)
    if not override:
        return current_notice
    return override.replace("{shard}", str(shard)).replace("{attempt}", str(attempt))


@dataclass
class Guard:
    """Checks between record batches: the spot termination notice, and planted faults."""

    shard: int = 0
    attempt: int = 0
    notice_path: str | None = None
    fault: FaultInjection = field(default_factory=FaultInjection)

    def before_batch(self) -> None:
        """Raise :class:`SpotTermination` when the notice file exists."""
        if self.notice_path and os.path.exists(self.notice_path):
            raise SpotTermination(f"spot termination notice at {self.notice_path}: shard {self.shard} attempt "
                                  f"{self.attempt} stops; its temporary part is discarded and @retry redoes it")

    def after_batch(self, batches: int, writer: PartWriter) -> None:
        """Die (or raise) mid-write when fault injection targets this shard and attempt."""
        f = self.fault
        if not (f.enabled and self.shard in f.shards and self.attempt in f.attempts and batches >= f.after_batches):
            return
        message = (f"fault injection: shard {self.shard} attempt {self.attempt} fails after {batches} batch(es) "
                   f"written to {writer.tmp}")
        if f.mode == "raise":
            raise InjectedFault(message)
        logger.error("%s (process exits with %d)", message, FAULT_EXIT_CODE)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(FAULT_EXIT_CODE)  # like a reclaimed instance: no cleanup, the temporary file stays


# --------------------------------------------------------------------------------------------------- streaming
@dataclass(frozen=True)
class ShardJob:
    """Everything a shard needs besides the models."""

    shard: Shard
    output_root: str
    day: str
    spec: DatasetConfig
    threshold: float
    band: tuple[float, float]
    batch_rows: int
    model_run: str
    model_fingerprint: str
    top_k: int = 0
    compression: str = "zstd"
    overlap_io: bool = True
    id_type: str = "int64"
    feature_names: tuple[str, ...] = ()
    tmp_dir: str | None = None

    @property
    def part_uri(self) -> str:
        """Where the shard's part goes."""
        return join_uri(partition_uri(self.output_root, self.day), self.shard.part_name)

    @property
    def quarantine_part_uri(self) -> str:
        """Where the shard's quarantined rows go."""
        return join_uri(quarantine_uri(self.output_root, self.day), self.shard.part_name)


@dataclass
class _Batch:
    """One record batch as read: Arrow, pandas, and the reason per row (None = valid)."""

    source: str
    arrow: pa.RecordBatch
    frame: pd.DataFrame
    valid: np.ndarray
    reasons: pd.Series


def _read(job: ShardJob, clock: dict[str, float]) -> Iterator[_Batch]:
    """Stream the shard's rows batch by batch, validated; adds its time to ``clock['read_validate_s']``."""
    spec = job.spec
    columns, cats = required_columns(spec), list(spec.categorical)
    for piece in job.shard.pieces:
        started = time.perf_counter()
        pf = open_parquet(piece.path, read_dictionary=cats)
        check_schema(pf.schema_arrow, spec, piece.path)  # the file may have changed since start
        batches = pf.iter_batches(batch_size=job.batch_rows, row_groups=list(piece.row_groups), columns=columns,
                                  use_threads=False, use_pandas_metadata=False)
        clock["read_validate_s"] += time.perf_counter() - started
        while True:
            started = time.perf_counter()
            try:
                arrow = next(batches)
            except StopIteration:
                break
            except Exception as err:
                raise ScoreInputError(f"{piece.path}: cannot read row groups {list(piece.row_groups)} "
                                      f"({type(err).__name__}: {err})") from err
            frame = arrow.to_pandas(split_blocks=True)  # one block per column: numbers without nulls zero-copy
            reasons = row_violations(frame, spec)
            valid = reasons.isna().to_numpy()
            clock["read_validate_s"] += time.perf_counter() - started
            yield _Batch(piece.path, arrow, frame, valid, reasons)


_DONE = object()


class _Failure:
    """An exception raised by the prefetch thread, handed to the consumer."""

    def __init__(self, err: BaseException) -> None:
        self.err = err


def _prefetch(items: Iterator[Any], depth: int = PREFETCH_DEPTH) -> Iterator[Any]:
    """Run ``items`` on a background thread, ``depth`` items ahead; errors re-raise in the consumer."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Failure(err))

    thread = threading.Thread(target=work, name="score-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.err
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


class _Quarantine:
    """The shard's quarantine part, opened on the first invalid row."""

    def __init__(self, uri: str, compression: str, tmp_dir: str | None) -> None:
        self.uri, self.compression, self.tmp_dir = uri, compression, tmp_dir
        self.writer: PartWriter | None = None

    def write(self, batch: _Batch) -> None:
        """Append the batch's invalid rows (categoricals as plain strings) with their reason and source file."""
        bad = ~batch.valid
        table = pa.Table.from_batches([batch.arrow]).filter(pa.array(bad))
        table = table.cast(pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f
                                      for f in table.schema]))
        table = table.append_column("reason", pa.array(batch.reasons.to_numpy()[bad], type=pa.string()))
        table = table.append_column("source", pa.array([batch.source] * table.num_rows, type=pa.string()))
        if self.writer is None:
            self.writer = PartWriter(self.uri, table.schema, self.compression, tmp_dir=self.tmp_dir)
        for rb in table.cast(self.writer.schema).to_batches():
            self.writer.write(rb)

    def commit(self) -> dict[str, Any] | None:
        """Move the part into place (None when no row was quarantined)."""
        return self.writer.commit() if self.writer is not None else None

    def abort(self) -> None:
        """Discard the temporary file."""
        if self.writer is not None:
            self.writer.abort()


def _shadow_stats(main: np.ndarray, shadow: np.ndarray, threshold: float, acc: dict[str, float]) -> None:
    """Accumulate agreement counts of two score vectors into ``acc``."""
    a, b = main >= threshold, shadow >= threshold
    diff = np.abs(main - shadow)
    acc["rows"] += main.size
    acc["agree"] += int((a == b).sum())
    acc["to_positive"] += int((~a & b).sum())
    acc["to_negative"] += int((a & ~b).sum())
    acc["sum_abs_diff"] += float(diff.sum())
    acc["max_abs_diff"] = max(acc["max_abs_diff"], float(diff.max()) if diff.size else 0.0)


def _output_batch(job: ShardJob, schema: pa.Schema, batch: _Batch, scores: np.ndarray, scored_at: np.datetime64,
                  contributions: tuple[np.ndarray, np.ndarray] | None, shadow: np.ndarray | None) -> pa.RecordBatch:
    """The prediction rows of one batch as Arrow, in ``schema``'s column order."""
    ids = batch.arrow.column(job.spec.id_column)
    if not batch.valid.all():
        ids = ids.filter(pa.array(batch.valid))
    n = len(scores)
    columns: list[pa.Array] = [
        ids.cast(schema.field(0).type), pa.array(scores, type=pa.float64()),
        pa.array(scores >= job.threshold), pa.array(in_band(scores, job.band)),
        _constant(job.model_run, n), _constant(job.model_fingerprint, n),
        pa.array(np.full(n, scored_at), type=pa.timestamp("us", tz="UTC")),
    ]
    if contributions is not None:
        order, values = contributions
        names = pa.array(list(job.feature_names))
        for i in range(job.top_k):
            columns += [pa.DictionaryArray.from_arrays(pa.array(order[:, i].astype(np.int32)), names),
                        pa.array(values[:, i], type=pa.float64())]
    if shadow is not None:
        columns += [pa.array(shadow, type=pa.float64()), pa.array(shadow >= job.threshold)]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def score_shard(job: ShardJob, model: Scorer, shadow: Scorer | None = None, explain: Any = None,
                guard: Guard | None = None, threads: int = 1) -> dict[str, Any]:
    """Stream one shard: validate, score, write its part (and quarantine part) atomically; returns its record.

    Args:
        job: the shard and how to score it.
        model: the serving runtime.
        shadow: a challenger scored into ``shadow_*`` columns, with agreement counts in the record.
        explain: the native pipeline, for ``job.top_k`` LightGBM contributions per row.
        guard: spot-notice and fault-injection checks between batches.
        threads: thread limit for native libraries (BLAS/OpenMP) while scoring.
    """
    guard = guard or Guard(shard=job.shard.index)
    use_lean_arrow_pool()
    started = time.perf_counter()
    scored_at = np.datetime64(datetime.now(timezone.utc).replace(tzinfo=None), "us")
    schema = output_schema(pa.type_for_alias(job.id_type), job.spec.id_column, job.top_k, shadow is not None)
    clock = {"read_validate_s": 0.0, "predict_s": 0.0, "write_s": 0.0}
    counts = {"rows_in": 0, "rows_out": 0, "rows_quarantined": 0, "batches": 0}
    reasons: Counter[str] = Counter()
    agreement = {"rows": 0, "agree": 0, "to_positive": 0, "to_negative": 0, "sum_abs_diff": 0.0, "max_abs_diff": 0.0}
    stream = _read(job, clock)
    batches = _prefetch(stream) if job.overlap_io else stream
    quarantine = _Quarantine(job.quarantine_part_uri, job.compression, job.tmp_dir)
    try:
        with threadpool_limits(limits=threads), PartWriter(job.part_uri, schema, job.compression,
                                                           dictionary_columns(schema), job.tmp_dir) as part:
            for batch in _iter_guarded(batches, guard):
                t0 = time.perf_counter()
                frame = batch.frame if batch.valid.all() else batch.frame[batch.valid]
                scores = model.predict(frame)
                contributions = top_contributions(explain, frame, job.spec.features, job.top_k) if job.top_k else None
                shadow_scores = shadow.predict(frame) if shadow is not None else None
                t1 = time.perf_counter()
                part.write(_output_batch(job, schema, batch, scores, scored_at, contributions, shadow_scores))
                if not batch.valid.all():
                    quarantine.write(batch)
                    reasons.update(label for r in batch.reasons.dropna() for label in reason_labels(r))
                clock["predict_s"] += t1 - t0
                clock["write_s"] += time.perf_counter() - t1
                if shadow_scores is not None:
                    _shadow_stats(scores, shadow_scores, job.threshold, agreement)
                counts["rows_in"] += len(batch.valid)
                counts["rows_out"] += len(scores)
                counts["rows_quarantined"] += int((~batch.valid).sum())
                counts["batches"] += 1
                guard.after_batch(counts["batches"], part)
            if counts["rows_in"] != job.shard.rows:  # checked before anything is moved into place
                raise ScoreInputError(f"shard {job.shard.index}: read {counts['rows_in']} rows, planned "
                                      f"{job.shard.rows} (did an input file change after start?)")
            t1 = time.perf_counter()
            written = part.commit()
            quarantined = quarantine.commit()
            clock["write_s"] += time.perf_counter() - t1
    except BaseException:
        quarantine.abort()
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    record = {
        "shard": job.shard.index, "count": job.shard.count, "sources": job.shard.to_dict()["pieces"],
        **counts, "part": _relative(job, written),
        "quarantine_part": _relative(job, quarantined) if quarantined else None,
        "reasons": dict(reasons.most_common()), "attempt": guard.attempt,
        "shadow": _agreement(agreement) if shadow is not None else None,
        "timings": {**{k: round(v, 4) for k, v in clock.items()}, "total_s": round(time.perf_counter() - started, 4)},
    }
    logger.info("shard %d/%d: %d rows in, %d scored, %d quarantined in %.2fs", job.shard.index, job.shard.count,
                counts["rows_in"], counts["rows_out"], counts["rows_quarantined"], record["timings"]["total_s"])
    return record


def _iter_guarded(batches: Iterator[_Batch], guard: Guard) -> Iterator[_Batch]:
    """``batches`` with the spot-notice check before each one (and before the first read finishes)."""
    guard.before_batch()
    for batch in batches:
        guard.before_batch()
        yield batch


def _relative(job: ShardJob, written: dict[str, Any]) -> dict[str, Any]:
    """A written file's record with its path relative to the output root."""
    root = job.output_root.rstrip("/") if is_s3(job.output_root) else str(Path(job.output_root))
    uri = written["uri"]
    rel = uri[len(root):].lstrip("/") if is_s3(uri) else str(Path(uri).relative_to(root)).replace(os.sep, "/")
    return {"path": rel, **{k: v for k, v in written.items() if k != "uri"}}


def _agreement(acc: dict[str, float]) -> dict[str, Any]:
    """Agreement counts as a record (rates filled in)."""
    rows = int(acc["rows"])
    return {**{k: (int(v) if k not in ("sum_abs_diff", "max_abs_diff") else float(v)) for k, v in acc.items()},
            "agreement_rate": acc["agree"] / rows if rows else 1.0,
            "mean_abs_diff": acc["sum_abs_diff"] / rows if rows else 0.0}


# --------------------------------------------------------------------------------------------------- partition
def retract_manifest(output_root: str, day: str) -> bool:
    """Delete the date's manifest before it is rewritten (readers stop trusting it); True when there was one."""
    uri = join_uri(partition_uri(output_root, day), MANIFEST)
    existed = read_bytes(uri) is not None
    if existed:
        delete(uri)
        logger.info("retracted %s: the partition is untrusted until this run writes a new manifest", uri)
    return existed


def read_manifest(output_root: str, day: str) -> dict[str, Any] | None:
    """The date's manifest, or None when the partition is not (yet) trusted."""
    body = read_bytes(join_uri(partition_uri(output_root, day), MANIFEST))
    return json.loads(body) if body is not None else None


def shadow_summary(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Agreement over every shard (None without a shadow model)."""
    parts = [r["shadow"] for r in records if r.get("shadow")]
    if not parts:
        return None
    acc = {k: sum(p[k] for p in parts) for k in ("rows", "agree", "to_positive", "to_negative", "sum_abs_diff")}
    return _agreement({**acc, "max_abs_diff": max(p["max_abs_diff"] for p in parts)})


def _sweep(directory: str, keep: set[str]) -> list[str]:
    """Delete the files directly under ``directory`` whose names are not in ``keep``; returns the deleted names."""
    stale = [name for name in list_files(directory) if name not in keep]
    for name in stale:
        delete(join_uri(directory, name))
    return stale


def finish_partition(output_root: str, day: str, records: list[dict[str, Any]], header: dict[str, Any],
                     max_quarantine_rate: float, flow_run: str | None = None) -> dict[str, Any]:
    """Check the shards' records, remove stale files, write ``_manifest.json`` last; returns the manifest.

    ``flow_run`` (the run writing the manifest; after a resume not the one that planned it) overrides the header's.

    Raises:
        QuarantineLimitExceeded: too many rows failed validation (no manifest is written).
        RuntimeError: a shard's counts do not add up, a shard is missing, or a part is missing.
    """
    records = sorted(records, key=lambda r: r["shard"])
    count = records[0]["count"] if records else 0
    if [r["shard"] for r in records] != list(range(count)):
        raise RuntimeError(f"expected shards 0..{count - 1}, got {[r['shard'] for r in records]}")
    for r in records:
        if r["rows_in"] != r["rows_out"] + r["rows_quarantined"]:
            raise RuntimeError(f"shard {r['shard']}: rows in {r['rows_in']} != out {r['rows_out']} + quarantined "
                               f"{r['rows_quarantined']}")
    totals = {k: sum(r[k] for r in records) for k in ("rows_in", "rows_out", "rows_quarantined")}
    rate = totals["rows_quarantined"] / totals["rows_in"] if totals["rows_in"] else 0.0
    totals["quarantine_rate"] = rate
    where = partition_uri(output_root, day)
    if rate > max_quarantine_rate:
        reasons = Counter()
        for r in records:
            reasons.update(r["reasons"])
        raise QuarantineLimitExceeded(
            f"{totals['rows_quarantined']} of {totals['rows_in']} rows failed validation (rate {rate:.4f} > "
            f"max_quarantine_rate {max_quarantine_rate}); {where} gets no manifest and stays untrusted; rows and "
            f"reasons in {quarantine_uri(output_root, day)}; top reasons: {dict(reasons.most_common(5))}")
    parts = [r["part"] for r in records]
    quarantined = [r["quarantine_part"] for r in records if r["quarantine_part"]]
    present = set(list_files(where))
    missing = [p["path"] for p in parts if p["path"].rsplit("/", 1)[-1] not in present]
    if missing:
        raise RuntimeError(f"parts listed by the shards are missing from {where}: {missing}")
    removed = [f"dt={day}/{n}" for n in _sweep(where, {p["path"].rsplit("/", 1)[-1] for p in parts})]
    removed += [f"{QUARANTINE}/dt={day}/{n}" for n in _sweep(quarantine_uri(output_root, day),
                                                              {q["path"].rsplit("/", 1)[-1] for q in quarantined})]
    if removed:
        logger.info("removed stale or temporary files: %s", removed)
    manifest = {
        "version": MANIFEST_VERSION, **header, "flow_run": flow_run or header.get("flow_run"), "date": day,
        "partition": f"dt={day}",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "totals": totals, "parts": parts, "quarantine_parts": quarantined,
        "shadow": {**header.get("shadow", {}), **(shadow_summary(records) or {})} if header.get("shadow") else None,
        "shards": records, "removed": removed,
    }
    put_bytes(join_uri(where, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    logger.info("wrote %s: %d rows scored, %d quarantined (%.2f%%), %d part(s)", join_uri(where, MANIFEST),
                totals["rows_out"], totals["rows_quarantined"], 100 * rate, len(parts))
    return manifest


def read_partition(output_root: str, day: str, verify: bool = False) -> pa.Table:
    """The date's predictions from the parts its manifest lists (``verify``: check sizes and sha256 first).

    Raises:
        ScoreInputError: no manifest (the partition is missing, being rewritten, or failed), or a checksum mismatch.
    """
    manifest = read_manifest(output_root, day)
    if manifest is None:
        raise ScoreInputError(f"{partition_uri(output_root, day)} has no {MANIFEST}: not a trusted partition")
    tables = []
    for part in manifest["parts"]:
        uri = join_uri(output_root, part["path"])
        body = read_bytes(uri)
        if body is None:
            raise ScoreInputError(f"{uri} is listed in the manifest but missing")
        if verify and hashlib.sha256(body).hexdigest() != part["sha256"]:
            raise ScoreInputError(f"{uri}: sha256 does not match the manifest")
        tables.append(pq.read_table(pa.BufferReader(body)))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)


# --------------------------------------------------------------------------------------------------- run plan
@dataclass(frozen=True)
class RunPlan:
    """What ``start`` decides: the inputs, the shards, where the date's partition goes."""

    source: str
    output_root: str
    day: str
    files: list[InputFile]
    shards: list[Shard]
    id_type: str

    def summary(self) -> dict[str, Any]:
        """Plain dict for artifacts and the manifest header."""
        return {"input": self.source, "output_root": self.output_root, "date": self.day,
                "files": [asdict(f) | {"rows": f.rows} for f in self.files],
                "rows": sum(f.rows for f in self.files), "shards": len(self.shards), "id_type": self.id_type}


def plan_run(source: str, output_root: str, day: str | None, spec: DatasetConfig, shard_rows: int) -> RunPlan:
    """List and check the inputs (footers only), cut the shards, pick the partition; nothing is written.

    Local paths are made absolute (the shards and the manifest must not depend on a working directory).
    """
    source, output_root = absolute(source), absolute(output_root)
    files = inspect_inputs(list_inputs(source), spec)
    id_types = {str(open_parquet(f.path).schema_arrow.field(spec.id_column).type) for f in files[:1]}
    id_type = id_types.pop() if id_types else "int64"
    if id_type in ("large_string", "string_view"):
        id_type = "string"
    shards = plan_shards(files, shard_rows)
    plan = RunPlan(source, output_root, partition_date(day), files, shards, id_type)
    logger.info("input %s: %d file(s), %d rows -> %d shard(s); output %s", source, len(files),
                sum(f.rows for f in files), len(shards), partition_uri(output_root, plan.day))
    return plan


def sample_rows(files: list[InputFile], spec: DatasetConfig, rows: int) -> pd.DataFrame:
    """Up to ``rows`` valid rows from the start of the input (for the ONNX parity check)."""
    frames, have = [], 0
    for f in files:
        pf = open_parquet(f.path, read_dictionary=list(spec.categorical))
        for batch in pf.iter_batches(batch_size=min(rows, 65_536), columns=required_columns(spec), use_threads=False):
            frame = batch.to_pandas()
            frame = frame[row_violations(frame, spec).isna().to_numpy()]
            frames.append(frame)
            have += len(frame)
            if have >= rows:
                return pd.concat(frames, ignore_index=True).iloc[:rows]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=required_columns(spec))


def prepare_runtime(model: ResolvedModel, cfg: ScoreConfig, spec: DatasetConfig, files: list[InputFile],
                    threshold: float) -> tuple[bytes | None, dict[str, Any] | None]:
    """For runtime onnx: (ONNX bytes, parity record) after a parity check on the input; (None, None) for native."""
    if cfg.runtime != "onnx":
        return None, None
    from steps.export import OnnxScorer, check_parity, to_onnx

    onnx_bytes = model.onnx or to_onnx(model.pipeline, spec)  # a student brings its own registered graph
    sample = sample_rows(files, spec, cfg.parity_rows)
    if sample.empty:
        return onnx_bytes, {"rows": 0, "note": "empty input: nothing to compare"}
    return onnx_bytes, check_parity(model.pipeline, OnnxScorer(onnx_bytes), sample, spec, threshold,
                                    cfg.onnx_tolerance)


def manifest_header(run_pathspec: str, plan: RunPlan, model: ResolvedModel, shadow: ResolvedModel | None,
                    cfg: ScoreConfig, threshold: float, parity: dict[str, Any] | None) -> dict[str, Any]:
    """The run-level part of the manifest (the shards' records are added by ``finish_partition``)."""
    return {
        "flow_run": run_pathspec, "input": plan.summary(), "model": model.describe(),
        "shadow": shadow.describe() if shadow else None, "runtime": cfg.runtime, "onnx_parity": parity,
        "decision_threshold": threshold, "review_band": list(cfg.review_band), "top_k": cfg.top_k,
        "max_quarantine_rate": cfg.max_quarantine_rate,
    }


def job_for(shard: dict[str, Any], plan: dict[str, Any], spec: DatasetConfig, cfg: ScoreConfig, threshold: float,
            model: dict[str, Any], feature_names: list[str] | None = None, tmp_dir: str | None = None) -> ShardJob:
    """The :class:`ShardJob` of one foreach item, from start's artifacts."""
    return ShardJob(shard=Shard.from_dict(shard), output_root=plan["output_root"], day=plan["date"], spec=spec,
                    threshold=threshold, band=tuple(cfg.review_band), batch_rows=cfg.batch_rows,
                    model_run=model["run"], model_fingerprint=model["fingerprint"], top_k=cfg.top_k,
                    compression=cfg.compression, overlap_io=cfg.overlap_io, id_type=plan["id_type"],
                    feature_names=tuple(feature_names or ()), tmp_dir=tmp_dir)


def scorers_for(cfg: ScoreConfig, spec: DatasetConfig, blob: bytes, fingerprint: str, onnx_bytes: bytes | None,
                shadow_blob: bytes | None = None, shadow_fingerprint: str | None = None) -> tuple[Scorer, Scorer | None,
                                                                                                   Any]:
    """(model scorer, shadow scorer or None, native pipeline for contributions or None) from verified bytes.

    The shadow model always runs natively (it is compared, not served).
    """
    pipeline = load_pipeline(blob, fingerprint)
    model = build_scorer(cfg.runtime, pipeline, spec, onnx_bytes, cfg.threads)
    shadow = None
    if shadow_blob is not None and shadow_fingerprint:
        shadow = build_scorer("native", load_pipeline(shadow_blob, shadow_fingerprint), spec, None, cfg.threads)
    return model, shadow, (pipeline if cfg.top_k else None)


def guard_for(shard_index: int, attempt: int, current_notice: str | None, cfg: ScoreConfig) -> Guard:
    """The between-batch checks of one shard attempt."""
    return Guard(shard=shard_index, attempt=attempt, fault=fault_settings(cfg.fault_injection),
                 notice_path=spot_notice_path(current_notice, shard_index, attempt))



# --------------------------------------------------------------------------------------------------- in process
def score_in_process(source: str, output_root: str, day: str, model: ResolvedModel, spec: DatasetConfig,
                     cfg: ScoreConfig, threshold: float, flow_run: str = "in-process") -> dict[str, Any]:
    """Score one date's input in this process with the functions ScoreFlow's steps call, in the same order.

    For backfills, notebooks and tests; the partition and its manifest are the same as ScoreFlow's (no retries, no
    shadow model). Returns the manifest.
    """
    plan = plan_run(source, output_root, day, spec, cfg.shard_rows)
    onnx_bytes, parity = prepare_runtime(model, cfg, spec, plan.files, threshold)
    header = manifest_header(flow_run, plan, model, None, cfg, threshold, parity)
    retract_manifest(plan.output_root, plan.day)
    features = check_explainable(model.pipeline, cfg.top_k) if cfg.top_k else []
    records = []
    for shard in plan.shards:
        scorer, _, explain = scorers_for(cfg, spec, model.blob, model.fingerprint, onnx_bytes)
        job = job_for(shard.to_dict(), plan.summary(), spec, cfg, threshold, model.describe(), features)
        records.append(score_shard(job, scorer, None, explain, guard_for(shard.index, 0, None, cfg), cfg.threads))
    return finish_partition(plan.output_root, plan.day, records, header, cfg.max_quarantine_rate, flow_run)
