"""The validated training table by reference: written once as content-addressed Parquet under the datastore root,
then read back by the tasks that need it, only the columns and row groups they use.

TrainFlow's ``start`` writes the validated table (``<datastore root>/_tables/<sha256[:2]>/<sha256>.parquet``: the
name is the hash of the bytes, so the same data validated the same way is stored once, whatever the number of runs)
and keeps a small ``TableRef``; ``split`` keeps one byte per row saying which part it belongs to (``SplitRef``).
Every task reads its rows with pyarrow: the row groups that hold them, the columns it asks for. On AWS the root is
the run's S3 datastore, which every Batch task reads; locally, the ``.metaflow`` folder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from steps.core import storage
from steps.core.errors import UserError

logger = logging.getLogger(__name__)

TABLES = "_tables"
ROW_GROUP_ROWS = 131_072  # rows per row group: what a task reading some rows reads at least
PART_CODES = {"train": 0, "validation": 1, "holdout": 2}
READ_BATCH_COLUMNS = 4  # columns a part read converts at a time (frame_by_columns)
# Arrow to pandas, each column's Arrow memory freed as it is converted: the peak holds the data about once, not twice.
# Measured at 10M generated rows: reading the split's two columns peaked at 389 MiB instead of 545, the whole table
# at 2,865 MiB instead of 4,062. Only for frames that are validated or cut: parts that are scored or fitted
# (``read_part``) convert as usual, because one block per column made a LightGBM pipeline's single-row calls ~0.5 ms
# slower (6.9-8.4 ms against 6.3-7.7 ms consolidated, on a 1M-row run's hold-out).
TO_PANDAS = {"self_destruct": True, "split_blocks": True}


@dataclass(frozen=True)
class TableRef:
    """Where the validated table lives and what it holds (a run artifact, as a dict)."""

    uri: str
    sha256: str
    size_bytes: int
    rows: int
    row_groups: list[int]
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for artifacts."""
        return asdict(self)


def tables_root(datastore_root: str) -> str:
    """Where a datastore keeps content-addressed tables."""
    return storage.join_uri(datastore_root, TABLES)


def row_slices(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    """``frame`` in consecutive slices of at most ``rows`` rows (views, not copies)."""
    for start in range(0, len(frame), rows):
        yield frame.iloc[start:start + rows]


def write_table(frame: pd.DataFrame, root: str) -> TableRef:
    """Write ``frame`` (validated) once under ``root`` as ``<sha256>.parquet``; nothing is written when those bytes
    are already there. Chunks of ``ROW_GROUP_ROWS`` rows are converted one at a time (one row group each)."""
    tmp = storage.staging_path(storage.join_uri(root, "table.parquet"))  # the name is known once the bytes are
    try:
        schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
        groups = []
        with pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=3) as writer:
            for chunk in row_slices(frame, ROW_GROUP_ROWS):
                writer.write_table(pa.Table.from_pandas(chunk, schema=schema, preserve_index=False),
                                   row_group_size=ROW_GROUP_ROWS)
                groups.append(len(chunk))
        digest, size = storage.sha256_file(tmp), tmp.stat().st_size
        uri = storage.join_uri(root, digest[:2], f"{digest}.parquet")
        if storage.exists(uri):
            logger.info("table %s already stored (%d rows): nothing written", uri, len(frame))
        else:
            storage.publish_file(tmp, uri)
            logger.info("stored the validated table: %s (%d rows, %.1f MB)", uri, len(frame), size / 1e6)
    finally:
        tmp.unlink(missing_ok=True)
    return TableRef(uri, digest, size, len(frame), groups, list(frame.columns))


class StoredTableError(UserError):
    """A run's stored table is gone, or is not the table its reference recorded."""


def open_table(ref: dict[str, Any]) -> pq.ParquetFile:
    """The stored table's Parquet file (local, or S3 through the configured endpoint), checked to hold the row groups
    its reference recorded (a ``TableRef``; a bare ``{"uri": ...}`` is not checked); :class:`StoredTableError` when
    it is gone or differs."""
    uri = ref["uri"]
    try:
        pf = (pq.ParquetFile(uri[len("s3://"):], filesystem=storage.arrow_s3()) if storage.is_s3(uri)
              else pq.ParquetFile(uri))
    except OSError as err:
        if storage.exists(uri):
            raise
        raise StoredTableError(f"the stored table {uri} ({_recorded(ref)}) is gone from the datastore: the runs that "
                               "reference it cannot read their rows. Storing the same data again the same way "
                               "(TrainFlow's start on it with the same dataset config; DistillFlow's start for an "
                               "older teacher's frames) writes the same bytes back under this name") from err
    groups = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
    if "row_groups" in ref and groups != list(ref["row_groups"]):
        raise StoredTableError(f"the stored table {uri} holds {pf.metadata.num_rows:,} rows in {len(groups)} row "
                               f"groups, not the {_recorded(ref)} its reference recorded: the file was replaced")
    return pf


