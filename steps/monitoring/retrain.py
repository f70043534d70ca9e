"""Retraining triggers: a strategy decides from the monitor's signals; a launcher starts TrainFlow.

Launchers: ``runner`` starts ``flows/train_flow.py`` with ``metaflow.Runner`` (laptop, or any host with the code);
``deployer`` triggers the deployed TrainFlow (Step Functions or Argo) through the Metaflow Deployer API; ``none``
records the decision only. Either way the new model is promoted only by TrainFlow's own gates.

"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from steps.config.monitor import RetrainConfig
from steps.core.project import PROJECT_ROOT
from steps.registry.registry import run_data

logger = logging.getLogger(__name__)




@dataclass(frozen=True)
class Decision:
    """Whether to retrain now, and why."""

    fire: bool
    reason: str
    strategy: str
    signals: tuple[str, ...] = ()
    cooldown_until: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for artifacts and JSON."""
        return {**asdict(self), "signals": list(self.signals)}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Decision:
        """The inverse of ``to_dict``."""
        return cls(**{**value, "signals": tuple(value.get("signals", ()))})


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC datetime (naive values are taken as UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _breaching(signals: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    return [n for n in names if signals.get(n, {}).get("breach")]


def decide(cfg: RetrainConfig, signals: dict[str, dict[str, Any]], last: dict[str, Any] | None, now: datetime,
           model_trained_at: datetime | None = None) -> Decision:
    """Apply the strategy to the newest period's signals, honouring the cooldown.

    Args:
        signals: signal name -> {"breach": bool, ...} for the newest period (drift and performance together).
        last: the previous retraining record ({"at": ISO time, ...}) or None.
        model_trained_at: when the serving model was trained (the age trigger of scheduled and hybrid).
    """
    if cfg.strategy == "off":
        return Decision(False, "retraining is off", cfg.strategy)
    drift = _breaching(signals, cfg.drift_signals) if cfg.strategy in ("drift", "hybrid") else []
    perf = _breaching(signals, cfg.performance_signals) if cfg.strategy in ("performance", "hybrid") else []
    now = _utc(now) or now
    since = _utc(datetime.fromisoformat(last["at"]) if last else model_trained_at)
    aged = cfg.strategy in ("scheduled", "hybrid") and (since is None or now - since >= timedelta(days=cfg.every_days))
    reasons = [*(f"{s} breached" for s in perf + drift), *([f"older than {cfg.every_days} days"] if aged else [])]
    if not reasons:
        return Decision(False, "no trigger", cfg.strategy)
    if last:
        until = datetime.fromisoformat(last["at"]).astimezone(UTC) + timedelta(days=cfg.cooldown_days)
        if now < until:
            return Decision(False, f"{'; '.join(reasons)}, but in cooldown until {until.isoformat()}", cfg.strategy,
                            tuple(perf + drift), until.isoformat())
    return Decision(True, "; ".join(reasons), cfg.strategy, tuple(perf + drift))


def branch_options(branch_name: str) -> dict[str, Any]:
    """Runner top-level options that put TrainFlow on the monitor's ``@project`` branch."""
    if branch_name.startswith("test."):
        return {"branch": branch_name[len("test."):]}
    if branch_name == "prod":
        return {"production": True}
    if branch_name.startswith("prod."):
        return {"production": True, "branch": branch_name[len("prod."):]}
    return {}  # user.<name>: the default branch of whoever runs it


def _resolve(path: str) -> str:
    """A config path relative to the repository root made absolute (the Runner's working directory differs)."""
    p = Path(path)
    return str(p if p.is_absolute() else PROJECT_ROOT / p)


def with_data(cfg: RetrainConfig, data: str) -> RetrainConfig:
    """``cfg`` with TrainFlow's ``data`` parameter set to ``data`` (unchanged when ``data`` is empty)."""
    return cfg.model_copy(update={"params": {**cfg.params, "data": data}}) if data else cfg


def train_configs(cfg: RetrainConfig, inherited: dict[str, dict[str, Any]] | None = None
                  ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """TrainFlow's configs: (paths, values). ``retrain.configs`` name files; the monitor's own configs (``inherited``:
    its dataset, gates and profile, as parsed values) come next, so a monitor of another dataset retrains that
    dataset; the repository's defaults fill the rest.

    Paths are absolute, because the run starts from the monitor's working directory (where its datastore is), which
    need not be the repository.
    """
    profile = os.environ.get("MLOPS_PROFILE", "config/profiles/local.yaml")
    defaults = {"dataset": "config/dataset.yaml", "train": "config/train.yaml", "gates": "config/gates.yaml",
                "profile": profile}
    values = {name: value for name, value in (inherited or {}).items() if name not in cfg.configs}
    paths = {name: path for name, path in {**defaults, **cfg.configs}.items() if name not in values}
    return {name: _resolve(path) for name, path in paths.items()}, values


def launch_runner(cfg: RetrainConfig, branch_name: str, reason: str,
                  inherited: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run TrainFlow to completion with ``metaflow.Runner``, logging its run id and every line it prints (step
    transitions) as they happen; returns its run, status and whether it was promoted."""
    from metaflow import Runner

    paths, values = train_configs(cfg, inherited)
    logger.info("retraining: %s (%s); configs %s, inherited %s", cfg.flow, reason, paths, sorted(values))
    options: dict[str, Any] = {"config": list(paths.items()), **branch_options(branch_name)}
    if values:
        options["config_value"] = list(values.items())
    with Runner(_resolve(cfg.flow), show_output=False, cwd=str(Path.cwd()), **options) as runner:
        running = asyncio.run(_follow(runner, cfg.params))
        run = running.run
        record = {"launcher": "runner", "status": running.status, "run": run.pathspec if run else None}
        if run is not None and running.status == "successful":
            record |= {"gates_passed": bool(run_data(run).gates_passed),
                       "promoted": run_data(run).registry_event is not None,
                       "model_name": str(run_data(run).model_name)}
        else:
            record["stderr_tail"] = running.stderr[-2000:]
    logger.info("retraining run %s: %s", record["run"], record["status"])
    return record


async def _follow(runner: Any, params: dict[str, Any]) -> Any:
    """Start the run, log its id, relay its output line by line at INFO, and wait for it to end."""
    running = await runner.async_run(**params)
    name = running.run.pathspec if running.run else "TrainFlow"
    logger.info("retraining started: %s", name)
    async for _, line in running.stream_log("stdout"):
        if line.strip():
            logger.info("[%s] %s", name, line.rstrip())
    await running.wait()
    return running


def _cli_options(branch_name: str) -> list[str]:
    """The same branch choice as ``branch_options``, as command-line options."""
    opts = branch_options(branch_name)
    return [*(["--production"] if opts.get("production") else []),
            *(["--branch", opts["branch"]] if "branch" in opts else [])]


def launch_deployer(cfg: RetrainConfig, branch_name: str, reason: str) -> dict[str, Any]:
    """Trigger the deployed TrainFlow (asynchronous: its own gates decide later); returns the triggered run.

    Argo Workflows goes through ``DeployedFlow.from_deployment(...).trigger()``; for Step Functions Metaflow 2.19
    does not implement ``from_deployment``, so this runs the ``step-functions trigger`` command the Deployer's
    ``trigger`` runs itself.
    """
    params = {k: str(v) for k, v in cfg.params.items()}
    if cfg.orchestrator == "argo-workflows":
        from metaflow import DeployedFlow

        if not cfg.deployment:
            raise ValueError("retrain.orchestrator argo-workflows needs retrain.deployment (the workflow template)")
        triggered = DeployedFlow.from_deployment(  # type: ignore[attr-defined]  # added by Metaflow at import
            cfg.deployment, impl="argo-workflows").trigger(**params)
        run = getattr(triggered, "pathspec", None)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            id_file = Path(tmp) / "run-id"
            cmd = [sys.executable, _resolve(cfg.flow), *_cli_options(branch_name), "step-functions", "trigger",
                   "--run-id-file", str(id_file), *[a for k, v in params.items() for a in (f"--{k}", v)]]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
            if done.returncode != 0:
                raise RuntimeError(f"step-functions trigger exited {done.returncode}: {done.stderr[-1500:]}")
            run = f"TrainFlow/{id_file.read_text().strip()}"
    logger.info("retraining: triggered %s on %s (%s)", run, cfg.orchestrator, reason)
    return {"launcher": "deployer", "orchestrator": cfg.orchestrator, "status": "triggered", "run": run}


def launch(cfg: RetrainConfig, decision: Decision, branch_name: str,
           inherited: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Start TrainFlow when the decision fires (None otherwise); a failed launch is recorded, not raised.

    ``inherited``: the monitor's own configs (dataset, gates, profile) the retraining uses unless ``retrain.configs``
    names others (the runner launcher; a deployed TrainFlow has its configs baked into its deployment).
    """
    if not decision.fire:
        return None
    if cfg.launcher == "none":
        return {"launcher": "none", "status": "not started (launcher none)", "run": None}
    try:
        if cfg.launcher == "deployer":
            return launch_deployer(cfg, branch_name, decision.reason)
        return launch_runner(cfg, branch_name, decision.reason, inherited)
    except Exception as err:  # the monitor's own results must still be stored and alerted on
        logger.error("retraining launch failed: %s: %s", type(err).__name__, err)
        return {"launcher": cfg.launcher, "status": f"launch failed: {type(err).__name__}: {err}", "run": None}
