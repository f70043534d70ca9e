"""The teacher, per-runtime cost and quality of every model, the student selection, its gates, the ``serving`` tag."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from steps.config.dataset import DatasetConfig
from steps.config.distill import DistillConfig
from steps.config.gates import GatesConfig
from steps.config.train import ReferenceConfig
from steps.core.progress import timed
from steps.core.timing import best_seconds, call_seconds, percentiles
from steps.data.table import frames_ref
from steps.distill.onnx import parity_check, to_onnx
from steps.gates.assess import assess
from steps.gates.efficiency import single_rows
from steps.gates.result import Verdict
from steps.modeling import models
from steps.modeling.onnx import OUTPUT, ExportError, OnnxScorer
from steps.modeling.reference import build_reference
from steps.modeling.training import schema_mismatch
from steps.registry.registry import CANDIDATE, Registry, RegistryError, load_model, run_data, step_data

logger = logging.getLogger(__name__)


SERVING = "serving"


NO_STUDENT = "distillation/no_student_selected"


@dataclass(frozen=True)
class Teacher:
    """The verified TrainFlow model to distil, with the artifacts DistillFlow carries over from its run."""

    run_id: str
    fingerprint: str
    model_name: str
    blob: bytes
    model: Pipeline
    split_ref: dict[str, Any]  # its rows by reference: its run's, or its older run's frames stored once as a table
    lineage: dict[str, Any]
    feature_schema: dict[str, Any]
    decision: dict[str, Any] | None = None  # its recorded decision threshold and review band (None: older runs)


def resolve_teacher(teacher_run: str | None, branch: str, project: str, spec: DatasetConfig | None = None,
                    tables: str | None = None) -> Teacher:
    """The TrainFlow run ``teacher_run`` (default: the branch's champion), its model verified against its fingerprint,
    and its rows by reference: its ``split_ref``, or for a run from before references its train and hold-out frames
    written once under ``tables`` (:func:`steps.data.table.frames_ref`), so DistillFlow keeps no copy of them either.

    Raises:
        RegistryError: no run given and the dataset has no champion on the branch, the run is not on the branch, or
            it was trained for another dataset or other features than ``spec`` names.
        FingerprintMismatch: the model bytes do not hash to the recorded fingerprint.
    """
    reg = Registry("TrainFlow", branch, project, dataset=spec.name if spec is not None else None)
    run = reg.run(teacher_run) if teacher_run else reg.champion()
    if run is None:
        raise RegistryError(f"no TrainFlow champion of dataset {reg.dataset!r} on branch {branch}: pass --teacher-run")
    model = load_model(run)  # refuses bytes that do not hash to the recorded fingerprint
    data = run_data(run)
    if spec is not None:
        schema = data.feature_schema if "feature_schema" in data else {}
        reason = schema_mismatch(schema.get("dataset"), list(schema.get("features", [])), spec)
        if reason is not None:
            raise RegistryError(f"teacher {run.pathspec} cannot be distilled for dataset {spec.name!r}: {reason}")
    return Teacher(run.id, data.model_fingerprint, data.model_name, data.model_blob, model, _rows(run, data, tables),
                   data.lineage, data.feature_schema, data.decision if "decision" in data else None)


def _rows(run: Any, data: Any, tables: str | None) -> dict[str, Any]:
    """The teacher run's ``split_ref``, or its frames (older runs) stored under ``tables`` as one."""
    if "split_ref" in data:
        return dict(data.split_ref)
    if tables is None:
        raise RegistryError(f"teacher {run.pathspec} keeps its rows as frames: give a tables root to store them")
    return frames_ref({"train": step_data(run, "split").train_df, "holdout": data.holdout_df}, tables)


def export_teacher(teacher: Pipeline, spec: DatasetConfig) -> bytes | None:
    """The teacher's ONNX bytes, or None (logged) when it cannot be exported: its cost is then compared on native."""
    try:
        return to_onnx(teacher, spec)
    except ExportError as err:
        logger.warning("teacher cannot be exported to ONNX (%s); its cost is compared on native", err)
        return None


def measure_runtimes(pipeline: Pipeline, onnx_bytes: bytes | None, quantized: bytes | None, frame: pd.DataFrame,
                     spec: DatasetConfig, batch_rows: int, latency_rows: int,
                     clock: str = "wall") -> dict[str, dict[str, Any]]:
    """Per runtime (native, onnx, quantized): holdout scores, rows/s on one thread, per-row cost, latency, size.

    ``clock`` is :mod:`steps.core.timing`'s: ``cpu`` times the models' own work, so teacher and students compare
    even when other processes take the cores between their measurements; ``wall`` is what a caller waits.

    ONNX timings are of ``session.run`` on inputs already fed (``OnnxScorer.feed``): the categorical cleaning is
    the same Python work for every model and is left out, so the ratio compares the graphs themselves.
    """
    batch = frame.iloc[:batch_rows]
    feats = batch[spec.features]
    singles = single_rows(feats, latency_rows)
    calls: dict[str, tuple[Any, Any, list[Any], int]] = {
        "native": (pipeline.predict_proba, feats, singles, len(models.serialize(pipeline)))}
    for runtime, blob in (("onnx", onnx_bytes), ("quantized", quantized)):
        if blob is not None:
            scorer = OnnxScorer(blob, threads=1)
            run = scorer.session.run
            calls[runtime] = (lambda feed, run=run: run([OUTPUT], feed), scorer.feed(batch),
                              [scorer.feed(s) for s in singles], len(blob))
    out: dict[str, dict[str, Any]] = {}
    with threadpool_limits(limits=1):
        for runtime, (call, whole, single, size) in calls.items():
            rps = len(batch) / best_seconds(call, whole, warmup=True, clock=clock)
            out[runtime] = {"rows_per_s": rps, "cost_us_per_row": 1e6 / rps, "clock": clock,
                            **percentiles(call_seconds(call, single, clock=clock), 1e6, "us"), "size_bytes": size}
    return out


def evaluate_model(name: str, kind: str, pipeline: Pipeline, onnx_bytes: bytes | None, quantized: bytes | None,
                   holdout: pd.DataFrame, spec: DatasetConfig, cfg: DistillConfig, threshold: float) -> dict[str, Any]:
    """Hold-out AUC (native) and parity of the ONNX and int8 graphs against native (no timings: see
    :func:`measure_runtimes`, run for every model in one process so the costs compare)."""
    y = holdout[spec.target.name].to_numpy()
    native = models.predict_proba(pipeline, holdout, spec)
    parity: dict[str, dict[str, Any]] = {}
    for runtime, blob, tol, rate in (("onnx", onnx_bytes, cfg.parity_tolerance, cfg.max_flip_rate),
                                     ("quantized", quantized, cfg.quantized_tolerance, cfg.quantized_max_flip_rate)):
        if blob is None:
            continue
        scores = OnnxScorer(blob).predict(holdout)
        parity[runtime] = {**parity_check(native, scores, threshold, tol, rate),
                           "auc": float(roc_auc_score(y, scores)),
                           "float32_note": "inputs fed as float32; graph arithmetic in float32"}
    return {"name": name, "kind": kind, "auc": float(roc_auc_score(y, native)), "parity": parity}


def candidate_row(ev: dict[str, Any], teacher: dict[str, Any], runtime: str) -> dict[str, Any]:
    """One line of the candidate table: AUC ratio and per-row cost ratio against the teacher on ``runtime``
    (both measured with :func:`measure_runtimes`; native when either lacks that runtime)."""
    rt = runtime if runtime in ev["runtimes"] and runtime in teacher["runtimes"] else "native"
    cost, teacher_cost = ev["runtimes"][rt]["cost_us_per_row"], teacher["runtimes"][rt]["cost_us_per_row"]
    return {**ev, "auc_ratio": ev["auc"] / teacher["auc"], "cost_runtime": rt, "cost_us_per_row": cost,
            "cost_ratio": cost / teacher_cost, "parity_passed": ev["parity"].get("onnx", {}).get("passed", False)}


def select(rows: list[dict[str, Any]], min_auc_ratio: float, max_cost_ratio: float) -> tuple[str | None, list]:
    """The best-AUC student with auc_ratio >= floor, cost_ratio <= ceiling and ONNX parity; and each row's reasons.

    Returns (chosen name or None, rows with ``eligible`` and ``reasons`` added). Ties: the cheaper one.
    """
    out = []
    for r in rows:
        reasons = []
        if r["auc_ratio"] < min_auc_ratio:
            reasons.append(f"auc_ratio {r['auc_ratio']:.4f} < {min_auc_ratio:g}")
        if r["cost_ratio"] > max_cost_ratio:
            reasons.append(f"cost_ratio {r['cost_ratio']:.3f} > {max_cost_ratio:g}")
        if not r.get("parity_passed", True):
            reasons.append("ONNX parity failed")
        out.append({**r, "eligible": not reasons, "reasons": reasons})
    eligible = sorted((r for r in out if r["eligible"]), key=lambda r: (-r["auc"], r["cost_ratio"]))
    return (eligible[0]["name"] if eligible else None), out


def distillation_verdict(results: list[Any], auc_ratio: float, cost_ratio: float, cfg: DistillConfig) -> list[Any]:
    """The student's gate results with the teacher as ``champion``, minus ``champion/significantly_better*``
    (a student is not meant to beat its teacher) plus the quality floor and the cost ceiling."""
    from steps.gates.result import GateResult

    kept = [r for r in results if not (r.suite == "champion" and r.name.startswith("significantly_better"))]
    dropped = [r for r in results if r not in kept]
    kept.append(GateResult("distillation", "quality_floor[auc_ratio]", "student AUC / teacher AUC (hold-out)",
                           f">= {cfg.min_auc_ratio:g}", float(auc_ratio), bool(auc_ratio >= cfg.min_auc_ratio),
                           detail="replaces champion/significantly_better: a student must keep, not beat, the "
                                  "teacher's quality"))
    kept.append(GateResult("distillation", "cost_ceiling[per_row]", "student / teacher per-row cost",
                           f"<= {cfg.max_cost_ratio:g}", float(cost_ratio), bool(cost_ratio <= cfg.max_cost_ratio)))
    for r in dropped:
        kept.append(GateResult(r.suite, r.name, r.metric, r.threshold, r.actual, r.passed, r.interval,
                               detail="not gated for distillation (see quality_floor). " + r.detail, gated=False))
    return kept


@dataclass(frozen=True)
class TrainedStudent:
    """One ``train_student`` task's output: the ``student`` summary and the model bytes (native, ONNX, int8)."""

    summary: dict[str, Any]
    blob: bytes
    onnx: bytes
    quantized: bytes | None

    @classmethod
    def from_task(cls, task: Any) -> TrainedStudent:
        """From a join input's artifacts ``student``, ``student_blob``, ``student_onnx``, ``student_quantized``."""
        return cls(task.student, task.student_blob, task.student_onnx, task.student_quantized)

    @property
    def name(self) -> str:
        """The student's configured name."""
        return self.summary["name"]


def time_models(teacher: Pipeline, teacher_onnx: bytes | None, teacher_eval: dict[str, Any],
                students: list[TrainedStudent], holdout: pd.DataFrame, spec: DatasetConfig,
                cfg: DistillConfig, clock: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Time the teacher and every student in this one process (:func:`measure_runtimes`), so their costs compare.

    ``clock``: the gates' ``efficiency.clock`` (``cpu`` by default: a teacher timed on a quiet core and a student
    timed while another process competes still compare).

    Returns:
        The teacher's evaluation with ``runtimes`` added, and one :func:`candidate_row` per student.
    """
    measure = dict(frame=holdout, spec=spec, batch_rows=cfg.cost_rows, latency_rows=cfg.latency_rows, clock=clock)
    with timed(logger, "timing the teacher"):
        teacher_eval = {**teacher_eval, "runtimes": measure_runtimes(teacher, teacher_onnx, None, **measure)}
    rows = []
    for number, student in enumerate(students, 1):
        pipeline = models.deserialize(student.blob, student.summary["fingerprint"])
        with timed(logger, f"timing student {number}/{len(students)} {student.name}"):
            runtimes = measure_runtimes(pipeline, student.onnx, student.quantized, **measure)
        rows.append(candidate_row({**student.summary, "runtimes": runtimes}, teacher_eval, cfg.cost_runtime))
    return teacher_eval, rows


@dataclass(frozen=True)
class Selection:
    """The selected student's model artifacts and gate verdict; the defaults are DistillFlow's when none was chosen."""

    model_blob: bytes | None = None
    model_fingerprint: str | None = None
    onnx_model: bytes | None = None
    onnx_fingerprint: str | None = None
    quantized_model: bytes | None = None
    quantized: dict[str, Any] | None = None
    gate_results: list[dict[str, Any]] = field(default_factory=list)
    gate_summary: dict[str, Any] = field(
        default_factory=lambda: {"passed": False, "suites": {}, "failed": [NO_STUDENT]})
    gates_passed: bool = False
    reference_profile: dict[str, Any] | None = None  # the student's own scores on the hold-out, for MonitorFlow


def gate_selected(name: str | None, rows: list[dict[str, Any]], students: list[TrainedStudent],
                  holdout: pd.DataFrame, spec: DatasetConfig, cfg: DistillConfig, gates_cfg: GatesConfig,
                  champion: tuple[str, Pipeline, bytes], threshold: float = 0.5) -> Selection:
    """Gate the selected student against its teacher (as ``champion``), with :func:`distillation_verdict`.

    Args:
        name: the selected student (:func:`select`), or None: then nothing is gated and the run cannot serve.
        rows: the candidate rows from :func:`select`.
        champion: (teacher run id, teacher model, teacher model bytes).
        threshold: the teacher's decision threshold (the student decides at it too).
    """
    if not name:
        return Selection()
    chosen = next(s for s in students if s.name == name)
    row = next(r for r in rows if r["name"] == name)
    model = models.deserialize(chosen.blob, chosen.summary["fingerprint"])
    logger.info("gating the selected student %s against its teacher", name)
    assessment = assess(model, chosen.blob, holdout, spec, gates_cfg, champion=champion, threshold=threshold)
    verdict = Verdict(distillation_verdict(assessment.verdict.results, row["auc_ratio"], row["cost_ratio"],
                                           cfg))
    quantized = {**(chosen.summary["quantization"] or {}), "parity": row["parity"].get("quantized"),
                 "runtime": row["runtimes"].get("quantized")}
    return Selection(chosen.blob, chosen.summary["fingerprint"], chosen.onnx, chosen.summary["onnx_fingerprint"],
                     chosen.quantized, quantized, [r.to_dict() for r in verdict.results], verdict.summary(),
                     verdict.passed, build_reference(model, holdout, spec, ReferenceConfig()))


def register_serving(run_id: str, branch: str, project: str, selected: bool, passed: bool,
                     gate_summary: dict[str, Any] | None, note: str | None = None,
                     dataset: str | None = None) -> dict[str, Any] | None:
    """Tag the DistillFlow run ``candidate``; when a student was selected and every gate passed, move ``serving``
    here (from any other run of the branch) and append a ``serve`` event to the DistillFlow audit log."""
    reg = Registry(flow="DistillFlow", branch=branch, project=project, dataset=dataset)
    reg.run(run_id).add_tags([CANDIDATE, reg.tag])
    if not (selected and passed):
        return None
    return reg.move_tag(run_id, SERVING, "serve", "student selected and every gate passed", note, gate_summary)
