"""MonitorFlow's `deployer` launcher on the local AWS: it starts an execution of the TrainFlow state machine that
`make deploy` created (the AWS path of a retraining), and records the triggered run."""

from __future__ import annotations

import boto3
import pytest

from steps.config import RetrainConfig
from steps.monitoring import retrain

pytestmark = pytest.mark.xdist_group("cloud")  # one local S3 server and one set of background deployments per session


def test_the_deployer_launcher_starts_the_deployed_trainflow(deploy_jobs, aws_env, s3_endpoint, monkeypatch) -> None:
    assert deploy_jobs["make-deploy", ""].wait(timeout=900) == 0  # test_deploy.py asserts its output
    for key, value in {**aws_env, "METAFLOW_USER": "ci"}.items():
        monkeypatch.setenv(key, value)
    sfn = boto3.client("stepfunctions", endpoint_url=s3_endpoint)
    # `make deploy` deploys with --production; a deployed MonitorFlow runs on that branch too ("prod")
    machine = next(m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "tabular_mlops.prod.TrainFlow")
    before = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    cfg = RetrainConfig(launcher="deployer", orchestrator="step-functions", params={"data": "s3://x/new.parquet"})
    record = retrain.launch(cfg, retrain.Decision(True, "feature_drift breached", "hybrid"), "prod")
    assert record["status"] == "triggered", record
    executions = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    assert len(executions) == len(before) + 1
    started = sfn.describe_execution(executionArn=executions[0]["executionArn"])
    run_id = record["run"].split("/", 1)[1]
    assert record["run"].startswith("TrainFlow/sfn-") and started["name"] in run_id
    assert "s3://x/new.parquet" in started["input"]  # the retraining's parameters reach the execution
