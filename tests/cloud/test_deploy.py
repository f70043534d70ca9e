"""Deployments proven offline: Step Functions and Argo Workflows definitions of every flow, compiled against the local
AWS (moto) and asserted against the profiles; `make deploy` creating the state machines and EventBridge schedules.

Every command runs once, in the background (the ``deploy_jobs`` fixture); the tests read the results.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml
from support import DEPLOY_FLOWS, MAKE_DEPLOYED, PACKAGE_LISTED, package_files

from steps.config import ProfileConfig, parse_profile

pytestmark = pytest.mark.xdist_group("cloud")  # one local S3 server and one set of background deployments per session

FLOWS = DEPLOY_FLOWS
GPU_STEPS = {"TrainFlow": "train_candidate", "DistillFlow": "train_student"}  # heavy steps that must get a GPU
OWN_SCHEDULE = {"ScoreFlow": "score.yaml", "MonitorFlow": "monitor.yaml"}  # @schedule from the flow's own config
ROOT = Path(__file__).resolve().parents[2]
AWS, K8S = ROOT / "config" / "profiles" / "aws.yaml", ROOT / "config" / "profiles" / "kubernetes.yaml"


@dataclass(frozen=True)
class Done:
    """A finished command: exit code and output."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def deployed(deploy_jobs) -> dict[tuple[str, str], Done]:
    """The finished deployment commands (started by the ``deploy_jobs`` fixture): {(kind, flow file): result}."""
    done = {}
    for key, proc in deploy_jobs.items():
        stdout, stderr = proc.communicate(timeout=600)
        done[key] = Done(proc.returncode, stdout, stderr)
    return done


def _ok(result: Done) -> Done:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def _batch_tasks(states: dict) -> dict[str, dict]:
    """{step name: Batch submitJob parameters}, including the states inside foreach (Map) iterators."""
    tasks = {}
    for name, state in states.items():
        if state["Type"] == "Map":
            tasks.update(_batch_tasks(state["Iterator"]["States"]))
        elif state.get("Resource", "").startswith("arn:aws:states:::batch:submitJob"):
            tasks[name] = state["Parameters"]
    return tasks


def _environment(params: dict) -> dict[str, str]:
    return {e["Name"]: e.get("Value") for e in params["ContainerOverrides"]["Environment"]}