def _recorded(ref: dict[str, Any]) -> str:
    """What a table reference recorded, for messages: rows, row groups and the start of the sha256."""
    rows = f"{ref['rows']:,} rows" if "rows" in ref else "rows"
    groups = f" in {len(ref['row_groups'])} row groups" if "row_groups" in ref else ""
    return rows + groups + (f", sha256 {ref['sha256'][:12]}" if "sha256" in ref else "")


def read_columns(ref: dict[str, Any], columns: list[str] | None = None,
                 dtypes: dict[str, str] | None = None) -> pd.DataFrame:
    """Every row of the stored table, ``columns`` only (None: all), as ``to_pandas`` makes them, one column at a time
    (:func:`_filled_column`), the ones whose conversion copies first; ``dtypes``: a NumPy type to keep a number
    column in (``int8`` for a 0/1 target), cast safely (a value it cannot hold raises).

    Measured at 10M generated rows, the split's target and time columns (155 MiB of Arrow): the read peaked 265 MiB
    above the imports as one Arrow table converted with ``self_destruct``, 177 MiB this way with the target as
    ``int8``.
    """
    pf = open_table(ref)
    names = list(dict.fromkeys(columns if columns is not None else pf.schema_arrow.names))
    fill = _fillable(pf, names)
    first = sorted(names, key=lambda n: not _converts_with_copy(pf.schema_arrow.field(n).type))
    series = {}
    for name in first:
        try:
            series[name] = _filled_column(pf, name, (dtypes or {}).get(name), name in fill)
        except pa.ArrowInvalid as err:
            raise ValueError(f"column '{name}' of {ref['uri']} cannot be held as {dtypes and dtypes.get(name)}: "
                             f"{err}") from err
    release_arrow_memory()
    return pd.DataFrame({name: series[name] for name in names}, index=pd.RangeIndex(pf.metadata.num_rows), copy=False)


def _fillable(pf: pq.ParquetFile, names: list[str]) -> set[str]:
    """The columns pandas keeps as plain NumPy numbers or timestamps: no nulls, and no other type in pandas' metadata
    (e.g. a stored ``Int64``)."""
    null_free, pandas_types = null_free_columns(pf, list(range(pf.num_row_groups))), _pandas_types(pf.schema_arrow)
    kinds = {name: pf.schema_arrow.field(name).type for name in set(names) & null_free}
    return {name for name, kind in kinds.items()
            if pa.types.is_timestamp(kind) or _numpy_number(kind, True, pandas_types.get(name)) is not None}


def _numpy_number(kind: pa.DataType, null_free: bool, pandas_type: str | None) -> np.dtype[Any] | None:
    """The NumPy type pandas keeps a number column of this Arrow type in (floating, or integer without nulls), when
    pandas' metadata (``pandas_type``, None without it) records no other (e.g. a stored ``Int64``); else None."""
    if not (pa.types.is_floating(kind) or (pa.types.is_integer(kind) and null_free)):
        return None
    dtype = np.dtype(kind.to_pandas_dtype())
    return dtype if (pandas_type or dtype.name) == dtype.name else None


def _pandas_types(schema: pa.Schema) -> dict[str, Any]:
    """Each column's NumPy type as pandas' metadata in the file records it (empty without pandas metadata)."""
    return {c["name"]: c.get("numpy_type") for c in (schema.pandas_metadata or {}).get("columns", [])}


def _converts_with_copy(kind: pa.DataType) -> bool:
    """Whether a column of this type reaches pandas through a second full copy (a timezone-aware timestamp)."""
    return pa.types.is_timestamp(kind) and kind.tz is not None


