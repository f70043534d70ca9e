"""``config/profiles/*.yaml``: where and on what the steps run (local, AWS Batch, Kubernetes)."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from steps.config.base import PROFILE_ENV, ConfigError, Strict, config_source, validate


class StepResources(Strict):
    """Compute for one step (or the default for all steps)."""

    cpu: int = Field(1, ge=1)
    memory: int = Field(4096, ge=256, description="MiB")
    gpu: int = Field(0, ge=0)
    timeout_minutes: int = Field(60, ge=1)
    queue: str | None = Field(None, description="key into profile.queues (AWS Batch)")

    @property
    def threads(self) -> int:
        """Threads a step may use: its ``cpu``, at most the cores this machine has."""
        return max(1, min(self.cpu, os.cpu_count() or 1))


class RetryConfig(Strict):
    """``@retry`` settings applied to every step."""

    times: int = Field(2, ge=0, le=10)
    minutes_between_retries: int = Field(2, ge=0)


SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)


ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ProfileConfig(Strict):
    """``config/profiles/*.yaml``: where and on what the steps run.

    ``${NAME}`` in any string value is replaced by the environment variable ``NAME`` when the profile is parsed
    (account ids, images and buckets stay out of the repository); a missing variable is an error naming it.
    """

    name: str
    compute: Literal["local", "batch", "kubernetes"] = "local"
    retry: RetryConfig = RetryConfig()
    resources: dict[str, StepResources] = Field(default_factory=lambda: {"default": StepResources()})
    queues: dict[str, str] = Field(default_factory=dict)
    image: str | None = None
    gpu_image: str | None = Field(None, description="image for steps that request a GPU (default: image)")
    storage_root: str | None = Field(None, description="relative data/output paths resolve under it (s3:// prefix)")
    s3_roots: list[str] = Field(default_factory=list, description="other s3:// prefixes the flows may read/write")
    data_remote: str | None = Field(None, description="DVC remote (folder or s3:// prefix) where TrainFlow stores "
                                    "every training data set by its md5 (default: the project's DVC remote)")
    schedules: dict[str, str] = Field(default_factory=dict, description="flow class name -> EventBridge cron (UTC)")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables for every step")

    @model_validator(mode="after")
    def _check(self) -> ProfileConfig:
        if "default" not in self.resources:
            raise ValueError("resources.default is required")
        for step_name, res in self.resources.items():
            if res.queue is not None and res.queue not in self.queues:
                raise ValueError(f"resources.{step_name}.queue '{res.queue}' is not one of queues "
                                 f"{sorted(self.queues)}")
        if self.compute == "batch" and "default" not in self.queues:
            raise ValueError("compute 'batch' needs queues.default")
        secret = sorted(k for k in self.env if SECRET_NAME.search(k))
        if secret:
            raise ValueError(f"env must not carry credentials (they come from the AWS credential chain): {secret}")
        for flow, cron in self.schedules.items():
            if len(cron.split()) != 6:
                raise ValueError(f"schedules.{flow}: '{cron}' is not an EventBridge cron (6 fields, UTC)")
        for root in self.allowed_s3_roots:
            if not root.startswith("s3://") or root.rstrip("/") == "s3:":
                raise ValueError(f"s3 root '{root}' is not an s3:// prefix")
        return self

    def for_step(self, step_name: str) -> StepResources:
        """The resources of ``step_name``, falling back to ``default``."""
        return self.resources.get(step_name, self.resources["default"])

    def image_for(self, step_name: str) -> str | None:
        """The container image of ``step_name``: ``gpu_image`` when it requests a GPU, else ``image``."""
        return (self.gpu_image or self.image) if self.for_step(step_name).gpu else self.image

    @property
    def allowed_s3_roots(self) -> list[str]:
        """Every s3:// prefix the flows may touch: ``storage_root`` (when on S3) and ``s3_roots``."""
        roots = [self.storage_root] if self.storage_root and self.storage_root.startswith("s3://") else []
        return [*roots, *self.s3_roots]

    def locate(self, path: str) -> str:
        """Resolve a relative ``path`` under ``storage_root``; refuse an s3:// URI outside the allowed roots."""
        if self.storage_root and not (path.startswith("s3://") or path.startswith("/")):
            rel = str(PurePosixPath(path)) + ("/" if path.endswith("/") else "")
            path = (f"{self.storage_root.rstrip('/')}/{rel}" if self.storage_root.startswith("s3://")
                    else str(Path(self.storage_root) / rel))
        roots = self.allowed_s3_roots
        if path.startswith("s3://") and roots and not any(_under(path, root) for root in roots):
            raise ConfigError(f"{path} is outside the profile '{self.name}' S3 roots {roots}")
        return path


def _under(uri: str, root: str) -> bool:
    """True when ``uri`` is ``root`` or inside it (prefix match on whole path segments)."""
    root = root.rstrip("/")
    return uri.rstrip("/") == root or uri.startswith(root + "/")


def expand_env(value: Any, source: str, environ: dict[str, str] | None = None) -> Any:
    """Replace ``${NAME}`` in every string of ``value`` from the environment; raise naming each missing variable."""
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def sub(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: sub(v) for k, v in item.items()}
        if isinstance(item, list):
            return [sub(v) for v in item]
        if isinstance(item, str):
            missing.extend(n for n in ENV_REF.findall(item) if not env.get(n))
            return ENV_REF.sub(lambda m: env.get(m.group(1), ""), item)
        return item

    expanded = sub(value)
    if missing:
        names = ", ".join(sorted(set(missing)))
        raise ConfigError(f"{source} needs environment variable(s) that are not set: {names}")
    return expanded


def parse_profile(text: str) -> dict[str, Any]:
    """Metaflow Config parser for ``config/profiles/*.yaml`` (``${NAME}`` filled in from the environment)."""
    source = config_source("profile", os.environ.get(PROFILE_ENV, "config/profiles/local.yaml"))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    return validate(ProfileConfig, expand_env(data, source), source).model_dump(mode="json")
