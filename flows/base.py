"""What every flow of the project shares: the ``@project``, the profile (laptop / AWS / Kubernetes), the dataset.

``ProjectFlow`` is a FlowSpec base class (Metaflow inherits flow decorators, mutators and Configs): a flow file
declares only its own Configs, Parameters and steps. ``apply_profile`` turns the ``profile`` config into step
decorators, the one switch between a laptop and AWS Batch.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from metaflow import Config, FlowMutator, FlowSpec, project, user_step_decorator
from metaflow.cards import BlankCard
from metaflow.exception import METAFLOW_EXIT_DISALLOW_RETRY, MetaflowException
from metaflow.user_configs.config_parameters import ConfigValue

from steps.config import (
    CONFIG_DIR,
    PROFILE_ENV,
    ConfigError,
    DatasetConfig,
    DistillConfig,
    GatesConfig,
    MonitorConfig,
    ProfileConfig,
    ScoreConfig,
    TrainConfig,
    load,
)
from steps.core.errors import UserError
from steps.core.project import PROJECT

# Every card of these flows is a report rendered once, when its task ends (no step calls current.card.refresh()).
# BlankCard says it is runtime-updatable, so after the render Metaflow starts a second `card create --mode refresh`
# process per card step (~1.6 s on a 2-core box: it imports the flow file) that only writes live-update data for
# `card server`. Saying it is not skips that process; the card itself is the same HTML.
BlankCard.RUNTIME_UPDATABLE = False
USER_ERRORS: list[str] = []  # user errors raised in this process: the task exits without a retry


class BadInput(MetaflowException):
    """A user error (bad data, config or arguments) as Metaflow prints it: a headline and the message, no traceback."""

    headline = "Bad input (fix it and run again; this step is not retried)"


@user_step_decorator
def user_errors(step_name: str, flow: Any, inputs: Any = None) -> Iterator[None]:
    """Every step: a ``UserError`` becomes :class:`BadInput`, and the task will exit so that it is not retried."""
    try:
        yield
    except UserError as err:
        USER_ERRORS.append(f"{step_name}: {err}")
        raise BadInput(f"{type(err).__name__}: {err}") from None


def log_progress() -> None:
    """Show the library's INFO logs (progress, decisions) in the task logs, on a laptop and on AWS alike."""
    library = logging.getLogger("steps")
    if not library.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        library.addHandler(handler)
        library.setLevel(logging.INFO)
        library.propagate = False


def batch_never_retries_user_errors() -> None:
    """On AWS Batch (Step Functions deployments) a failed job is retried by its ``retryStrategy``, which Metaflow sets
    to a count only: add AWS Batch's rule that a task exiting with Metaflow's no-retry status (a user error) is not
    retried, as the local runtime already does."""
    try:
        from metaflow.plugins.aws.batch.batch_client import BatchJob
    except ImportError:  # no AWS extras: nothing is deployed to Batch from here
        return
    original = BatchJob.attempts
    if getattr(original, "never_retries_user_errors", False):
        return

    def attempts(self: Any, count: int) -> Any:
        original(self, count)
        self.payload["retryStrategy"]["evaluateOnExit"] = [
            {"onExitCode": str(METAFLOW_EXIT_DISALLOW_RETRY), "action": "EXIT"}]  # unmatched exits: retried
        return self

    attempts.never_retries_user_errors = True
    BatchJob.attempts = attempts  # type: ignore[method-assign]


def branch_prod_refused(argv: list[str]) -> str | None:
    """Why ``--branch prod`` is refused (Metaflow would run on the test branch ``test.prod``), or None."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--branch" and i + 1 < len(argv) else arg.partition("=")[2] \
            if arg.startswith("--branch=") else None
        if value in ("prod", "production") and "--production" not in argv:
            return (f"--branch {value} would run on the test branch test.{value} (Metaflow's rule for --branch), not "
                    "in production: use --production (branch prod), or --production --branch NAME for prod.NAME")
    return None


def main(flow_cls: type) -> None:
    """Run ``flow_cls``'s command line. A step that fails on a user error exits with Metaflow's no-retry status, and
    the run then ends on a "Step failure" headline, not Metaflow's "Internal error" about the unfinished end step."""
    from metaflow import parameters

    log_progress()
    batch_never_retries_user_errors()
    refused = branch_prod_refused(sys.argv[1:])
    if refused:
        from metaflow import cli

        cli.print_metaflow_exception(BadStart(refused))
        sys.exit(1)
    with parameters.flow_context(flow_cls):
        from metaflow import cli  # imported inside the flow's context: its options (e.g. --branch) depend on it

        try:
            cli.main(flow_cls(use_cli=False), handle_exceptions=False)
        except MetaflowException as err:
            if "was not successful by the end of flow" in str(err):  # a task failed and was not retried
                err = StepStopped("a step stopped on bad input, without a retry: its message is above")
            cli.print_metaflow_exception(err)
            sys.exit(METAFLOW_EXIT_DISALLOW_RETRY if USER_ERRORS else 1)
        except UserError as err:  # a bad config or argument, found before any step ran
            cli.print_metaflow_exception(BadStart(f"{type(err).__name__}: {err}"))
            sys.exit(1)
        except Exception as err:  # noqa: BLE001 - printed with its traceback, as Metaflow does
            cli.print_unknown_exception(err)
            sys.exit(1)


class BadStart(MetaflowException):
    """A user error found before any step ran (a config or argument): nothing was started."""

    headline = "Bad input (nothing was run)"


