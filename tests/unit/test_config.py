"""steps/config.py: the schemas accept the shipped files and reject bad ones with messages naming file and key."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from steps import config
from steps.config import (
    CandidateConfig,
    ConfigError,
    DatasetConfig,
    ProfileConfig,
    TrainConfig,
    load,
    load_file,
    parse_text,
)

ROOT = Path(__file__).resolve().parents[2]
DELETE = object()

DATASET = {
    "name": "d", "path": "d.parquet", "time": "t", "target": {"name": "y"},
    "numeric": {"x": {"min": 0, "max": 1}}, "categorical": {"c": {"categories": ["a", "b"]}},
}
TRAIN = {"candidates": [{"name": "a", "type": "lightgbm"}, {"name": "b", "type": "logistic_regression"}]}
PROFILE = {"name": "p", "queues": {"default": "q", "gpu": "g"},
           "resources": {"default": {"cpu": 1}, "train_candidate": {"cpu": 2, "queue": "gpu"}}}


def mutated(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted keys set (or removed with ``DELETE``); lists indexed by number."""
    out = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DELETE:
            del node[last]
        else:
            node[last] = value
    return out


def config_error(model: type, doc: Any, source: str = "/cfg/under/test.yaml") -> str:
    """The message of the ConfigError that parsing ``doc`` raises (fails the test when nothing is raised)."""
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
    with pytest.raises(ConfigError) as info:
        parse_text(model, text, source)
    return str(info.value)


# --------------------------------------------------------------------------------------------------- shipped files
@pytest.mark.parametrize("rel, model", [
    ("config/dataset.yaml", DatasetConfig),
    ("config/train.yaml", TrainConfig),
    ("config/profiles/local.yaml", ProfileConfig),
    ("config/profiles/aws.yaml", ProfileConfig),
    ("config/datasets/nycflights13.yaml", DatasetConfig),
])
def test_shipped_config_files_parse(rel: str, model: type) -> None:
    path = ROOT / rel
    parsed = parse_text(model, path.read_text(), str(path))
    typed = load_file(model, path)
    assert isinstance(typed, model)
    assert typed.model_dump(mode="json") == parsed
    assert load(model, parsed) == typed  # what a step rebuilds from the Config value is the same model


def test_dataset_yaml_content(dataset_spec: DatasetConfig) -> None:
    assert dataset_spec.id_column == "transaction_id"
    assert dataset_spec.time_column == "event_time" and dataset_spec.time.unit == "timestamp"
    assert dataset_spec.target.name == "is_fraud" and dataset_spec.target.derive is None
    assert len(dataset_spec.features) >= 20
    assert dataset_spec.features[:len(dataset_spec.numeric)] == list(dataset_spec.numeric)  # numeric first
    assert dataset_spec.features[-1] == list(dataset_spec.categorical)[-1]
    assert set(dataset_spec.sensitive) <= set(dataset_spec.features)
    assert dataset_spec.numeric["km_from_home"].max_null_rate == 0.05
    assert dataset_spec.categorical["channel"].categories == ["pos_chip", "contactless", "ecommerce", "atm", "moto"]


def test_train_yaml_content() -> None:
    cfg = load_file(TrainConfig, ROOT / "config" / "train.yaml")
    assert [c.name for c in cfg.candidates] == ["logreg", "lightgbm", "random_forest"]
    assert cfg.selection_metric == "average_precision"
    assert cfg.max_train_rows is None
    assert cfg.split.validation_fraction + cfg.split.holdout_fraction < 1


@pytest.mark.parametrize("rel, compute, step, expected", [
    ("config/profiles/local.yaml", "local", "train_candidate", {"memory": 8192, "queue": None, "gpu": 0}),
    ("config/profiles/local.yaml", "local", "no_such_step", {"memory": 4096, "cpu": 1}),
    ("config/profiles/aws.yaml", "batch", "train_candidate", {"gpu": 1, "queue": "gpu", "cpu": 4}),
    ("config/profiles/aws.yaml", "batch", "end", {"queue": "default", "gpu": 0}),
])
def test_profile_for_step(rel: str, compute: str, step: str, expected: dict[str, Any]) -> None:
    profile = load_file(ProfileConfig, ROOT / rel)
    assert profile.compute == compute
    resources = profile.for_step(step)
    assert {k: getattr(resources, k) for k in expected} == expected


