"""The monitored model: which run scored the window, its reference profile, registry notices."""

from __future__ import annotations

import logging
from typing import Any

from steps.config.dataset import DatasetConfig
from steps.config.train import ReferenceConfig
from steps.core.errors import UserError
from steps.data.table import part_of
from steps.modeling.reference import build_reference
from steps.registry.registry import run_data
from steps.scoring.partition import read_manifest

logger = logging.getLogger(__name__)


def scoring_model(days: list[str], predictions_root: str) -> str | None:
    """The model run (pathspec) that scored the newest trusted partition among ``days``, or None."""
    for day in sorted(days, reverse=True):
        manifest = read_manifest(predictions_root, day)
        if manifest is not None and (manifest.get("model") or {}).get("run"):
            return str(manifest["model"]["run"])
    return None


def _model_run(pathspec: str) -> Any:
    """The run ``pathspec`` names (``TrainFlow/<id>`` or ``DistillFlow/<id>``); UserError naming it otherwise.

    Any project branch: a monitor may judge partitions scored by another branch's model (``Registry.run`` checks it).
    """
    from metaflow import Run, get_metadata
    from metaflow.exception import MetaflowNotFound

    flow, _, run_id = pathspec.partition("/")
    if flow not in ("TrainFlow", "DistillFlow") or not run_id or "/" in run_id:
        raise UserError(f"model run {pathspec!r}: expected TrainFlow/<run id> or DistillFlow/<run id>")
    try:
        return Run(pathspec)
    except MetaflowNotFound:
        raise UserError(f"model run {pathspec} not found (metadata {get_metadata()})") from None


def _teacher(student: Any) -> Any:
    """The TrainFlow run a DistillFlow ``student`` run distilled; UserError naming both when it is gone."""
    try:
        return _model_run(f"TrainFlow/{run_data(student).teacher_run_id}")
    except UserError as err:
        raise UserError(f"the teacher of {student.pathspec}: {err}") from None


def model_reference(model_run: str | None, branch: str, project: str, spec: DatasetConfig) -> dict[str, Any]:
    """The monitored model's run, reference profile, reference AUC and training time (Metaflow Client).

    Args:
        model_run: the pathspec that scored the partitions (a DistillFlow student brings its own profile: the
            teacher's hold-out scored by the student); None: the branch's TrainFlow champion.

    Runs trained before profiles existed get one built from their hold-out and verified model.

    Raises:
        UserError: the model run is not a TrainFlow or DistillFlow run that exists; or none is given and the branch
            has no champion.
    """
    from steps.registry.registry import Registry, global_namespace, load_model, started_at

    with global_namespace():
        run = _model_run(model_run) if model_run else Registry("TrainFlow", branch, project,
                                                               dataset=spec.name).champion()
        if run is None:
            raise UserError(f"no champion of dataset {spec.name!r} for TrainFlow on branch {branch} of project "
                            f"{project} and no scored partition names a model: nothing to monitor")
        teacher = _teacher(run) if run.path_components[0] == "DistillFlow" else run
        source = run if "reference_profile" in run_data(run) else teacher  # a student's own scores when it has them
        if "reference_profile" in run_data(source):
            profile = run_data(source).reference_profile
        else:
            logger.info("%s has no reference profile: building one from its hold-out", teacher.pathspec)
            profile = build_reference(load_model(teacher), part_of(run_data(teacher), "holdout"), spec,
                                      ReferenceConfig())
        return {"run": run.pathspec, "profile": profile, "reference_auc": float(profile["performance"]["roc_auc"]),
                "trained_at": started_at(teacher).isoformat(), "profile_of": source.pathspec}


def registry_notices(branch: str, project: str, after: str | None, flow: str = "TrainFlow",
                     dataset: str | None = None) -> list[dict[str, Any]]:
    """Audit events (promotions, rollbacks) recorded after ``after`` (ISO time; None: none, first run)."""
    from steps.registry.registry import Registry

    if after is None:
        return []
    events = Registry(flow=flow, branch=branch, project=project, dataset=dataset).history()
    return [e for e in events if str(e["when"]) > after]