class StepStopped(MetaflowException):
    """The run's headline when a step stopped on a user error."""

    headline = "Step failure"


SCHEMAS: dict[str, type] = {"dataset": DatasetConfig, "profile": ProfileConfig, "train": TrainConfig,
                            "gates": GatesConfig, "score": ScoreConfig, "distill": DistillConfig,
                            "monitor": MonitorConfig}
_TYPED: dict[tuple[str, str], Any] = {}


class apply_profile(FlowMutator):  # noqa: N801 - decorators are lower case in Metaflow
    """Give every step ``@retry``, ``@timeout``, ``@resources`` and ``@environment`` from the ``profile`` config,
    plus ``@batch`` (compute: batch) or ``@kubernetes`` (compute: kubernetes) with the step's queue and image.

    Decorators written on a step in the flow file win over the profile. ``schedules.<FlowName>`` in the profile
    becomes the flow's ``@schedule``; a flow that has its own ``@schedule`` must not also get one from the profile
    (one source for each cron).
    """

    def pre_mutate(self, mutable_flow: Any) -> None:
        """Add the profile's decorators to every step of the flow being built."""
        configs = dict(mutable_flow.configs)
        profile = load(ProfileConfig, configs["profile"] or ConfigValue({}))
        flow_cls = getattr(mutable_flow, "_flow_cls", None) or self._flow_cls  # the subclass, not the base
        _add_schedule(mutable_flow, profile, getattr(flow_cls, "__name__", ""))
        for name, step in mutable_flow.steps:
            res = profile.for_step(name)
            ignore = step.IGNORE
            step.add_decorator("retry", deco_kwargs={"times": profile.retry.times,
                               "minutes_between_retries": profile.retry.minutes_between_retries}, duplicates=ignore)
            step.add_decorator("timeout", deco_kwargs={"minutes": res.timeout_minutes}, duplicates=ignore)
            step.add_decorator(user_errors, duplicates=ignore)
            step.add_decorator("resources", deco_kwargs={"cpu": res.cpu, "memory": res.memory, "gpu": res.gpu},
                               duplicates=ignore)
            if profile.env:
                step.add_decorator("environment", deco_kwargs={"vars": dict(profile.env)}, duplicates=ignore)
            remote = _remote_decorator(profile, name)
            if remote is not None:
                step.add_decorator(remote[0], deco_kwargs=remote[1], duplicates=ignore)

    def add_to_package(self) -> Any:
        """Ship ``config/`` with the code package, next to the flow files."""
        for path in sorted(CONFIG_DIR.rglob("*.yaml")):
            yield str(path), f"config/{path.relative_to(CONFIG_DIR)}"


def _add_schedule(mutable_flow: Any, profile: ProfileConfig, flow_name: str) -> None:
    """``@schedule(cron=profile.schedules[flow_name])``; refuse a second source when the flow has its own."""
    cron = profile.schedules.get(flow_name)
    if cron is None:
        return
    if mutable_flow.has_decorator("schedule"):
        raise ConfigError(f"profile '{profile.name}': schedules.{flow_name} is set but {flow_name} already has "
                          "@schedule in its flow file; keep one source for its cron")
    mutable_flow.add_decorator("schedule", deco_kwargs={"cron": cron})


def _remote_decorator(profile: ProfileConfig, step_name: str) -> tuple[str, dict[str, Any]] | None:
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


def config_option(name: str, what: str) -> Config:
    """A ``--config NAME PATH`` option: default the repository's ``config/<name>.yaml`` (an absolute path, so a flow
    runs from any working directory), parsed by ``steps.config.parse_<name>``."""
    return Config(name, default=str(CONFIG_DIR / f"{name}.yaml"), parser=f"steps.config.parse_{name}",
                  help=f"{what} (YAML; default config/{name}.yaml)")


@apply_profile()
@project(name=PROJECT)
class ProjectFlow(FlowSpec):
    """The base of every flow: ``@project``, the profile's decorators, and the ``dataset`` and ``profile`` configs."""

    dataset = config_option("dataset", "Dataset: columns, types, ranges, target, time, id")
    profile = Config("profile", default=os.environ.get(PROFILE_ENV, str(CONFIG_DIR / "profiles" / "local.yaml")),
                     parser="steps.config.parse_profile",
                     help="Where steps run: local, AWS Batch or Kubernetes (YAML; default $MLOPS_PROFILE, else "
                          "config/profiles/local.yaml)")

    def datastore_root(self) -> str:
        """The root of the datastore this task writes to (a local ``.metaflow`` folder, or the S3 datastore prefix):
        where data written once for a run lives, readable by every task of it wherever it runs."""
        datastore: Any = self._datastore  # the task's own datastore (Metaflow sets it before the step runs)
        return str(datastore._storage_impl.datastore_root)

    def resources(self) -> Any:
        """This step's resources in the profile (``StepResources``: cpu, threads, gpu, memory)."""
        from metaflow import current

        return self.typed("profile").for_step(current.step_name)

    def typed(self, name: str) -> Any:
        """Config ``name`` as its pydantic model (``steps.config``), validated once per process."""
        value = getattr(self, name)
        key = (name, json.dumps(value.to_dict() if hasattr(value, "to_dict") else dict(value), sort_keys=True))
        if key not in _TYPED:
            _TYPED[key] = load(SCHEMAS[name], value)
        return _TYPED[key]
