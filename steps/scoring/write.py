"""Prediction parts: the output schema, atomic Parquet parts, the quarantine part, shadow agreement."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from steps.config.dataset import ROW_KEY, DatasetConfig
from steps.core.decision import in_band
from steps.core.storage import is_s3, publish_file, sha256_file, staging_path
from steps.scoring.plan import ShardJob
from steps.scoring.read import Batch


class PartWriter:
    """One Parquet file written atomically: a temporary file, then a rename (local) or a single PUT (s3)."""

    def __init__(self, uri: str, schema: pa.Schema, compression: str = "zstd",
                 dictionary_columns: list[str] | None = None, tmp_dir: str | None = None) -> None:
        self.uri, self.schema, self.rows = uri, schema, 0
        self.tmp = staging_path(uri, tmp_dir)
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
        publish_file(self.tmp, self.uri)
        return {"uri": self.uri, "rows": self.rows, "bytes": size, "sha256": digest}

    def abort(self) -> None:
        """Close and delete the temporary file."""
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> PartWriter:
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


class QuarantineWriter:
    """The shard's quarantine part, opened on the first invalid row."""

    def __init__(self, uri: str, compression: str, tmp_dir: str | None) -> None:
        self.uri, self.compression, self.tmp_dir = uri, compression, tmp_dir
        self.writer: PartWriter | None = None

    def write(self, batch: Batch, spec: DatasetConfig) -> None:
        """Append the batch's invalid rows (categoricals as plain strings) with their reason and source file."""
        bad = ~batch.valid
        table = pa.Table.from_batches([batch.arrow]).filter(pa.array(bad))
        if not spec.id:  # the key the row would have had in the predictions
            table = table.append_column(ROW_KEY, batch.ids(spec).filter(pa.array(bad)))
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


def accumulate_agreement(main: np.ndarray, shadow: np.ndarray, threshold: float, acc: dict[str, float]) -> None:
    """Accumulate agreement counts of two score vectors into ``acc``."""
    a, b = main >= threshold, shadow >= threshold
    diff = np.abs(main - shadow)
    acc["rows"] += main.size
    acc["agree"] += int((a == b).sum())
    acc["to_positive"] += int((~a & b).sum())
    acc["to_negative"] += int((a & ~b).sum())
    acc["sum_abs_diff"] += float(diff.sum())
    acc["max_abs_diff"] = max(acc["max_abs_diff"], float(diff.max()) if diff.size else 0.0)


def output_batch(job: ShardJob, schema: pa.Schema, batch: Batch, scores: np.ndarray, scored_at: np.datetime64,
                 contributions: tuple[np.ndarray, np.ndarray] | None, shadow: np.ndarray | None) -> pa.RecordBatch:
    """The prediction rows of one batch as Arrow, in ``schema``'s column order."""
    ids = batch.ids(job.spec)
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


def relative_record(job: ShardJob, written: dict[str, Any]) -> dict[str, Any]:
    """A written file's record with its path relative to the output root."""
    root = job.output_root.rstrip("/") if is_s3(job.output_root) else str(Path(job.output_root))
    uri = written["uri"]
    rel = uri[len(root):].lstrip("/") if is_s3(uri) else str(Path(uri).relative_to(root)).replace(os.sep, "/")
    return {"path": rel, **{k: v for k, v in written.items() if k != "uri"}}


def agreement_record(acc: dict[str, float]) -> dict[str, Any]:
    """Agreement counts as a record (rates filled in)."""
    rows = int(acc["rows"])
    return {**{k: (int(v) if k not in ("sum_abs_diff", "max_abs_diff") else float(v)) for k, v in acc.items()},
            "agreement_rate": acc["agree"] / rows if rows else 1.0,
            "mean_abs_diff": acc["sum_abs_diff"] / rows if rows else 0.0}


def shadow_summary(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Agreement over every shard (None without a shadow model)."""
    parts = [r["shadow"] for r in records if r.get("shadow")]
    if not parts:
        return None
    acc = {k: sum(p[k] for p in parts) for k in ("rows", "agree", "to_positive", "to_negative", "sum_abs_diff")}
    return agreement_record({**acc, "max_abs_diff": max(p["max_abs_diff"] for p in parts)})