def _filled_column(pf: pq.ParquetFile, name: str, dtype: str | None, fill: bool) -> pd.Series:
    """One column as pandas. ``fill``: decoded one row group at a time into one preallocated array (the column held
    once, not as Arrow and as NumPy at the same time); else read whole and converted by Arrow."""
    kind = pf.schema_arrow.field(name).type
    if not fill:
        read = pf.read(columns=[name])
        if dtype is not None:  # a safe cast: a value the type cannot hold raises
            read = read.cast(pa.schema([pa.field(name, pa.from_numpy_dtype(np.dtype(dtype)))]))
        return read.to_pandas(**TO_PANDAS)[name]
    timestamp = pa.types.is_timestamp(kind)
    storage = pa.int64() if timestamp else (pa.from_numpy_dtype(np.dtype(dtype)) if dtype else kind)
    values, start = np.empty(pf.metadata.num_rows, dtype=storage.to_pandas_dtype()), 0
    for group in range(pf.num_row_groups):
        column = pf.read_row_group(group, columns=[name]).column(0).cast(storage)  # safe: raises on overflow
        _copy_chunks(column, values[start:start + len(column)])
        start += len(column)
    if not timestamp:
        return pd.Series(values, name=name, copy=False)
    naive = pd.Series(values.view(f"M8[{kind.unit}]"), name=name, copy=False)
    return naive if kind.tz is None else naive.dt.tz_localize("UTC").dt.tz_convert(kind.tz)


@contextmanager
def system_allocator() -> Iterator[None]:
    """Arrow buffers allocated inside come from the system allocator (malloc) instead of Arrow's default (mimalloc).

    A part read row group by row group and converted to pandas peaks lower and is no slower: at 10M generated rows,
    the 7M training rows' features peaked at 2,487 MiB instead of 3,025 (2.2 s instead of 3.8 s) and the 1.5M
    hold-out rows at 680 MiB instead of 806, as malloc hands the decoder's freed buffers back at once. Not for a
    whole-table read (``read_columns``): the split's two columns of 10M rows peaked at 602 MiB instead of 523.
    """
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def release_arrow_memory() -> None:
    """Hand the pages Arrow's allocator freed back to the system, so that the NumPy and pandas allocations that follow
    can reuse them instead of adding to the peak."""
    pa.default_memory_pool().release_unused()


def split_ref(table: dict[str, Any], codes: np.ndarray, method: str, warnings: list[str]) -> dict[str, Any]:
    """The split as an artifact: the table's reference and each row's part (one byte a row)."""
    return {"table": table, "codes": np.asarray(codes, dtype=np.int8), "method": method, "warnings": list(warnings)}


def frames_ref(parts: dict[str, pd.DataFrame], root: str) -> dict[str, Any]:
    """A split reference for parts held as frames (the artifacts of runs from before references): the frames written
    once under ``root`` as one table (:func:`write_table`), each row's part kept as :func:`split_ref` keeps it."""
    frame = pd.concat(list(parts.values()), ignore_index=True)
    codes = np.concatenate([np.full(len(f), part_code(name), dtype=np.int8) for name, f in parts.items()])
    return split_ref(write_table(frame, root).to_dict(), codes, "frames", [])


