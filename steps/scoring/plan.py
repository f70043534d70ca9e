"""ScoreFlow's plan: list and check the inputs (footers only), cut shards at row-group boundaries."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, date as Date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from steps.config.dataset import DatasetConfig
from steps.config.score import ScoreConfig
from steps.core.errors import UserError
from steps.core.storage import absolute, arrow_s3, is_s3, join_uri
from steps.data.contract import ScoreInputError, check_schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputFile:
    """One input Parquet file: where it is, how many rows each of its row groups holds, its size on storage and the
    uncompressed size of its data (the Parquet footer's ``total_byte_size`` summed over row groups)."""

    path: str
    row_groups: tuple[int, ...]
    file_bytes: int
    uncompressed_bytes: int

    @property
    def rows(self) -> int:
        """Rows in the file."""
        return sum(self.row_groups)


def _visible(relative: str) -> bool:
    """False for paths with a component starting with '.' or '_' (temporary files, manifests, quarantine)."""
    return not any(part.startswith((".", "_")) for part in relative.split("/") if part)


class InputsUnreadable(ScoreInputError):
    """The input location could not be listed (no credentials, access denied, no endpoint): not "nothing there"."""


def list_inputs(location: str) -> list[str]:
    """The Parquet files of ``location``: a file, or every ``*.parquet`` below a folder / s3 prefix, sorted.

    Raises:
        ScoreInputError: nothing to read there (a missing path, or a folder without Parquet files).
        InputsUnreadable: an S3 location that could not be listed.
    """
    if is_s3(location):
        from pyarrow import fs

        filesystem, path = arrow_s3(), location[len("s3://"):].rstrip("/")
        try:
            info = filesystem.get_file_info(path)
            if info.type == fs.FileType.File:
                return [location]
            found = [] if info.type == fs.FileType.NotFound else filesystem.get_file_info(
                fs.FileSelector(path, recursive=True))
        except OSError as err:  # no credentials, access denied, an unreachable endpoint: pyarrow raises OSError
            raise InputsUnreadable(f"cannot list {location}: {err}") from None
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


def file_size(path: str) -> int:
    """Bytes of one file on storage (local or s3)."""
    if is_s3(path):
        return int(arrow_s3().get_file_info(path[len("s3://"):]).size)
    return Path(path).stat().st_size


def inspect_inputs(paths: list[str], spec: DatasetConfig) -> list[InputFile]:
    """Read each file's footer: schema check and rows per row group (no data pages are read)."""
    out = []
    for path in paths:
        pf = open_parquet(path)
        check_schema(pf.schema_arrow, spec, path)
        meta = pf.metadata
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        uncompressed = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        out.append(InputFile(path, groups, file_size(path), uncompressed))
    return out


@dataclass(frozen=True)
class Piece:
    """Some consecutive row groups of one input file; ``first_row`` is the file's row number of its first row."""

    path: str
    row_groups: tuple[int, ...]
    rows: int
    first_row: int = 0


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
                "pieces": [{"path": p.path, "row_groups": list(p.row_groups), "rows": p.rows,
                            "first_row": p.first_row} for p in self.pieces]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        """Inverse of :meth:`to_dict`."""
        pieces = tuple(Piece(p["path"], tuple(p["row_groups"]), p["rows"], p.get("first_row", 0))
                       for p in data["pieces"])
        return cls(data["index"], data["count"], pieces)


def part_name(index: int, count: int, claim_tag: str = "") -> str:
    """``part-<index, 5 digits>-of-<count, 5 digits>[-<claim>].parquet``: the run's claim in the name keeps a stale
    run's files apart from the holder's."""
    return f"part-{index:05d}-of-{count:05d}{'-' + claim_tag if claim_tag else ''}.parquet"


def plan_shards(files: list[InputFile], shard_rows: int) -> list[Shard]:
    """Cut shards of about ``shard_rows`` rows at row-group boundaries, in file order; never zero shards.

    A shard may span files; empty row groups are skipped; an input without rows gives one empty shard (it writes
    an empty part, so the date still gets a partition and a manifest).
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    groups: list[list[tuple[str, int, int, int]]] = [[]]  # per shard: (path, row group, rows, first row)
    filled = 0
    for f in files:
        first = 0
        for i, rows in enumerate(f.row_groups):
            first += rows
            if rows == 0:
                continue
            if filled >= shard_rows:
                groups.append([])
                filled = 0
            groups[-1].append((f.path, i, rows, first - rows))
            filled += rows
    shards = []
    for index, members in enumerate(groups):
        pieces: list[Piece] = []
        for path, rg, rows, first_row in members:
            if pieces and pieces[-1].path == path:
                last = pieces[-1]
                pieces[-1] = Piece(path, (*last.row_groups, rg), last.rows + rows, last.first_row)
            else:
                pieces.append(Piece(path, (rg,), rows, first_row))
        shards.append(Shard(index, len(groups), tuple(pieces)))
    return shards


def partition_date(value: str | None = None) -> str:
    """``value`` checked as YYYY-MM-DD, or today's date in UTC."""
    if not value:
        return datetime.now(UTC).date().isoformat()
    try:
        return Date.fromisoformat(value).isoformat()
    except ValueError:
        raise UserError(f"--date must be YYYY-MM-DD, got {value!r}") from None


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
    id_types = {str(open_parquet(f.path).schema_arrow.field(spec.id).type) for f in files[:1]} if spec.id else set()
    id_type = id_types.pop() if id_types else ("int64" if spec.id else "string")  # no id: a row_key string
    if id_type in ("large_string", "string_view"):
        id_type = "string"
    shards = plan_shards(files, shard_rows)
    plan = RunPlan(source, output_root, partition_date(day), files, shards, id_type)
    logger.info("input %s: %d file(s), %d rows -> %d shard(s); output %s", source, len(files),
                sum(f.rows for f in files), len(shards), partition_uri(output_root, plan.day))
    return plan


QUARANTINE = "_quarantine"


def partition_uri(output_root: str, day: str) -> str:
    """``<root>/dt=<day>``."""
    return join_uri(output_root, f"dt={day}")


def quarantine_uri(output_root: str, day: str) -> str:
    """``<root>/_quarantine/dt=<day>``."""
    return join_uri(output_root, QUARANTINE, f"dt={day}")


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
    source: str = ""
    claim: dict[str, Any] | None = None  # the run's claim on the date (``claims.Claim.to_dict``)

    @property
    def file_name(self) -> str:
        """The name of the shard's part (and quarantine part): its index, and its run's claim."""
        tag = f"c{self.claim['seq']:08d}" if self.claim else ""
        return part_name(self.shard.index, self.shard.count, tag)

    @property
    def part_uri(self) -> str:
        """Where the shard's part goes."""
        return join_uri(partition_uri(self.output_root, self.day), self.file_name)

    @property
    def quarantine_part_uri(self) -> str:
        """Where the shard's quarantined rows go."""
        return join_uri(quarantine_uri(self.output_root, self.day), self.file_name)


def job_for(shard: dict[str, Any], plan: dict[str, Any], spec: DatasetConfig, cfg: ScoreConfig,
            decision: dict[str, Any], model: dict[str, Any], feature_names: list[str] | None = None,
            tmp_dir: str | None = None) -> ShardJob:
    """The :class:`ShardJob` of one foreach item, from start's artifacts."""
    return ShardJob(shard=Shard.from_dict(shard), output_root=plan["output_root"], day=plan["date"], spec=spec,
                    threshold=float(decision["threshold"]), batch_rows=cfg.batch_rows,
                    band=(float(decision["review_band"][0]), float(decision["review_band"][1])),
                    model_run=model["run"], model_fingerprint=model["fingerprint"], top_k=cfg.top_k,
                    compression=cfg.compression, overlap_io=cfg.overlap_io, id_type=plan["id_type"],
                    feature_names=tuple(feature_names or ()), tmp_dir=tmp_dir, source=plan["input"],
                    claim=plan.get("claim"))
