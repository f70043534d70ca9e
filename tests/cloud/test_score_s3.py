"""ScoreFlow with s3:// input and output on a local S3 server (moto, 127.0.0.1): the same parts, manifest and sweep.

The Runner's subprocesses inherit the endpoint: ``AWS_ENDPOINT_URL`` (set by the ``s3_endpoint`` fixture, read by
boto3) and ``METAFLOW_S3_ENDPOINT_URL`` (read first by steps.score, for boto3 and pyarrow alike). The Metaflow
datastore stays local: only the data is on S3.
"""

from __future__ import annotations

import hashlib
import io
import json

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from steps import score
from support import run_flow

DAY = "2026-02-01"


def _keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_s3_input_and_output(root, workspace, config_paths, tiny_data, train_run, s3_endpoint, bucket, tmp_path):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    frame = pd.read_parquet(tiny_data)
    for name, part in (("a", frame.iloc[:4000]), ("b", frame.iloc[4000:])):  # a prefix with two files
        buffer = io.BytesIO()
        part.to_parquet(buffer, row_group_size=2000, index=False)
        client.put_object(Bucket=bucket, Key=f"incoming/{DAY}/{name}.parquet", Body=buffer.getvalue())
    client.put_object(Bucket=bucket, Key=f"incoming/{DAY}/_SUCCESS", Body=b"")  # not Parquet: ignored
    stale = f"predictions/dt={DAY}/part-00004-of-00005.parquet"
    client.put_object(Bucket=bucket, Key=stale, Body=b"left over from an older run")
    config = tmp_path / "score.yaml"
    config.write_text(yaml.safe_dump({"shard_rows": 2000, "batch_rows": 1000}))
    configs = {"dataset": config_paths["dataset"], "gates": config_paths["gates"],
               "profile": config_paths["profile"], "score": config}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METAFLOW_S3_ENDPOINT_URL", s3_endpoint)
        result = run_flow(root, workspace, "score_flow.py", configs, input=f"s3://{bucket}/incoming/{DAY}/",
                          output=f"s3://{bucket}/predictions", date=DAY, model_run=train_run.id)
    assert result.status == "successful", (result.stdout + result.stderr)[-4000:]

    parts = [f"predictions/dt={DAY}/part-0000{i}-of-00003.parquet" for i in range(3)]
    assert _keys(client, bucket, "predictions/") == sorted([*parts, f"predictions/dt={DAY}/_manifest.json"])
    manifest = json.loads(client.get_object(Bucket=bucket, Key=f"predictions/dt={DAY}/_manifest.json")["Body"].read())
    assert manifest["input"]["files"][0]["path"] == f"s3://{bucket}/incoming/{DAY}/a.parquet"
    assert [s["rows"] for s in result.run.data.plan["files"]] == [4000, 2000]
    assert manifest["totals"]["rows_out"] == 6000 and f"dt={DAY}/part-00004-of-00005.parquet" in manifest["removed"]
    rows = 0
    for part in manifest["parts"]:
        body = client.get_object(Bucket=bucket, Key=f"predictions/{part['path']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == part["sha256"]
        rows += pq.read_table(io.BytesIO(body)).num_rows
    assert rows == 6000

    with pytest.MonkeyPatch.context() as mp:  # the reader side goes through the same helpers
        mp.setenv("METAFLOW_S3_ENDPOINT_URL", s3_endpoint)
        table = score.read_partition(f"s3://{bucket}/predictions", DAY, verify=True).to_pandas()
    assert len(table) == 6000 and table["transaction_id"].is_unique
    assert set(table["transaction_id"]) == set(frame["transaction_id"])
