"""A local AWS (moto in server mode) on 127.0.0.1, for the cloud path of the flows: S3, and for deployments the
Batch compute environments and job queues of the aws profile, the IAM roles, and Step Functions / EventBridge."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer
from support import DEPLOY_FLOWS, MAKE_DEPLOYED, PACKAGE_LISTED

SECRET = "offline-secret-3f9a1c"  # the fake secret key: distinctive, so tests can prove it never reaches a log


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Start moto on a free loopback port with dummy credentials; yields its URL."""
    port = _free_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=url)
    yield url
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def bucket(s3_endpoint: str) -> str:
    """An empty bucket on the local server."""
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="tabular-mlops-test")
    return "tabular-mlops-test"


def _batch_stack(queue_names: dict[str, str]) -> dict[str, str]:
    """VPC, roles, managed EC2/SPOT/GPU compute environments and the profile's job queues; returns role ARNs."""
    ec2, iam, batch = boto3.client("ec2"), boto3.client("iam"), boto3.client("batch")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="batch", Description="batch", VpcId=vpc)["GroupId"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": []})
    roles = {name: iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
             for name in ("batch-service", "ecs-instance", "ecs-s3-access", "step-functions", "eventbridge-sfn")}
    instance = iam.create_instance_profile(InstanceProfileName="ecs-instance")["InstanceProfile"]["Arn"]
    iam.add_role_to_instance_profile(InstanceProfileName="ecs-instance", RoleName="ecs-instance")
    environments = {}
    for name, kind, types in (("ondemand", "EC2", ["m5.xlarge"]), ("spot", "SPOT", ["m5.xlarge"]),
                              ("gpu", "EC2", ["g4dn.xlarge"])):
        environments[name] = batch.create_compute_environment(
            computeEnvironmentName=f"mlops-{name}", type="MANAGED", state="ENABLED", serviceRole=roles["batch-service"],
            computeResources={"type": kind, "minvCpus": 0, "maxvCpus": 64, "instanceTypes": types,
                              "subnets": [subnet], "securityGroupIds": [group], "instanceRole": instance},
        )["computeEnvironmentArn"]
    # the spot queue falls back to on-demand capacity when no spot capacity is available
    order = {"default": ["ondemand"], "gpu": ["gpu"], "spot": ["spot", "ondemand"]}
    for key, queue in queue_names.items():
        batch.create_job_queue(jobQueueName=queue, state="ENABLED", priority=1, computeEnvironmentOrder=[
            {"order": i + 1, "computeEnvironment": environments[env]} for i, env in enumerate(order[key])])
    return roles


@pytest.fixture(scope="session")
def aws_bucket(s3_endpoint: str) -> str:
    """The bucket of the AWS path (Metaflow datastore, DVC remote, profile storage root), apart from ``bucket``."""
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="tabular-mlops-aws")
    return "tabular-mlops-aws"


@pytest.fixture(scope="session")
def aws_env(s3_endpoint: str, aws_bucket: str, root: Path) -> dict[str, str]:
    """The local AWS stack for deployments, and the settings Metaflow and the aws profile read from the environment.

    Not exported to this process: pass it to subprocesses (or monkeypatch it in) where a test needs it.
    """
    queues = yaml.safe_load((root / "config" / "profiles" / "aws.yaml").read_text())["queues"]
    roles = _batch_stack(queues)
    bucket = aws_bucket
    return {
        "METAFLOW_DEFAULT_DATASTORE": "s3",
        "METAFLOW_DATASTORE_SYSROOT_S3": f"s3://{bucket}/metaflow",
        "METAFLOW_DATATOOLS_S3ROOT": f"s3://{bucket}/data",
        "METAFLOW_CARD_S3ROOT": f"s3://{bucket}/metaflow/mf.cards",
        "METAFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "METAFLOW_BATCH_JOB_QUEUE": queues["default"],
        "METAFLOW_ECS_S3_ACCESS_IAM_ROLE": roles["ecs-s3-access"],
        "METAFLOW_SFN_IAM_ROLE": roles["step-functions"],
        "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE": roles["eventbridge-sfn"],
        "METAFLOW_SFN_DYNAMO_DB_TABLE": "metaflow-sfn",
        "METAFLOW_KUBERNETES_NAMESPACE": "mlops",
        "MLOPS_IMAGE": "registry.example/tabular-mlops:cpu",
        "MLOPS_GPU_IMAGE": "registry.example/tabular-mlops:gpu",
        "MLOPS_S3_ROOT": f"s3://{bucket}/tabular-mlops",
        "MLOPS_DATA_REMOTE": f"s3://{bucket}/tabular-mlops/dvc",  # TrainFlow stores its data there by md5
    }


@pytest.fixture(scope="session")
def deploy_jobs(aws_env: dict[str, str], root: Path,
                tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], subprocess.Popen]:
    """Every deployment command of tests/cloud, started at once in the background: {(kind, flow file): process}.

    ``step-functions create --only-json`` (aws profile) and ``argo-workflows create --only-json`` (kubernetes profile)
    per flow, ``package list``, and ``make deploy`` (a full ``step-functions create``). test_aws_runs.py requests
    this first, so the compiles overlap with its flow runs; test_deploy.py waits for them and asserts.
    Each job stores its production token in a home of its own: Metaflow rewrites one JSON file per flow name
    without a lock, so two concurrent deployments of one flow would read each other's half-written file.
    """
    env = {**os.environ, **aws_env, "METAFLOW_USER": "ci"}
    aws, k8s = root / "config" / "profiles" / "aws.yaml", root / "config" / "profiles" / "kubernetes.yaml"

    def start(*cmd: str) -> subprocess.Popen:
        tokens = {"METAFLOW_TOKEN_HOME": str(tmp_path_factory.mktemp("tokens"))}
        return subprocess.Popen(cmd, cwd=root, env={**env, **tokens}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    py = sys.executable
    jobs = {("make-deploy", ""): start("make", "-o", "setup", "deploy", f"PY={py}",
                                       f"DEPLOY_FLOWS={' '.join(f'flows/{f}' for f in MAKE_DEPLOYED)}")}
    for flow in DEPLOY_FLOWS:
        jobs["sfn", flow] = start(py, f"flows/{flow}", "--config", "profile", str(aws), "step-functions", "create",
                                  "--only-json")
        jobs["argo", flow] = start(py, f"flows/{flow}", "--config", "profile", str(k8s), "argo-workflows", "create",
                                   "--only-json")
    for flow in PACKAGE_LISTED:
        jobs["package", flow] = start(py, f"flows/{flow}", "--config", "profile", str(aws), "package", "list")
    yield jobs
    for proc in jobs.values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