def _profile(path: Path, env: dict[str, str]) -> ProfileConfig:
    """A shipped profile as the deploy commands parse it (``${NAME}`` from ``env``)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        return ProfileConfig.model_validate(parse_profile(path.read_text()))


@pytest.fixture(scope="module")
def aws_profile(aws_env: dict[str, str]) -> ProfileConfig:
    return _profile(AWS, aws_env)


@pytest.fixture(scope="module")
def k8s_profile(aws_env: dict[str, str]) -> ProfileConfig:
    return _profile(K8S, aws_env)


@pytest.mark.parametrize("flow", FLOWS)
def test_step_functions_json_follows_the_aws_profile(deployed, flow, aws_profile, s3_endpoint):
    result = _ok(deployed["sfn", flow])
    tasks = _batch_tasks(json.loads(result.stdout)["States"])
    assert {"start", "end"} <= set(tasks)
    definitions = boto3.client("batch").describe_job_definitions(
        jobDefinitions=[p["JobDefinition"] for p in tasks.values()])["jobDefinitions"]
    images = {d["jobDefinitionArn"]: d["containerProperties"]["image"] for d in definitions}
    for step, params in tasks.items():
        res = aws_profile.for_step(step)
        assert params["JobQueue"] == aws_profile.queues[res.queue or "default"], step
        assert params["RetryStrategy"] == {"Attempts": aws_profile.retry.times + 1, "EvaluateOnExit": [
            {"OnExitCode": "202", "Action": "EXIT"}]}, step  # a user error (exit 202) is not retried on Batch either
        assert params["Timeout"]["AttemptDurationSeconds"] == res.timeout_minutes * 60, step
        requirements = {r["Type"]: r["Value"] for r in params["ContainerOverrides"]["ResourceRequirements"]}
        assert requirements["VCPU"] == str(res.cpu) and requirements["MEMORY"] == str(res.memory), step
        assert requirements.get("GPU", "0") == str(res.gpu), step
        assert images[params["JobDefinition"]] == aws_profile.image_for(step), step
        assert _environment(params)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr  # credentials stay in the chain


@pytest.mark.parametrize("flow, step", [(f, s) for f, c in FLOWS.items() for k, s in GPU_STEPS.items() if k == c])
def test_heavy_steps_request_a_gpu_on_the_gpu_queue(deployed, flow, step):
    params = _batch_tasks(json.loads(_ok(deployed["sfn", flow]).stdout)["States"])[step]
    assert params["JobQueue"] == "metaflow-gpu-ondemand"
    assert {"Type": "GPU", "Value": "1"} in params["ContainerOverrides"]["ResourceRequirements"]
    assert params["JobDefinition"]  # registered on the local Batch API
    start = _batch_tasks(json.loads(deployed["sfn", flow].stdout)["States"])["start"]
    assert not any(r["Type"] == "GPU" for r in start["ContainerOverrides"]["ResourceRequirements"])


def test_score_shards_run_on_spot_with_retries_and_a_timeout(deployed):
    states = json.loads(_ok(deployed["sfn", "score_flow.py"]).stdout)["States"]
    assert states["*score_shard"]["Type"] == "Map"  # the foreach over shards
    shard = _batch_tasks(states)["score_shard"]
    assert shard["JobQueue"] == "metaflow-spot"
    assert shard["RetryStrategy"]["Attempts"] == 4  # retry.times 3: a reclaimed shard is redone three times
    assert shard["Timeout"] == {"AttemptDurationSeconds": 3600}
    assert _batch_tasks(states)["join"]["JobQueue"] == "metaflow-ondemand"  # only the shards take the spot risk


@pytest.mark.parametrize("flow", FLOWS)
def test_the_uploaded_code_package_holds_steps_and_config(deployed, flow):
    params = _batch_tasks(json.loads(_ok(deployed["sfn", flow]).stdout)["States"])["start"]
    bucket, key = _environment(params)["METAFLOW_CODE_URL"].removeprefix("s3://").split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    names = set(tarfile.open(fileobj=io.BytesIO(body)).getnames())
    expected = {f".mf_code/{rel}".replace(".mf_code/flows/", "") for rel in package_files(ROOT)}
    assert not expected - names and flow in names, sorted(expected - names)


@pytest.mark.parametrize("flow", PACKAGE_LISTED)
def test_package_list_shows_steps_and_config(deployed, flow):
    listed = (lambda r: r.stdout + r.stderr)(_ok(deployed["package", flow]))
    missing = [rel for rel in package_files(ROOT) if f"{ROOT}/{rel}" not in listed]
    assert missing == [], missing


def test_make_deploy_creates_state_machines_and_schedules(deployed, aws_profile):
    result = _ok(deployed["make-deploy", ""])
    assert "ready to deploy to step-functions" in result.stdout
    machines = {m["name"]: m["stateMachineArn"]
                for m in boto3.client("stepfunctions").list_state_machines()["stateMachines"]}
    events = boto3.client("events")
    crons = {"TrainFlow": aws_profile.schedules["TrainFlow"], "ScoreFlow": _own_cron("ScoreFlow")}
    for flow in (FLOWS[f] for f in MAKE_DEPLOYED):
        name = f"tabular_mlops.prod.{flow}"  # `make deploy` deploys the production namespace
        assert name in machines, sorted(machines)
        definition = json.loads(boto3.client("stepfunctions").describe_state_machine(
            stateMachineArn=machines[name])["definition"])
        assert definition["StartAt"] == "start"
        rule = events.describe_rule(Name=name)
        assert rule["ScheduleExpression"] == f"cron({crons[flow]})" and rule["State"] == "ENABLED"
        targets = events.list_targets_by_rule(Rule=name)["Targets"]
        assert [t["Arn"] for t in targets] == [machines[name]]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr


def test_make_deploy_stops_first_naming_missing_settings(aws_env, tmp_path):
    env = {k: v for k, v in {**os.environ, **aws_env}.items() if k not in ("MLOPS_IMAGE", "METAFLOW_SFN_IAM_ROLE")}
    env["METAFLOW_HOME"] = str(tmp_path)  # no Metaflow config file to fall back on
    proc = subprocess.run(["make", "-o", "setup", "deploy", f"PY={sys.executable}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "missing setting: METAFLOW_SFN_IAM_ROLE" in proc.stdout and "missing setting: MLOPS_IMAGE" in proc.stdout
    assert "step-functions create" not in proc.stdout  # nothing was created


def _own_cron(flow_class: str) -> str | None:
    """The cron a flow's own config gives its ``@schedule`` (None: the profile schedules it)."""
    name = OWN_SCHEDULE.get(flow_class)
    return yaml.safe_load((ROOT / "config" / name).read_text())["schedule_cron"] if name else None


def _argo_template(result: Done) -> dict:
    return json.loads(_ok(result).stdout)


def _containers(template: dict) -> dict[str, dict]:
    """{step name: container} of the workflow template (Argo names use dashes)."""
    return {t["name"].replace("-", "_"): t["container"] for t in template["spec"]["templates"] if "container" in t}


@pytest.mark.parametrize("flow", FLOWS)
def test_argo_workflows_json_follows_the_kubernetes_profile(deployed, flow, aws_env, k8s_profile):
    profile = k8s_profile
    template = _argo_template(deployed["argo", flow])
    containers = _containers(template)
    gpu_step = GPU_STEPS.get(FLOWS[flow])
    for step, container in containers.items():
        limits = container["resources"]["limits"]
        expected_gpu = profile.for_step(step).gpu
        assert int(limits.get("nvidia.com/gpu", 0)) == expected_gpu, step
        assert container["image"] == profile.image_for(step), step
    if gpu_step:
        assert containers[gpu_step]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert containers[gpu_step]["image"] == aws_env["MLOPS_GPU_IMAGE"]
    cron = json.loads(template["metadata"]["annotations"]["metaflow/cron"])
    expected = _own_cron(FLOWS[flow]) or profile.schedules[FLOWS[flow]]
    assert cron == {"schedule": " ".join(expected.split()[:5]), "tz": ""}  # Argo: the first five fields, UTC
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in deployed["argo", flow].stdout + deployed["argo", flow].stderr