# --------------------------------------------------------------------------------------------------- defaults
def test_defaults_are_filled_in() -> None:
    parsed = parse_text(TrainConfig, yaml.safe_dump(TRAIN), "t.yaml")
    assert parsed["split"] == {"method": "time", "validation_fraction": 0.15, "holdout_fraction": 0.15,
                               "column": None, "holdout_values": [], "validation_values": [], "seed": 42}
    assert parsed["selection_metric"] == "average_precision"
    defaults = (parsed["seed"], parsed["threads"], parsed["max_train_rows"], parsed["curve_points"])
    assert defaults == (42, None, None, 200)  # threads None: the train_candidate step's cpu
    assert parsed["candidates"][0]["params"] == {} and parsed["candidates"][0]["device"] == "auto"

    ds = parse_text(DatasetConfig, yaml.safe_dump(DATASET), "d.yaml")
    assert ds["id"] is None and ds["min_rows"] == 100 and ds["sensitive"] == [] and ds["ignored"] == []
    assert ds["target"] == {"name": "y", "derive": None, "min_positives": 20, "max_positive_rate": 1.0}
    assert ds["time"] == {"column": DATASET["time"], "unit": "timestamp", "format": None} and ds["split"] is None
    assert ds["numeric"]["x"]["max_null_rate"] == 0.0

    profile = parse_text(ProfileConfig, "name: bare\n", "p.yaml")
    assert profile["compute"] == "local" and profile["retry"] == {"times": 2, "minutes_between_retries": 2}
    assert profile["resources"] == {"default": {"cpu": 1, "memory": 4096, "gpu": 0, "timeout_minutes": 60,
                                                "queue": None}}


def test_row_key_without_an_id_and_feature_order() -> None:
    spec = DatasetConfig.model_validate(mutated(DATASET, {"numeric.z": {}, "categorical.b": {}}))
    assert spec.id is None and spec.id_column == "row_key"
    assert spec.features == ["x", "z", "c", "b"]
    assert DatasetConfig.model_validate(mutated(DATASET, {"id": "key"})).id_column == "key"


def test_derived_target_value_keeps_type() -> None:
    spec = DatasetConfig.model_validate(mutated(DATASET, {"target.derive": {"source": "s", "op": ">", "value": 15}}))
    assert spec.target.derive is not None and spec.target.derive.value == 15.0
    derive = {"source": "s", "op": "==", "value": "yes"}
    spec = DatasetConfig.model_validate(mutated(DATASET, {"target.derive": derive}))
    assert spec.target.derive is not None and spec.target.derive.value == "yes"


def test_models_are_frozen(dataset_spec: DatasetConfig) -> None:
    with pytest.raises(pydantic.ValidationError):
        dataset_spec.name = "other"  # type: ignore[misc]
    assert dataset_spec.name == "card_transactions"


# --------------------------------------------------------------------------------------------------- errors
def assert_error_line(msg: str, source: str, key: str, fragment: str) -> None:
    """The error names ``source`` and has a line for ``key`` containing ``fragment``."""
    assert msg.startswith(f"invalid configuration in {source}:")
    line = next((ln for ln in msg.splitlines() if ln.startswith(f"  - {key}: ")), None)
    assert line is not None, msg
    assert fragment in line


