"""Flow-level decorators that turn the profile config into step decorators (the one switch between laptop and AWS)."""

from __future__ import annotations

from pathlib import Path

from metaflow import FlowMutator
from metaflow.user_configs.config_parameters import ConfigValue

from steps.config import ConfigError, ProfileConfig, load

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


class apply_profile(FlowMutator):  # noqa: N801 - decorators are lower case in Metaflow
    """Give every step ``@retry``, ``@timeout``, ``@resources`` and ``@environment`` from the ``profile`` config,
    plus ``@batch`` (compute: batch) or ``@kubernetes`` (compute: kubernetes) with the step's queue and image.

    Decorators written on a step in the flow file win over the profile. ``schedules.<FlowName>`` in the profile
    becomes the flow's ``@schedule``; a flow that has its own ``@schedule`` must not also get one from the profile
    (one source for each cron).
    """

    def pre_mutate(self, mutable_flow) -> None:
        configs = dict(mutable_flow.configs)
        profile = load(ProfileConfig, configs["profile"] or ConfigValue({}))
        _add_schedule(mutable_flow, profile, self._flow_cls.__name__)
        for name, step in mutable_flow.steps:
            res = profile.for_step(name)
            ignore = step.IGNORE
            step.add_decorator("retry", deco_kwargs={"times": profile.retry.times,
                               "minutes_between_retries": profile.retry.minutes_between_retries}, duplicates=ignore)
            step.add_decorator("timeout", deco_kwargs={"minutes": res.timeout_minutes}, duplicates=ignore)
            step.add_decorator("resources", deco_kwargs={"cpu": res.cpu, "memory": res.memory, "gpu": res.gpu},
                               duplicates=ignore)
            if profile.env:
                step.add_decorator("environment", deco_kwargs={"vars": dict(profile.env)}, duplicates=ignore)
            remote = _remote_decorator(profile, name)
            if remote is not None:
                step.add_decorator(remote[0], deco_kwargs=remote[1], duplicates=ignore)

    def add_to_package(self):
        """Ship ``config/`` with the code package, next to the flow files."""
        for path in sorted(CONFIG_DIR.rglob("*.yaml")):
            yield str(path), f"config/{path.relative_to(CONFIG_DIR)}"


def _add_schedule(mutable_flow, profile: ProfileConfig, flow_name: str) -> None:
    """``@schedule(cron=profile.schedules[flow_name])``; refuse a second source when the flow has its own."""
    cron = profile.schedules.get(flow_name)
    if cron is None:
        return
    if mutable_flow.has_decorator("schedule"):
        raise ConfigError(f"profile '{profile.name}': schedules.{flow_name} is set but {flow_name} already has "
                          "@schedule in its flow file; keep one source for its cron")
    mutable_flow.add_decorator("schedule", deco_kwargs={"cron": cron})


def _remote_decorator(profile: ProfileConfig, step_name: str) -> tuple[str, dict] | None:
    """(decorator name, kwargs) that sends ``step_name`` to the profile's compute, or None for local runs."""
    res = profile.for_step(step_name)
    image = profile.image_for(step_name)
    if profile.compute == "batch":
        kwargs = {"queue": profile.queues[res.queue or "default"], "cpu": res.cpu, "memory": res.memory,
                  "gpu": res.gpu}
        return "batch", {**kwargs, **({"image": image} if image else {})}
    if profile.compute == "kubernetes":
        kwargs = {"cpu": res.cpu, "memory": res.memory, "gpu": res.gpu or None}
        return "kubernetes", {**kwargs, **({"image": image} if image else {})}
    return None
