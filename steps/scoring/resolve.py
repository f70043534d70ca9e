"""Which model scores: the champion, its serving student, or a given run; fingerprint-verified."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from steps.config.dataset import DatasetConfig
from steps.core.errors import UserError
from steps.modeling import models
from steps.modeling.training import schema_mismatch
from steps.registry.registry import run_data

logger = logging.getLogger(__name__)


class ScoreModelError(UserError):
    """No usable model: no champion, a run on another branch, a failed run, or a feature mismatch."""


@dataclass(frozen=True)
class ResolvedModel:
    """A TrainFlow run's model, verified against its fingerprint."""

    run: str
    name: str
    fingerprint: str
    features: list[str]
    blob: bytes = field(repr=False)
    pipeline: Any = field(repr=False, compare=False)
    onnx: bytes | None = field(default=None, repr=False)  # a DistillFlow student's registered ONNX graph
    dataset: str | None = None  # the dataset the model was trained for (None: a run from before that was recorded)
    decision: dict[str, Any] | None = None  # its recorded decision threshold and review band (None: older runs)
    overrides: tuple[str, ...] = ()  # the rules a forced --model-run/--shadow-run broke (recorded in the manifest)

    def describe(self) -> dict[str, Any]:
        """Run, name, fingerprint and dataset (for artifacts and the manifest)."""
        return {"run": self.run, "name": self.name, "fingerprint": self.fingerprint, "dataset": self.dataset}


def resolve_model(model_run: str | None, branch: str, project: str, spec: DatasetConfig | None = None,
                  flow: str = "TrainFlow", force: str = "") -> ResolvedModel:
    """``model_run`` (run id or pathspec, on this project branch) or the champion of ``spec``'s dataset,
    fingerprint-verified from the datastore's bytes; the champion's serving student when DistillFlow registered one.

    A given run must have passed its gates and be a run of ``flow`` for ``spec``'s dataset; ``force`` (a reason)
    lets one that is not through, with the broken rules in ``overrides``. With ``spec``, the model (a served student
    too) must take the dataset config's features (ScoreModelError naming the missing and extra columns otherwise).
    """
    from steps.registry.registry import Registry, RegistryError, gates_passed, stored_model

    dataset = spec.name if spec is not None else None
    named_flow, _, run_id = (model_run or "").rpartition("/")
    if model_run and ("/" in named_flow or not run_id):  # a step or task path would be looked up as a flow
        raise ScoreModelError(f"--model-run {model_run!r} is not a run: give its id (e.g. 1796226278058349) or "
                              f"{flow}/<id>")
    reg = Registry(flow=named_flow or flow, branch=branch, project=project, dataset=dataset)
    try:
        run = reg.run(run_id, any_dataset=bool(force)) if model_run else reg.champion()
    except RegistryError as err:
        raise ScoreModelError(str(err)) from err
    if run is None:
        raise ScoreModelError(f"no champion for {flow} on branch {branch} of project {project}: "
                              "promote one, or pass --model-run")
    if not model_run:
        student = serving_student(run.id, branch, project, reg.dataset)
        if student is not None:
            if spec is not None:
                check_features(student, spec)
            return student
    if not run.successful:
        raise ScoreModelError(f"run {run.pathspec} did not finish successfully")
    overrides = _broken_rules(run, flow, dataset, gates_passed(run)) if model_run else []
    if overrides and not force.strip():
        raise ScoreModelError(f"run {run.pathspec}: {'; '.join(overrides)}; refusing to score with it (give --force "
                              "REASON to override: the reason is recorded in the manifest)")
    if overrides:
        logger.warning("scoring with %s although %s (forced: %s)", run.pathspec, "; ".join(overrides), force)
    blob, pipeline = stored_model(run)  # the datastore's bytes, refused unless they hash to the fingerprint
    data = run_data(run)
    schema = data.feature_schema if "feature_schema" in data else {}
    resolved = ResolvedModel(run.pathspec, str(data.model_name), str(data.model_fingerprint),
                             list(schema.get("features", [])), blob, pipeline, None, schema.get("dataset"),
                             data.decision if "decision" in data else None, tuple(overrides))
    if spec is not None:
        check_features(resolved, spec, any_dataset=bool(overrides))
    return resolved


def _broken_rules(run: Any, flow: str, dataset: str | None, passed: bool) -> list[str]:
    """Why a given run is not one to score with: not a run of ``flow``, of another dataset, or failed gates."""
    from steps.registry.registry import run_dataset

    found = [] if run.parent.id == flow else [f"it is a run of {run.parent.id}, not {flow}"]
    other = run_dataset(run)
    if dataset is not None and other is not None and other != dataset:
        found.append(f"it is a model of dataset {other!r}, not {dataset!r}")
    if not passed:
        found.append("it did not pass its gates")
    return found


def serving_student(teacher_run_id: str, branch: str, project: str, dataset: str | None = None) -> ResolvedModel | None:
    """The newest DistillFlow run tagged ``serving`` whose teacher is ``teacher_run_id``, verified; or None.

    The distilled student serves in place of its teacher; once the champion changes, its old student no longer
    matches and the new champion itself is used until it is distilled.
    """
    from steps.registry.registry import Registry, stored_artifact, stored_model

    for run in Registry(flow="DistillFlow", branch=branch, project=project, dataset=dataset).runs("serving"):
        data = run_data(run)
        if str(data.teacher_run_id) != str(teacher_run_id):
            continue
        onnx = stored_artifact(run, "onnx_model")  # the datastore's bytes, whatever the Client's cache holds
        if models.fingerprint(onnx) != data.onnx_fingerprint:
            raise ScoreModelError(f"serving student {run.pathspec}: ONNX bytes do not match their fingerprint")
        logger.info("serving the distilled student %s of champion %s", run.pathspec, teacher_run_id)
        schema = data.feature_schema if "feature_schema" in data else {}
        return ResolvedModel(run.pathspec, str(data.model_name), str(data.model_fingerprint),
                             list(schema.get("features", [])), *stored_model(run), onnx,
                             schema.get("dataset"), data.decision if "decision" in data else None)
    return None


def check_features(model: ResolvedModel, spec: DatasetConfig, any_dataset: bool = False) -> None:
    """ScoreModelError when the model was trained for another dataset (unless ``any_dataset``: a forced run), or on
    other features than the config lists."""
    reason = schema_mismatch(None if any_dataset else model.dataset, model.features, spec)
    if reason is not None:
        raise ScoreModelError(f"model {model.run} cannot score dataset {spec.name!r}: {reason}")