@pytest.mark.parametrize("changes, key, fragment", [
    ({"colour": "red"}, "colour", "unknown key (not allowed)"),
    ({"numeric.x.minimum": 0}, "numeric.x.minimum", "unknown key (did you mean 'min'?)"),
    ({"target.positive_label": 1}, "target.positive_label", "unknown key"),
    ({"categorical.c.levels": ["a"]}, "categorical.c.levels", "unknown key (not allowed)"),
    ({"name": DELETE}, "name", "missing required key"),
    ({"time": {"column": "t", "unit": "fortnights"}}, "time.unit", "Input should be"),
    ({"split": {"method": "column", "column": "wave"}}, "split", "needs column and holdout_values"),
    ({"split": {"method": "random", "holdout_values": [2]}}, "split", "belong to method 'column'"),
    ({"target": DELETE}, "target", "missing required key"),
    ({"target.name": DELETE}, "target.name", "missing required key"),
    ({"target.derive": {"source": "s", "op": ">"}}, "target.derive.value", "missing required key"),
    ({"min_rows": 0}, "min_rows", "greater than or equal to 1"),
    ({"target.min_positives": 0}, "target.min_positives", "greater than or equal to 1"),
    ({"target.max_positive_rate": 0}, "target.max_positive_rate", "greater than 0"),
    ({"numeric.x.max_null_rate": 1.5}, "numeric.x.max_null_rate", "less than or equal to 1"),
    ({"categorical.c.max_unknown_rate": -0.1}, "categorical.c.max_unknown_rate", "greater than or equal to 0"),
    ({"numeric.x.min": "zero"}, "numeric.x.min", "valid number"),
    ({"numeric.x": {"min": 2, "max": 1}}, "numeric.x", "min (2.0) is greater than max (1.0)"),
    ({"categorical.c.categories": "a"}, "categorical.c.categories", "valid list"),
    ({"target.derive": {"source": "s", "op": "=~", "value": 1}}, "target.derive.op", "Input should be"),
    ({"sensitive": "c"}, "sensitive", "valid list"),
    ({"numeric": {}, "categorical": {}}, "<root>", "at least one numeric or categorical feature is required"),
    ({"categorical.x": {}}, "<root>", "columns listed as both numeric and categorical: ['x']"),
    ({"time": "x"}, "<root>", "id/time/target columns must not be features: ['x']"),
    ({"id": "c"}, "<root>", "id/time/target columns must not be features: ['c']"),
    ({"target.name": "x"}, "<root>", "id/time/target columns must not be features: ['x']"),
])
def test_dataset_errors_name_file_and_key(changes: dict[str, Any], key: str, fragment: str) -> None:
    source = "/cfg/datasets/mine.yaml"
    assert_error_line(config_error(DatasetConfig, mutated(DATASET, changes), source), source, key, fragment)


@pytest.mark.parametrize("changes, key, fragment", [
    ({"candidates": DELETE}, "candidates", "missing required key"),
    ({"candidates": []}, "candidates", "at least 1 item"),
    ({"candidates.0.type": "xgboost"}, "candidates.0.type", "'logistic_regression', 'lightgbm'"),
    ({"candidates.1.name": "LogReg"}, "candidates.1.name", "should match pattern"),
    ({"candidates.1.param": {}}, "candidates.1.param", "unknown key (did you mean 'params'?)"),
    ({"candidates.1.name": "a"}, "candidates", "candidate names must be unique, repeated: ['a']"),
    ({"selection_metric": "f1"}, "selection_metric", "Input should be 'roc_auc'"),
    ({"threads": 0}, "threads", "greater than or equal to 1"),
    ({"threads": 257}, "threads", "less than or equal to 256"),
    ({"candidates.1.device": "gpu"}, "candidates.1",
     ": device gpu: only lightgbm candidates train on a GPU, not logistic_regression"),
    ({"candidates.0.device": "cuda"}, "candidates.0.device", "Input should be 'auto', 'cpu' or 'gpu'"),
    ({"candidates.0.params": {"device_type": "gpu"}}, "candidates.0",
     "params.device_type: set the candidate's `device` (auto, cpu or gpu) instead"),
    ({"seed": "abc"}, "seed", "valid integer"),
    ({"max_train_rows": 10}, "max_train_rows", "greater than or equal to 100"),
    ({"curve_points": 5}, "curve_points", "greater than or equal to 10"),
    ({"split.validation_fraction": 0.5}, "split.validation_fraction", "less than 0.5"),
    ({"split.holdout_fraction": 0}, "split.holdout_fraction", "greater than 0"),
    ({"split.test_fraction": 0.1}, "split.test_fraction", "unknown key (did you mean 'holdout_fraction'?)"),
])
def test_train_errors_name_file_and_key(changes: dict[str, Any], key: str, fragment: str) -> None:
    source = "experiments/train.yaml"
    assert_error_line(config_error(TrainConfig, mutated(TRAIN, changes), source), source, key, fragment)


@pytest.mark.parametrize("changes, key, fragment", [
    ({"name": DELETE}, "name", "missing required key"),
    ({"compute": "slurm"}, "compute", "Input should be 'local', 'batch' or 'kubernetes'"),
    ({"retry.times": 11}, "retry.times", "less than or equal to 10"),
    ({"resources.default.memory": 100}, "resources.default.memory", "greater than or equal to 256"),
    ({"resources.default.gpus": 1}, "resources.default.gpus", "unknown key (did you mean 'gpu'?)"),
    ({"resources.train_candidate.cpu": 0}, "resources.train_candidate.cpu", "greater than or equal to 1"),
    ({"env": {"A": [1]}}, "env.A", "valid string"),
    ({"resources": {"start": {}}}, "<root>", "resources.default is required"),
    ({"resources.train_candidate.queue": "spot"}, "<root>",
     "resources.train_candidate.queue 'spot' is not one of queues ['default', 'gpu']"),
    ({"compute": "batch", "queues": {"gpu": "g"}, "resources.train_candidate.queue": None}, "<root>",
     "compute 'batch' needs queues.default"),
])
def test_profile_errors_name_file_and_key(changes: dict[str, Any], key: str, fragment: str) -> None:
    source = "config/profiles/custom.yaml"
    assert_error_line(config_error(ProfileConfig, mutated(PROFILE, changes), source), source, key, fragment)


