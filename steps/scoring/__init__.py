"""Batch scoring (ScoreFlow): streaming, sharded scoring to Hive-partitioned Parquet.

Modules: ``plan`` (inputs and shards), ``read`` (streamed, validated batches), ``runtime`` (native or ONNX),
``resolve`` (which model), ``write`` (parts), ``shard`` (one shard's loop), ``partition`` (the manifest).

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

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