def sample_positions(rows: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Sorted positions of ``limit`` of ``rows`` rows drawn without replacement with ``seed`` (the rows that pandas'
    ``DataFrame.sample(n=limit, random_state=seed)`` draws), or None when ``limit`` is None or not below ``rows``."""
    if limit is None or rows <= limit:
        return None
    return np.sort(np.random.RandomState(seed).choice(rows, size=limit, replace=False))


def sample_frame(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """``frame``'s rows that :func:`read_part` keeps with the same ``limit`` and ``seed`` (those ``DataFrame.sample``
    draws, in the frame's order), or ``frame`` itself when ``limit`` is None or not below its length."""
    chosen = sample_positions(len(frame), limit, seed)
    return frame if chosen is None else frame.iloc[chosen]


def read_part(split: dict[str, Any], part: str, columns: list[str] | None = None, limit: int | None = None,
              seed: int = 0) -> pd.DataFrame:
    """The rows of ``part`` (train, validation or holdout) in table order, ``columns`` only (None: all): only the
    row groups that hold some of them are read, and only those holding other rows too are filtered (a copy of one
    row group at a time, not of the whole part: a time split's parts are runs of whole row groups).

    ``limit``: at most that many of the part's rows, drawn with ``seed`` (:func:`sample_positions`); only they are
    kept from each row group read, so a sampled candidate holds its sample, not the whole part.
    """
    return part_rows(split, part, columns, limit, seed).read()


BATCH_ROWS = 262_144  # rows a batch of PartRows.batches holds at least (whole row groups), but for the last one


@dataclass(frozen=True, eq=False)
class PartRows:
    """Some rows of the stored table (``mask``: one flag a table row), read when asked: all at once, a seeded sample of
    them, or batches of consecutive rows (a task that streams its rows holds one batch, not the part)."""

    table: dict[str, Any]
    mask: np.ndarray
    columns: list[str] | None = None
    part: str = "rows"

    @property
    def rows(self) -> int:
        """How many rows."""
        return int(self.mask.sum())

    def subset(self, rows: int | None, seed: int, part: str | None = None) -> PartRows:
        """At most ``rows`` of the rows (None: all), drawn with ``seed`` (:func:`sample_positions`), called ``part``
        in the logs (default: a sample of this part)."""
        chosen = sample_positions(self.rows, rows, seed)
        return self if chosen is None else PartRows(self.table, _keep(self.mask, chosen), self.columns,
                                                    part or f"a sample of {self.part}")

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Every row, ``columns`` (default: the ones given at creation, None: all), in table order."""
        groups = self._groups()
        frame = _read_rows(self.table, self.mask, groups, columns or self.columns)
        logger.info("read %s: %d rows x %d columns from %d of %d row groups of %s", self.part, len(frame),
                    len(frame.columns), len(groups), len(self.table["row_groups"]), self.table["uri"])
        return frame

    def sample(self, rows: int, seed: int, covering: Sequence[str] = ()) -> pd.DataFrame:
        """At most ``rows`` of the rows drawn with ``seed`` (:meth:`subset`), in table order, plus, for each column of
        ``covering`` that has a missing value (or a value) among the rows but not among the drawn ones, the first row
        that has one: fitted on the sample, an imputer finds the columns with missing values (its indicators) and the
        empty ones that a fit on every row finds."""
        drawn = self.subset(rows, seed)
        if drawn is self or not covering:
            return drawn.read()
        sample, pf = drawn.read(), None
        extra = np.zeros_like(self.mask)
        for name in covering:
            missing = sample[name].isna()
            for want_missing, seen in ((True, missing.any()), (False, not missing.all())):
                if not seen:
                    pf = pf or open_table(self.table)
                    if (row := self._first(pf, name, want_missing)) is not None:
                        extra[row] = True
        if not extra.any():
            return sample
        return PartRows(self.table, drawn.mask | extra, self.columns, f"a sample of {self.part}").read()

    def _first(self, pf: pq.ParquetFile, name: str, missing: bool) -> int | None:
        """The table row of the first of the rows whose ``name`` is missing (``missing``) or not, else None (``pf``:
        the table, opened once for every column asked about)."""
        starts = _group_starts(self.table)
        for i in self._groups():
            values = pf.read_row_group(i, columns=[name]).column(0).is_null(nan_is_null=True).to_numpy(False)
            found = np.flatnonzero(self.mask[starts[i]:starts[i + 1]] & (values == missing))
            if len(found):
                return int(starts[i] + found[0])
        return None

    def batches(self, columns: list[str] | None = None, rows: int | None = None) -> Iterator[pd.DataFrame]:
        """The rows in table order, as frames of whole row groups' rows, each at least ``rows`` (default
        ``BATCH_ROWS``) but the last; their concatenation is :meth:`read`'s frame."""
        run: list[int] = []
        starts = _group_starts(self.table)
        for i in self._groups():
            run.append(i)
            if int(self.mask[starts[run[0]]:starts[i + 1]].sum()) >= (rows or BATCH_ROWS):
                yield _read_rows(self.table, self.mask, run, columns or self.columns)
                run = []
        if run:
            yield _read_rows(self.table, self.mask, run, columns or self.columns)

    def _groups(self) -> list[int]:
        """The row groups holding any of the rows."""
        starts = _group_starts(self.table)
        return [i for i in range(len(starts) - 1) if self.mask[starts[i]:starts[i + 1]].any()]


def part_rows(split: dict[str, Any], part: str, columns: list[str] | None = None, limit: int | None = None,
              seed: int = 0) -> PartRows:
    """The rows of ``part`` as :class:`PartRows` (``limit``, ``seed``: as :func:`read_part`), nothing read yet."""
    rows = PartRows(split["table"], split["codes"] == part_code(part), columns, part)
    return rows.subset(limit, seed, part)


