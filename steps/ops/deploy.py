"""Pre-flight for deployments (``make deploy``): every setting a scheduler needs is present before anything is created.

    python -m steps.ops.deploy check --target step-functions --profile config/profiles/aws.yaml
    python -m steps.ops.deploy check --target argo-workflows --profile config/profiles/kubernetes.yaml

A setting counts as present when it is in the environment or in Metaflow's own config file
(``$METAFLOW_HOME/config[_$METAFLOW_PROFILE].json``, written by ``metaflow configure aws``). The check names what is
missing and never prints a value: role ARNs carry account ids, and credentials come only from the AWS chain.

"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from steps.config.base import ConfigError, validate
from steps.config.profile import ENV_REF, ProfileConfig, expand_env
from steps.core.cli import console

out = console(__name__)


TARGETS = ("step-functions", "argo-workflows")


REQUIRED: dict[str, tuple[str, ...]] = {
    "step-functions": (
        "METAFLOW_DATASTORE_SYSROOT_S3",        # artifacts, code packages, cards
        "METAFLOW_BATCH_JOB_QUEUE",             # queue of steps the profile does not route
        "METAFLOW_ECS_S3_ACCESS_IAM_ROLE",      # role of the Batch containers (S3 access)
        "METAFLOW_SFN_IAM_ROLE",                # role Step Functions runs as
        "METAFLOW_SFN_DYNAMO_DB_TABLE",         # foreach bookkeeping
        "METAFLOW_EVENTS_SFN_ACCESS_IAM_ROLE",  # role EventBridge uses to start scheduled executions
    ),
    "argo-workflows": (
        "METAFLOW_DATASTORE_SYSROOT_S3",
        "METAFLOW_KUBERNETES_NAMESPACE",
    ),
}


COMPUTE = {"step-functions": "batch", "argo-workflows": "kubernetes"}


def metaflow_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Metaflow's config file (if any) overlaid by the environment, as Metaflow itself resolves them."""
    home = Path(environ.get("METAFLOW_HOME", Path.home() / ".metaflowconfig"))
    name = environ.get("METAFLOW_PROFILE")
    path = home / (f"config_{name}.json" if name else "config.json")
    settings = json.loads(path.read_text()) if path.is_file() else {}
    return {**{k: str(v) for k, v in settings.items() if v not in (None, "")},
            **{k: v for k, v in environ.items() if v}}


def profile_variables(data: object) -> list[str]:
    """The environment variables the values of a parsed profile refer to with ``${NAME}`` (comments do not count)."""
    if isinstance(data, dict):
        return sorted({n for v in data.values() for n in profile_variables(v)})
    if isinstance(data, list):
        return sorted({n for v in data for n in profile_variables(v)})
    return sorted(set(ENV_REF.findall(data))) if isinstance(data, str) else []


def check(target: str, profile_path: str | Path, environ: Mapping[str, str]) -> list[str]:
    """Every problem that would stop (or silently misdirect) a deployment; empty when ready."""
    settings = metaflow_settings(environ)
    data = yaml.safe_load(Path(profile_path).read_text())
    missing = sorted({*(n for n in REQUIRED[target] if n not in settings),
                      *(n for n in profile_variables(data) if not environ.get(n))})
    problems = [f"missing setting: {name}" for name in missing]
    if problems:
        return problems
    try:
        profile = validate(ProfileConfig, expand_env(data, str(profile_path), dict(environ)),
                           str(profile_path))
    except ConfigError as err:
        return [str(err)]
    if profile.compute != COMPUTE[target]:
        problems.append(f"profile '{profile.name}' has compute '{profile.compute}'; {target} needs "
                        f"'{COMPUTE[target]}'")
    return problems


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: exit 0 when the deployment can go ahead, 2 with every problem named."""
    parser = argparse.ArgumentParser(prog="python -m steps.ops.deploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="check the settings a deployment needs (names only, never values)")
    chk.add_argument("--target", choices=TARGETS, default="step-functions",
                     help="the orchestrator to deploy to (default: %(default)s)")
    chk.add_argument("--profile", default=os.environ.get("MLOPS_PROFILE", "config/profiles/aws.yaml"),
                     help="the profile YAML the flows deploy with (default: $MLOPS_PROFILE, else "
                          "config/profiles/aws.yaml; now %(default)s)")
    args = parser.parse_args(argv)
    problems = check(args.target, args.profile, os.environ)
    if problems:
        out.info("cannot deploy to %s with %s:\n%s", args.target, args.profile,
                 "\n".join(f"  - {p}" for p in problems))
        return 2
    out.info("ready to deploy to %s with %s (%d settings present)", args.target, args.profile,
             len(REQUIRED[args.target]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