def test_every_bad_key_is_reported_at_once() -> None:
    doc = mutated(DATASET, {"name": DELETE, "colour": "red", "min_rows": 0, "numeric.x.max_null_rate": 2})
    msg = config_error(DatasetConfig, doc, "all.yaml")
    keys = {ln.split(":")[0].strip(" -") for ln in msg.splitlines()[1:]}
    assert keys == {"name", "colour", "min_rows", "numeric.x.max_null_rate"}


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just a string\n", "42\n"])
@pytest.mark.parametrize("model", [DatasetConfig, TrainConfig, ProfileConfig])
def test_non_mapping_documents_are_rejected(model: type, text: str) -> None:
    msg = config_error(model, text, "odd.yaml")
    assert msg == "invalid configuration in odd.yaml: expected a mapping at the top level"


@pytest.mark.parametrize("text", ["name: [unclosed\n", "a: b: c\n", "key: 'open\n", "\tname: tab\n"])
def test_invalid_yaml_names_the_file(text: str) -> None:
    msg = config_error(TrainConfig, text, "broken/train.yaml")
    assert msg.startswith("broken/train.yaml is not valid YAML:")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError, match="dataset.yaml"):
        config.validate(DatasetConfig, ["not", "a", "mapping"], "dataset.yaml")


def test_load_file_reports_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad_train.yaml"
    path.write_text(yaml.safe_dump(mutated(TRAIN, {"threads": 0})))
    with pytest.raises(ConfigError, match=f"invalid configuration in {path}") as info:
        load_file(TrainConfig, path)
    assert "  - threads: " in str(info.value)


def test_load_accepts_objects_with_to_dict() -> None:
    class ConfigValueLike:
        def to_dict(self) -> dict[str, Any]:
            return copy.deepcopy(TRAIN)

    cfg = load(TrainConfig, ConfigValueLike())
    assert isinstance(cfg, TrainConfig) and [c.name for c in cfg.candidates] == ["a", "b"]
    assert isinstance(cfg.candidates[0], CandidateConfig)


# --------------------------------------------------------------------------------------------------- Metaflow parsers
@pytest.mark.parametrize("parser, name, default, bad", [
    (config.parse_dataset, "dataset", "config/dataset.yaml", mutated(DATASET, {"min_rows": 0})),
    (config.parse_train, "train", "config/train.yaml", mutated(TRAIN, {"threads": 0})),
    (config.parse_profile, "profile", "config/profiles/local.yaml", mutated(PROFILE, {"compute": "slurm"})),
])
def test_metaflow_parsers_name_the_config_file(monkeypatch: pytest.MonkeyPatch, parser: Any, name: str,
                                               default: str, bad: dict[str, Any]) -> None:
    text = yaml.safe_dump(bad)
    monkeypatch.setattr(sys, "argv", ["flows/train_flow.py", "run"])
    with pytest.raises(ConfigError, match=f"invalid configuration in {default}:"):
        parser(text)
    monkeypatch.setattr(sys, "argv", ["flows/train_flow.py", "--config", "other", "x.yaml",
                                      "--config", name, "my/own.yaml", "run"])
    with pytest.raises(ConfigError, match="invalid configuration in my/own.yaml:"):
        parser(text)


@pytest.mark.parametrize("parser, rel", [
    (config.parse_dataset, "config/dataset.yaml"),
    (config.parse_train, "config/train.yaml"),
    (config.parse_profile, "config/profiles/aws.yaml"),
])
def test_metaflow_parsers_return_plain_dicts(parser: Any, rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLOPS_IMAGE", "MLOPS_GPU_IMAGE"):  # the aws profile's ${NAME} values come from the environment
        monkeypatch.setenv(name, f"registry.example/{name.lower()}")
    monkeypatch.setenv("MLOPS_S3_ROOT", "s3://bucket/prefix")
    parsed = parser((ROOT / rel).read_text())
    assert isinstance(parsed, dict)
    assert yaml.safe_load(yaml.safe_dump(parsed)) == parsed  # plain, serializable values only
