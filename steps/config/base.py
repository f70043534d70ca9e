"""The base of every config schema: strict models, YAML parsing and error messages that name the file and key."""

from __future__ import annotations

import difflib
import sys
import types
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from steps.core.errors import UserError

T = TypeVar("T", bound="Strict")




PROFILE_ENV = "MLOPS_PROFILE"  # the profile switch: a path, like --config profile PATH


class ConfigError(UserError):
    """A configuration file is malformed: the message names the file and every bad key."""


def reject_device_params(params: dict[str, Any], instead: str) -> None:
    """ValueError when ``params`` set LightGBM's device (``device`` or ``device_type``): ``instead`` says where."""
    clash = sorted({"device", "device_type"} & set(params))
    if clash:
        raise ValueError(f"params.{clash[0]}: set {instead} (auto, cpu or gpu) instead")


def unique_names(items: list[Any], what: str) -> list[Any]:
    """``items`` unchanged when their ``name``s are unique; ValueError naming the repeated ones otherwise."""
    names = [item.name for item in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique, repeated: {dupes}")
    return items


def _ordered_band(value: tuple[float, float]) -> tuple[float, float]:
    """A score band [low, high] inside [0, 1] with low < high."""
    if not 0.0 <= value[0] < value[1] <= 1.0:
        raise ValueError(f"a band must satisfy 0 <= low < high <= 1, got {list(value)}")
    return value


Band = Annotated[tuple[float, float], AfterValidator(_ordered_band)]


class Strict(BaseModel):
    """Base model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def config_source(name: str, default: str) -> str:
    """The file a Config came from, for error messages: ``--config NAME PATH`` on the command line, else the default.

    Metaflow hands a Config parser the file's text only. Its CLI and the Runner/Deployer pass every override as
    ``--config NAME PATH`` on the command line of the process that parses it, so that is where the path is found.
    """
    argv = sys.argv
    for i, arg in enumerate(argv[:-2]):
        if arg == "--config" and argv[i + 1] == name:
            return argv[i + 2]
    return default


def _model_at(model: Any, path: tuple[Any, ...]) -> Any:
    """The pydantic model class found by following ``path`` (field names, dict keys, list indexes) from ``model``."""
    current: Any = model
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        else:  # a dict value or list item: the container's element type
            args = [a for a in get_args(current) if a is not type(None)]
            current = args[-1] if args else None
        while get_origin(current) is Union or isinstance(current, types.UnionType):
            current = next((a for a in get_args(current) if a is not type(None)), None)
    return current


def _did_you_mean(model: Any, loc: tuple[Any, ...]) -> str:
    """`` (did you mean 'x'?)`` for an unknown key, when a known key of its place is close."""
    parent = _model_at(model, loc[:-1])
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_errors(source: str, err: ValidationError, model: Any = None) -> str:
    """One line per problem: the key's dotted path and what is wrong (unknown keys with a did-you-mean)."""
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + (_did_you_mean(model, tuple(e["loc"])) or " (not allowed)")
        elif e["type"] == "missing":
            msg = "missing required key"
        elif e["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")  # the validator's own sentence
        lines.append(f"  - {key}: {msg}")
    return "\n".join(lines)


def validate(model: type[T], data: Any, source: str) -> T:
    """Validate ``data`` against ``model``; raise :class:`ConfigError` naming ``source`` and each bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration in {source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err, model)) from None


def parse_text(model: type[T], text: str, source: str) -> dict[str, Any]:
    """Parse YAML ``text`` and validate it; return the normalized dict (defaults filled in)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    return validate(model, data, source).model_dump(mode="json")


def load_file(model: type[T], path: str | Path) -> T:
    """Read and validate a YAML file (for notebooks, benchmarks and tests)."""
    path = Path(path)
    return model.model_validate(parse_text(model, path.read_text(), str(path)))


def load(model: type[T], value: Any) -> T:
    """Rebuild the typed model from a Metaflow ``ConfigValue`` (or any mapping) inside a step."""
    data = value.to_dict() if hasattr(value, "to_dict") else dict(value)
    return model.model_validate(data)
