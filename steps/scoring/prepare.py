"""ScoreFlow's ``start``: everything checked before any shard runs, then the date claimed and its manifest retracted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from steps.config.dataset import DatasetConfig
from steps.config.gates import GatesConfig
from steps.config.profile import ProfileConfig
from steps.config.score import ScoreConfig
from steps.core import decision, storage
from steps.scoring import claims, partition, plan, resolve, runtime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """What a ScoreFlow run was asked for (its Parameters; empty strings: the defaults)."""

    source: str = ""
    output: str = ""
    date: str = ""
    model_run: str = ""
    shadow_run: str = ""
    force: str = ""
    decision_threshold: str = ""


@dataclass(frozen=True)
class Prepared:
    """The checked run: model(s), decision, runtime, plan with its claim, the manifest header."""

    model: resolve.ResolvedModel
    shadow: resolve.ResolvedModel | None
    decision: dict[str, Any]
    feature_names: list[str]
    onnx_model: bytes | None
    onnx_parity: dict[str, Any] | None
    plan: dict[str, Any]  # ``RunPlan.summary()`` plus its ``claim``
    shards: list[dict[str, Any]]
    manifest_header: dict[str, Any]
    retracted_manifest: bool = field(default=False)


def prepare(request: Request, spec: DatasetConfig, cfg: ScoreConfig, profile: ProfileConfig, gates: GatesConfig,
            branch: str, project: str, run_pathspec: str) -> Prepared:
    """Check the arguments and the output, resolve and verify the model(s), read the inputs' footers and cut the
    shards; then claim the date for ``run_pathspec`` and retract its manifest (the first writes of the run)."""
    day, override = plan.partition_date(request.date or None), decision.parse_override(request.decision_threshold)
    source = profile.locate(request.source or cfg.input)  # relative: under the profile's storage root
    output = profile.locate(request.output or cfg.output_root)
    storage.check_writable(storage.absolute(output))
    model = resolve.resolve_model(request.model_run or None, branch, project, spec, force=request.force)
    chosen = decision.decision_in_use(model.decision, override, gates.decision_threshold, gates.review.band)
    shadow = resolve.resolve_model(request.shadow_run, branch, project, spec, force=request.force) \
        if request.shadow_run else None
    features = runtime.check_explainable(model.pipeline, cfg.top_k) if cfg.top_k else []
    run_plan = plan.plan_run(source, output, day, spec, cfg.shard_rows)
    onnx_model, parity = runtime.prepare_runtime(model, cfg, spec, run_plan.files, chosen["threshold"])
    header = partition.manifest_header(run_pathspec, run_plan, model, shadow, cfg, chosen, parity, request.force)
    claim = claims.claim_date(run_plan.output_root, run_plan.day, run_pathspec)  # a newer claim stops this run
    retracted = partition.retract_manifest(run_plan.output_root, run_plan.day, spec.name)
    summary = {**run_plan.summary(), "claim": claim.to_dict()}
    return Prepared(model, shadow, chosen, features, onnx_model, parity, summary,
                    [s.to_dict() for s in run_plan.shards], header, retracted)
