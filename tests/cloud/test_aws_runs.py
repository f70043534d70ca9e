"""The AWS data path end to end on the local S3 server: DVC data on an S3 remote, TrainFlow and ScoreFlow with
``--datastore=s3`` (artifacts, cards, registry tags and audit log, predictions in Parquet), the Client reading back.
ScoreFlow reads an s3:// prefix and writes s3:// parts, sweeping a stale one, as it does on a laptop.

One TrainFlow run and one ScoreFlow run (module fixtures); every test asserts against them. The runs use a test
profile with local compute and ``storage_root`` on the local S3, so relative paths resolve under it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pandas as pd
import pytest
import yaml
from metaflow import Task
from support import FlowResult, run_flow

from steps.scoring.partition import read_partition

pytestmark = pytest.mark.xdist_group("cloud")  # one local S3 server and one set of background deployments per session

DVC = str(Path(sys.executable).with_name("dvc"))
BRANCH = "awse2e"  # @project branch test.awse2e: its own champion and audit log
DAY = "2026-03-01"
STALE = "part-00004-of-00005.parquet"  # left in the partition by an older run with five shards
GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "test",
           "GIT_COMMITTER_EMAIL": "test@example.com"}
LENIENT_GATES = {  # every suite runs, with thresholds a one-model tiny run passes: the run is promoted
    "primary_metric": "roc_auc", "decision_threshold": 0.1,
    "bootstrap": {"samples": 20, "confidence": 0.9, "seed": 0},
    "performance": {"thresholds": {"roc_auc": {"min": 0.55}}},
    "fairness": {"min_slice_size": 50, "min_slice_positives": 1, "intersections": False,
                 "demographic_parity_difference": {"max": 1.0}, "equalized_odds_difference": {"max": 1.0},
                 "worst_group_auc_ratio": {"min": 0.01}},
    "robustness": {"sample_rows": 200, "max_mean_abs_change": 1.0, "max_p99_abs_change": 1.0,
                   "min_auc_ratio_with_missing": 0.01},
    "efficiency": {"latency_rows": 20, "batch_rows": 500, "max_p50_ms": 2000, "max_p99_ms": 10000,
                   "min_rows_per_s": 1, "max_size_mb": 500, "max_peak_memory_mb": 8192},
    "review": {"band": [0.4, 0.6], "max_rate": 1.0},
}


def sh(*cmd: str, cwd: Path) -> str:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _keys(bucket: str, prefix: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(scope="module")
def dvc_clone(tmp_path_factory, tiny_data: Path, s3_endpoint: str, aws_bucket: str) -> tuple[Path, bytes]:
    """A git+DVC repository whose data/ was pushed to an S3 remote, freshly cloned (empty cache): (clone, bytes)."""
    base, bucket = tmp_path_factory.mktemp("dvc-s3"), aws_bucket
    repo, clone = base / "repo", base / "clone"
    repo.mkdir()
    sh("git", "init", "--quiet", cwd=repo)
    sh(DVC, "init", "--quiet", cwd=repo)
    with (repo / ".dvc" / "config").open("a") as config:  # what `dvc remote add -d` + `modify endpointurl` write
        config.write(f"[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://{bucket}/dvc\n"
                     f"    endpointurl = {s3_endpoint}\n")  # the local server; committed, so the clone has it
    (repo / "data").mkdir()
    shutil.copyfile(tiny_data, repo / "data" / "transactions.parquet")
    sh(DVC, "add", "--quiet", "data", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "--quiet", "-m", "data v1", cwd=repo)
    sh("git", "tag", "v1", cwd=repo)
    sh(DVC, "push", "--quiet", cwd=repo)
    sh("git", "clone", "--quiet", str(repo), str(clone), cwd=base)
    assert not (clone / "data").exists() and not (clone / ".dvc" / "cache").exists()
    return clone, tiny_data.read_bytes()


@pytest.fixture(scope="module")
def cloud_configs(tmp_path_factory, config_paths, tiny_configs, aws_bucket: str) -> dict[str, Path]:
    """Test profile (local compute, S3 storage root), one fast candidate, lenient gates, small score shards."""
    directory, bucket = tmp_path_factory.mktemp("cloud-config"), aws_bucket
    files = {
        "profile": {"name": "cloud-test", "compute": "local", "retry": {"times": 1, "minutes_between_retries": 0},
                    "storage_root": f"s3://{bucket}/tabular-mlops", "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
        "train": {**yaml.safe_load(Path(tiny_configs["train"]).read_text()),
                  "candidates": [{"name": "logreg", "type": "logistic_regression", "params": {"C": 0.5}}]},
        "gates": LENIENT_GATES,
        "score": {"shard_rows": 4000, "batch_rows": 1000},  # two shards: 4000 + 2000 rows
    }
    paths = {name: directory / f"{name}.yaml" for name in files}
    for name, content in files.items():
        paths[name].write_text(yaml.safe_dump(content))
    return {"dataset": config_paths["dataset"], **paths}


def _run_on_s3(root, workspace, flow, configs, aws_env, **params) -> FlowResult:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_env.items():
            mp.setenv(key, value)
        return run_flow(root, workspace, flow, configs, branch=BRANCH, datastore="s3", **params)


@pytest.fixture(scope="module")
def s3_train(root, workspace, cloud_configs, dvc_clone, aws_env, deploy_jobs) -> FlowResult:
    """TrainFlow on the S3 datastore, its data read at --data-rev v1 from the clone's S3 DVC remote.

    ``deploy_jobs`` starts test_deploy.py's compiles now, in the background: they overlap with these runs.
    """
    configs = {k: cloud_configs[k] for k in ("dataset", "train", "gates", "profile")}
    result = _run_on_s3(root, workspace, "train_flow.py", configs, aws_env, data_rev="v1", data_repo=str(dvc_clone[0]))
    assert result.status == "successful", (result.stdout + result.stderr)[-4000:]
    return result


@pytest.fixture(scope="module")
def s3_score(root, workspace, cloud_configs, s3_train, aws_env, aws_bucket, tiny_data, tmp_path_factory) -> FlowResult:
    """ScoreFlow on the S3 datastore: relative input/output under the storage root; shard 1 gets a spot notice.

    The input is a prefix with two Parquet files and a ``_SUCCESS`` marker; the partition holds a stale part.
    """
    client, frame = boto3.client("s3"), pd.read_parquet(tiny_data)
    for name, part in (("a", frame.iloc[:4000]), ("b", frame.iloc[4000:])):  # two shards: a (4000 rows), b (2000)
        buffer = io.BytesIO()
        part.to_parquet(buffer, row_group_size=2000, index=False)
        client.put_object(Bucket=aws_bucket, Key=f"tabular-mlops/incoming/{DAY}/{name}.parquet", Body=buffer.getvalue())
    client.put_object(Bucket=aws_bucket, Key=f"tabular-mlops/incoming/{DAY}/_SUCCESS", Body=b"")  # not Parquet
    client.put_object(Bucket=aws_bucket, Key=f"tabular-mlops/predictions/dt={DAY}/{STALE}", Body=b"an older run's")
    notices = tmp_path_factory.mktemp("spot")
    (notices / "notice-1-0").write_text("2026-03-01T03:00:00Z")  # shard 1, first attempt: reclaimed
    configs = {k: cloud_configs[k] for k in ("dataset", "gates", "profile", "score")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_SPOT_NOTICE_PATH", str(notices / "notice-{shard}-{attempt}"))
        result = _run_on_s3(root, workspace, "score_flow.py", configs, aws_env, input=f"incoming/{DAY}/",
                            output="predictions", date=DAY, model_run=s3_train.run.id)
    assert result.status == "successful", (result.stdout + result.stderr)[-4000:]
    return result


def test_train_flow_reads_data_rev_from_the_s3_dvc_remote(s3_train, dvc_clone):
    lineage = s3_train.run.data.lineage  # the Client reads the artifact back from S3
    clone, original = dvc_clone
    recorded = yaml.safe_load(sh("git", "show", "v1:data.dvc", cwd=clone))["outs"][0]["md5"]
    assert lineage["dvc_md5"] == recorded and lineage["data_rev"] == "v1"
    assert lineage["sha256"] == hashlib.sha256(original).hexdigest() and lineage["rows"] == 6000
    sh(DVC, "pull", "--quiet", cwd=clone)  # the fresh clone pulls the same bytes from the S3 remote
    assert (clone / "data" / "transactions.parquet").read_bytes() == original


def test_train_flow_artifacts_cards_tags_and_audit_log_on_s3(s3_train, aws_bucket):
    run, bucket = s3_train.run, aws_bucket
    assert run.data.model_name == "logreg" and run.data.gates_passed
    assert {"candidate", "champion"} <= set(run.tags)  # registered and promoted
    task = run["start"].task
    assert task.metadata_dict.get("ds-type") == "s3"
    artifacts = _keys(bucket, "metaflow/TrainFlow/")
    assert any("/data/" in k for k in artifacts)  # content-addressed artifacts and the code package
    cards = _keys(bucket, "metaflow/mf.cards/TrainFlow/")
    assert any(k.endswith(".html") and "/join/" in k for k in cards), cards[:10]
    assert any(k.endswith(".html") and "/judge/" in k for k in cards), cards[:10]
    events = _keys(bucket, f"metaflow/_registry/tabular_mlops/test.{BRANCH}/TrainFlow/card_transactions/events/")
    assert [k.rsplit("/", 1)[1] for k in events] == ["00000001.json"]
    event = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=events[0])["Body"].read())
    assert event["to"] == run.id and event["kind"] == "promote"
    assert event["aws_identity"].startswith("arn:aws:")  # the caller identity (STS) of the credentials in use
    stored = run.data.lineage["extra"]["content"]  # the training data, by md5 in the S3 DVC remote
    assert stored["object"] == f"s3://{bucket}/tabular-mlops/dvc/files/md5/{stored['md5'][:2]}/{stored['md5'][2:]}"
    body = boto3.client("s3").get_object(Bucket=bucket, Key=stored["object"].split("/", 3)[3])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == run.data.lineage["sha256"]


def test_score_flow_writes_parquet_on_s3_and_the_client_reads_it(s3_score, s3_train, aws_bucket, s3_endpoint,
                                                                tiny_data):
    run, bucket = s3_score.run, aws_bucket
    root = f"s3://{bucket}/tabular-mlops/predictions"
    assert run.data.plan["output_root"] == root  # "predictions" resolved under the profile's storage root
    assert [f["rows"] for f in run.data.plan["files"]] == [4000, 2000]  # _SUCCESS ignored
    assert run.data.model_run_used.endswith(s3_train.run.id)
    manifest = run.data.manifest  # the Client reads the artifact back from the S3 datastore
    assert manifest["input"]["files"][0]["path"] == f"s3://{bucket}/tabular-mlops/incoming/{DAY}/a.parquet"
    assert manifest["totals"]["rows_out"] == 6000 and f"dt={DAY}/{STALE}" in manifest["removed"]
    parts = ("part-00000-of-00002-c00000001.parquet", "part-00001-of-00002-c00000001.parquet")  # the run's claim
    assert _keys(bucket, f"tabular-mlops/predictions/_claims/dt={DAY}/") == [
        f"tabular-mlops/predictions/_claims/dt={DAY}/00000001.json"]  # created with If-None-Match on S3
    assert _keys(bucket, f"tabular-mlops/predictions/dt={DAY}/") == [
        f"tabular-mlops/predictions/dt={DAY}/{name}" for name in ("_manifest.json", *parts)]  # the stale part is gone
    client = boto3.client("s3")
    for part in manifest["parts"]:
        body = client.get_object(Bucket=bucket, Key=f"tabular-mlops/predictions/{part['path']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == part["sha256"]
    frame = pd.read_parquet(f"{root}/dt={DAY}/", storage_options={"client_kwargs": {"endpoint_url": s3_endpoint}})
    assert len(frame) == 6000 and {"score", "decision"} <= set(frame.columns)
    with pytest.MonkeyPatch.context() as mp:  # the reader side goes through the same helpers
        mp.setenv("METAFLOW_S3_ENDPOINT_URL", s3_endpoint)
        table = read_partition(root, DAY, verify=True).to_pandas()
    assert len(table) == 6000 and table["transaction_id"].is_unique
    assert set(table["transaction_id"]) == set(pd.read_parquet(tiny_data)["transaction_id"])


def test_a_spot_reclaimed_shard_is_retried_on_s3(s3_score):
    shards = {t.data.shard_result["shard"]: t for t in s3_score.run["score_shard"]}
    assert shards[1].current_attempt == 1 and shards[0].current_attempt == 0  # only the reclaimed shard reran
    first = Task(shards[1].pathspec, attempt=0)  # the reclaimed attempt's log, read back from S3
    assert "spot termination notice" in first.stderr and "shard 1 attempt 0 stops" in first.stderr
    assert shards[1].data.shard_result["rows_out"] == 2000


def test_no_secret_reaches_a_log(s3_train, s3_score):
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    for result in (s3_train, s3_score):
        assert secret not in result.stdout + result.stderr
