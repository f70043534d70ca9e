"""Training data read from s3:// (a local S3 server): the same loader, lineage and validation as local files."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from steps.config import DatasetConfig, load_file
from steps.data import synth
from steps.data.contract import DataValidationError, validate
from steps.data.load import load_table

pytestmark = pytest.mark.xdist_group("cloud")  # one local S3 server and one set of background deployments per session


@pytest.fixture(scope="module")
def spec(config_paths) -> DatasetConfig:
    return load_file(DatasetConfig, config_paths["dataset"])


def test_parquet_on_s3_loads_with_lineage(s3_endpoint, bucket, spec, tmp_path):
    path = synth.write_parquet(synth.SynthSpec(rows=3000, seed=5), tmp_path / "t.parquet")
    boto3.client("s3", endpoint_url=s3_endpoint).upload_file(str(path), bucket, "data/t.parquet")
    frame, lineage = load_table(f"s3://{bucket}/data/t.parquet", spec)
    validated = validate(frame, spec, lineage.source)
    assert len(validated) == 3000
    assert lineage.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lineage.dvc_md5 is None  # not DVC-tracked: no data version is claimed


def test_missing_s3_object_names_the_url(s3_endpoint, bucket, spec):
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nope.parquet"):
        load_table(f"s3://{bucket}/nope.parquet", spec)


def test_corrupt_s3_object_names_the_url(s3_endpoint, bucket, spec):
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key="bad.parquet", Body=b"not parquet")
    with pytest.raises(DataValidationError, match=f"s3://{bucket}/bad.parquet: 1 validation error"):
        load_table(f"s3://{bucket}/bad.parquet", spec)


def test_a_stored_table_gone_from_s3_fails_with_its_uri(s3_endpoint, bucket, spec, tmp_path):
    from steps.data import table

    frame = validate(synth.generate(synth.SynthSpec(rows=2000, seed=3)), spec, "generated")
    ref = table.write_table(frame, f"s3://{bucket}/datastore/_tables").to_dict()
    assert len(table.read_columns(ref, ["amount"])) == 2000
    boto3.client("s3", endpoint_url=s3_endpoint).delete_object(Bucket=bucket, Key=ref["uri"][len(f"s3://{bucket}/"):])
    with pytest.raises(table.StoredTableError, match=f"{ref['uri']} .* is gone from the datastore"):
        table.read_columns(ref, ["amount"])
