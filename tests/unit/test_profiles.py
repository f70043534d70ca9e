"""Profiles for AWS and Kubernetes: environment variables, S3 roots, credentials, schedules, the deploy pre-flight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from steps.config import ConfigError, ProfileConfig, expand_env, load_file, parse_profile
from steps.ops import deploy

ROOT = Path(__file__).resolve().parents[2]
AWS, K8S = ROOT / "config" / "profiles" / "aws.yaml", ROOT / "config" / "profiles" / "kubernetes.yaml"
PROFILE_VARS = {"MLOPS_IMAGE": "registry.example/mlops:cpu", "MLOPS_GPU_IMAGE": "registry.example/mlops:gpu",
                "MLOPS_S3_ROOT": "s3://team-bucket/tabular-mlops"}
SFN_SETTINGS = {name: f"value-of-{name}" for name in deploy.REQUIRED["step-functions"]}


@pytest.fixture
def profile_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in PROFILE_VARS.items():
        monkeypatch.setenv(key, value)
    return PROFILE_VARS


# --------------------------------------------------------------------------------------------------- shipped profiles
@pytest.mark.parametrize("path, compute", [(AWS, "batch"), (K8S, "kubernetes")])
def test_cloud_profiles_take_images_and_roots_from_the_environment(profile_env, path, compute):
    profile = ProfileConfig.model_validate(parse_profile(path.read_text()))
    assert profile.compute == compute
    assert profile.image_for("start") == profile_env["MLOPS_IMAGE"]
    assert profile.image_for("train_candidate") == profile.image_for("train_student") == profile_env["MLOPS_GPU_IMAGE"]
    assert profile.storage_root == profile_env["MLOPS_S3_ROOT"]
    assert set(profile.schedules) == {"TrainFlow", "DistillFlow"}  # ScoreFlow's cron is score.schedule_cron
    assert profile.for_step("train_candidate").gpu == profile.for_step("train_student").gpu == 1


@pytest.mark.parametrize("path, lightgbm", [(ROOT / "config" / "profiles" / "local.yaml", "cpu"), (AWS, "gpu"),
                                            (K8S, "gpu")])
def test_the_shipped_configs_use_the_gpu_a_profile_gives_their_lightgbm_models(profile_env, path, lightgbm):
    from steps.config import DistillConfig, TrainConfig
    from steps.distill.students import student_resources
    from steps.modeling.training import candidate_device

    profile = ProfileConfig.model_validate(parse_profile(path.read_text()))
    train, distill = load_file(TrainConfig, ROOT / "config/train.yaml"), load_file(DistillConfig,
                                                                                  ROOT / "config/distill.yaml")
    step, student_step = profile.for_step("train_candidate"), profile.for_step("train_student")
    assert {c.type: candidate_device(c, step) for c in train.candidates} == {
        "lightgbm": lightgbm, "logistic_regression": "cpu", "random_forest": "cpu"}
    assert {s.type: student_resources(s, distill, student_step)[1] for s in distill.students} == {
        "lightgbm": lightgbm, "mlp": "cpu", "linear": "cpu"}
    assert train.threads is distill.threads is None  # each step's cpu: 1 on a laptop, 4 on AWS Batch


def test_both_cloud_profiles_have_the_same_shape(profile_env):
    aws, k8s = (yaml.safe_load(p.read_text()) for p in (AWS, K8S))
    assert set(aws) - {"queues"} == set(k8s)  # queues are AWS Batch's
    assert set(aws["resources"]) == set(k8s["resources"])
    for step in aws["resources"]:
        assert {k: v for k, v in aws["resources"][step].items() if k != "queue"} == k8s["resources"][step]


def test_the_aws_profile_routes_steps_to_its_three_queues():
    profile = load_file(ProfileConfig, AWS)  # parsed without the environment: ${NAME} stays as written
    assert set(profile.queues) == {"default", "gpu", "spot"}
    assert profile.for_step("score_shard").queue == "spot" and profile.for_step("train_candidate").queue == "gpu"
    assert profile.for_step("join").queue == "default"  # on-demand for everything else, and the spot fallback


def test_no_account_ids_or_secrets_in_the_shipped_profiles():
    for path in sorted((ROOT / "config" / "profiles").glob("*.yaml")):
        text = path.read_text()
        assert "arn:aws" not in text and ".dkr.ecr." not in text.split("#")[0], path
        assert not any(c.isdigit() and len(c) == 12 for c in text.replace(":", " ").split()), path


# --------------------------------------------------------------------------------------------------- ${NAME}
def test_missing_variables_are_named_all_at_once(monkeypatch):
    for key in PROFILE_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("sys.argv", ["flows/train_flow.py", "--config", "profile", str(AWS), "run"])
    with pytest.raises(ConfigError, match=f"{AWS} needs environment variable\\(s\\) that are not set: "
                                          "MLOPS_GPU_IMAGE, MLOPS_IMAGE, MLOPS_S3_ROOT"):
        parse_profile(AWS.read_text())


def test_expand_env_fills_nested_values_and_leaves_the_rest():
    data = {"a": "x-${A}-y", "b": ["${B}", 3], "c": {"d": "$A"}, "e": None}
    assert expand_env(data, "p.yaml", {"A": "1", "B": "2"}) == {"a": "x-1-y", "b": ["2", 3], "c": {"d": "$A"},
                                                               "e": None}
    with pytest.raises(ConfigError, match="p.yaml needs .*: B$"):
        expand_env(data, "p.yaml", {"A": "1", "B": ""})  # empty counts as missing


# --------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("changes, message", [
    ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "env must not carry credentials"),
    ({"env": {"API_TOKEN": "x", "OMP_WAIT_POLICY": "PASSIVE"}}, "['API_TOKEN']"),
    ({"env": {"db_password": "x"}}, "['db_password']"),
    ({"schedules": {"TrainFlow": "0 4 * * *"}}, "schedules.TrainFlow: '0 4 * * *' is not an EventBridge cron"),
    ({"storage_root": "s3://"}, "is not an s3:// prefix"),
    ({"s3_roots": ["bucket/prefix"]}, "s3 root 'bucket/prefix' is not an s3:// prefix"),
    ({"aws_secret_access_key": "x"}, "Extra inputs are not permitted"),
])
def test_profile_rules(changes, message):
    with pytest.raises(ValueError, match=None) as info:
        ProfileConfig.model_validate({"name": "p", **changes})
    assert message in str(info.value)


def test_locate_resolves_relative_paths_under_the_storage_root():
    profile = ProfileConfig(name="p", storage_root="s3://bkt/root/", s3_roots=["s3://raw/landing"])
    assert profile.locate("incoming/2026-01-01/") == "s3://bkt/root/incoming/2026-01-01/"
    assert profile.locate("./out/predictions") == "s3://bkt/root/out/predictions"
    assert profile.locate("s3://raw/landing/x.parquet") == "s3://raw/landing/x.parquet"
    assert profile.locate("s3://bkt/root") == "s3://bkt/root"
    assert profile.locate("/abs/file.parquet") == "/abs/file.parquet"


@pytest.mark.parametrize("uri", ["s3://bkt/rootless/x", "s3://bkt/other", "s3://raw/landing2/x", "s3://evil/root/x"])
def test_locate_refuses_s3_paths_outside_the_roots(uri):
    profile = ProfileConfig(name="p", storage_root="s3://bkt/root", s3_roots=["s3://raw/landing"])
    with pytest.raises(ConfigError, match=f"{uri} is outside the profile 'p' S3 roots"):
        profile.locate(uri)


def test_the_local_profile_leaves_paths_alone():
    profile = load_file(ProfileConfig, ROOT / "config" / "profiles" / "local.yaml")
    assert profile.locate("data/transactions.parquet") == "data/transactions.parquet"
    assert profile.locate("s3://any/bucket") == "s3://any/bucket"  # no roots configured: no restriction
    assert profile.image_for("train_candidate") is None and profile.schedules == {}


# --------------------------------------------------------------------------------------------------- deploy pre-flight
def test_deploy_check_passes_with_every_setting(tmp_path):
    env = {**SFN_SETTINGS, **PROFILE_VARS, "METAFLOW_HOME": str(tmp_path)}
    assert deploy.check("step-functions", AWS, env) == []


def test_deploy_check_names_every_missing_setting(tmp_path):
    env = {k: v for k, v in {**SFN_SETTINGS, **PROFILE_VARS}.items()
           if k not in ("METAFLOW_SFN_IAM_ROLE", "MLOPS_GPU_IMAGE")}
    problems = deploy.check("step-functions", AWS, {**env, "METAFLOW_HOME": str(tmp_path)})
    assert problems == ["missing setting: METAFLOW_SFN_IAM_ROLE", "missing setting: MLOPS_GPU_IMAGE"]


def test_deploy_check_reads_metaflows_config_file(tmp_path):
    (tmp_path / "config_team.json").write_text(json.dumps(SFN_SETTINGS))  # `metaflow configure aws --profile team`
    env = {**PROFILE_VARS, "METAFLOW_HOME": str(tmp_path), "METAFLOW_PROFILE": "team"}
    assert deploy.check("step-functions", AWS, env) == []
    assert deploy.check("step-functions", AWS, {**env, "METAFLOW_PROFILE": "other"})  # another profile: missing


def test_deploy_check_refuses_a_profile_for_other_compute(tmp_path):
    env = {**SFN_SETTINGS, **PROFILE_VARS, "METAFLOW_HOME": str(tmp_path), "METAFLOW_KUBERNETES_NAMESPACE": "ml"}
    assert deploy.check("step-functions", K8S, env) == [
        "profile 'kubernetes' has compute 'kubernetes'; step-functions needs 'batch'"]
    assert deploy.check("argo-workflows", K8S, env) == []


def test_deploy_cli_prints_names_never_values(tmp_path, monkeypatch, caplog):
    secret_looking = "arn:aws:iam::123456789012:role/sfn"
    for key, value in {**SFN_SETTINGS, **PROFILE_VARS, "METAFLOW_SFN_IAM_ROLE": secret_looking,
                       "METAFLOW_HOME": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    caplog.set_level("INFO", logger="steps.ops.deploy.console")
    assert deploy.main(["check", "--profile", str(AWS)]) == 0
    monkeypatch.delenv("METAFLOW_SFN_DYNAMO_DB_TABLE")
    assert deploy.main(["check", "--profile", str(AWS)]) == 2
    out = caplog.text  # the console logger's records
    assert "ready to deploy to step-functions" in out and "missing setting: METAFLOW_SFN_DYNAMO_DB_TABLE" in out
    assert secret_looking not in out and PROFILE_VARS["MLOPS_IMAGE"] not in out