def _keep(mask: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The mask of the ``chosen`` positions among ``mask``'s set rows."""
    rows, out = np.flatnonzero(mask), np.zeros_like(mask)
    out[rows[chosen]] = True
    return out


def _group_starts(ref: dict[str, Any]) -> np.ndarray:
    """Each row group's first table row, then the table's row count."""
    return np.concatenate([[0], np.cumsum(ref["row_groups"])])


def _read_rows(ref: dict[str, Any], mask: np.ndarray, groups: list[int], columns: list[str] | None) -> pd.DataFrame:
    """The rows of ``mask`` in the row groups ``groups``, ``columns`` only (None: all), as :func:`frame_by_columns`
    makes them; a row group holding other rows too is filtered (a copy of one row group at a time)."""
    starts = _group_starts(ref)
    with system_allocator():
        pf = open_table(ref)

        def read(names: list[str]) -> pa.Table:
            pieces = []
            for i in groups:
                piece, keep = pf.read_row_group(i, columns=names), mask[starts[i]:starts[i + 1]]
                pieces.append(piece if keep.all() else piece.filter(pa.array(keep)))
            return pa.concat_tables(pieces) if pieces else pf.read_row_groups([], columns=names)

        names = list(pf.schema_arrow.names if columns is None else columns)
        rows = sum(int(mask[starts[i]:starts[i + 1]].sum()) for i in groups)
        return frame_by_columns(read, pf.schema_arrow, names, null_free_columns(pf, groups), rows)


def null_free_columns(pf: pq.ParquetFile, groups: list[int]) -> set[str]:
    """The columns whose statistics say they hold no null in any of the row groups ``groups``."""
    meta = pf.metadata
    out = set()
    for k in range(meta.num_columns):
        stats = [meta.row_group(i).column(k).statistics for i in groups]
        if all(st is not None and st.has_null_count and st.null_count == 0 for st in stats):
            out.add(meta.schema.column(k).path)
    return out


def frame_by_columns(read: Callable[[list[str]], pa.Table], schema: pa.Schema, names: list[str],
                     null_free: set[str], rows: int) -> pd.DataFrame:
    """The columns ``names`` (``rows`` rows, from ``read``) as the frame ``to_pandas`` makes, read a few at a time.

    Number columns that pandas keeps as NumPy numbers (floating, or integer without nulls: ``null_free``) are copied
    chunk by chunk into one block per dtype, as ``to_pandas`` lays them out; the other columns are kept as Arrow
    columns and converted by pyarrow in one call at the end (so they too share blocks as ``to_pandas`` makes them;
    strings stay Arrow-backed either way). So Arrow holds ``READ_BATCH_COLUMNS`` number columns at a time instead of
    all of them beside their pandas copy: reading a 1.5M-row hold-out peaked ~150 MiB lower (+429 instead of +577
    MiB), in the same time. For tables without a stored index (``write_table``'s); a name given twice is read once.
    One difference in layout: an integer column with nulls (floats in pandas) gets its own float block.
    """
    names = list(dict.fromkeys(names))
    if not names:
        return pd.DataFrame(index=pd.RangeIndex(rows))
    pandas_types = _pandas_types(schema)
    slots: dict[np.dtype[Any], list[str]] = {}
    for name in names:
        dtype = _numpy_number(schema.field(name).type, name in null_free, pandas_types.get(name))
        if dtype is not None:
            slots.setdefault(dtype, []).append(name)
    blocks = {dtype: np.empty((len(cols), rows), dtype=dtype) for dtype, cols in slots.items()}
    where = {name: (blocks[dtype], j) for dtype, cols in slots.items() for j, name in enumerate(cols)}
    rest: dict[str, pa.ChunkedArray] = {}
    for k in range(0, len(names), READ_BATCH_COLUMNS):
        batch = read(names[k:k + READ_BATCH_COLUMNS])
        for name in batch.column_names:
            if name in where:
                block, j = where[name]
                _copy_chunks(batch.column(name), block[j])
            else:
                rest[name] = batch.column(name)
        del batch
        release_arrow_memory()  # the batch's number columns, before the next batch is read
    frames = [pd.DataFrame(blocks[dtype].T, columns=cols, copy=False) for dtype, cols in slots.items()]
    if rest:
        others = pa.schema([schema.field(name) for name in rest], metadata=schema.metadata)
        frames.append(pa.Table.from_arrays(list(rest.values()), schema=others).to_pandas())
        rest.clear()
    return pd.concat(frames, axis=1)[names] if len(frames) > 1 else frames[0]


def _copy_chunks(column: pa.ChunkedArray, out: np.ndarray) -> None:
    """Copy ``column`` into ``out`` chunk by chunk (no whole-column temporary; a float null becomes NaN)."""
    at = 0
    for chunk in column.chunks:
        out[at:at + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
        at += len(chunk)


def part_code(part: str) -> int:
    """The code of a part name; ValueError naming the parts."""
    if part not in PART_CODES:
        raise ValueError(f"unknown part {part!r}; one of {list(PART_CODES)}")
    return PART_CODES[part]


def part_of(data: Any, part: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A TrainFlow run's ``part`` from its artifacts (``run.data``): read by reference (``split_ref``), or the frame
    artifact runs from before references kept (``holdout_df``; KeyError when neither is there)."""
    if "split_ref" in data:
        return read_part(data.split_ref, part, columns)
    frame = getattr(data, f"{part}_df")
    return frame if columns is None else frame[columns]
