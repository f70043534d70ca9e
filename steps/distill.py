"""Teacher -> student distillation: transfer set, students that regress the teacher's logit, their ONNX graphs
(preprocessing + regressor + Sigmoid), int8 quantization, parity, per-row cost, selection and the ``serving`` tag.

A student is a scikit-learn ``Pipeline(preprocess, DistilledClassifier(regressor))``: raw input columns in,
``predict_proba`` = sigmoid(regressor output) out, so every consumer of a TrainFlow model (gates, ScoreFlow,
``models.predict_proba``) uses it unchanged. Its ONNX graph is the regressor converted by skl2onnx with the shared
preprocessing conventions of :mod:`steps.export` (raw columns packed into a numeric and a categorical input, the
categorical cleaning done by :class:`steps.export.OnnxScorer`), followed by ``Sigmoid`` and a ``[1 - p, p]`` concat
into ``probabilities``.

Quantization: ``onnxruntime.quantization.quantize_dynamic`` rewrites MatMul/Gemm weights to int8 (the MLP and the
linear student). A tree ensemble has no such weights: quantize_dynamic leaves it as it is (measured once by
:func:`quantize` and recorded, never assumed).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from steps import export, gates, models
from steps.config import DatasetConfig, DistillConfig, GatesConfig, ReferenceConfig, StudentConfig
from steps.features import preprocessor
from steps.monitor import build_reference

logger = logging.getLogger(__name__)

EPS = 1e-7
SERVING = "serving"
NO_STUDENT = "distillation/no_student_selected"
REGRESSOR_OUTPUT = "variable"


# --------------------------------------------------------------------------------------------------- the wrapper
def sigmoid(z: Any) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=float)
    return np.exp(-np.logaddexp(0.0, -z))


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


class DistilledClassifier(ClassifierMixin, BaseEstimator):
    """A binary classifier whose positive-class probability is sigmoid(regressor(X)).

    ``fit(X, target)`` takes the teacher's logit as ``target`` (continuous): the regressor learns the teacher's
    score, not the labels. ``classes_`` is ``[0, 1]`` so it stands wherever a binary classifier is expected.
    """

    def __init__(self, regressor: Any = None) -> None:
        self.regressor = regressor

    def fit(self, X: Any, y: Any, **fit_params: Any) -> "DistilledClassifier":
        """Fit a clone of ``regressor`` on the logit target ``y``."""
        if self.regressor is None:
            raise ValueError("DistilledClassifier needs a regressor")
        self.regressor_ = clone(self.regressor).fit(X, np.asarray(y, dtype=float), **fit_params)
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The regressor's output: the student's logit."""
        return np.asarray(self.regressor_.predict(X), dtype=float).ravel()

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[1 - p, p]`` with p = sigmoid(logit)."""
        p = sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """1 where p >= 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


# --------------------------------------------------------------------------------------------------- students
STYLES = {"lightgbm": "tree", "mlp": "linear", "linear": "linear"}


def _regressor(student: StudentConfig, seed: int, threads: int, device: str) -> Any:
    params = dict(student.params)
    if student.type == "lightgbm":
        from lightgbm import LGBMRegressor

        return LGBMRegressor(**{"n_estimators": 30, "num_leaves": 7, "learning_rate": 0.1, "random_state": seed,
                                "n_jobs": threads, "verbose": -1, "device_type": device, **params})
    if student.type == "mlp":
        from sklearn.neural_network import MLPRegressor

        return MLPRegressor(**{"hidden_layer_sizes": (32,), "max_iter": 60, "early_stopping": True,
                               "random_state": seed, **params})
    from sklearn.linear_model import Ridge

    return Ridge(**{"alpha": 1.0, **params})


def build_student(student: StudentConfig, spec: DatasetConfig, seed: int, threads: int = 1,
                  device: str = "cpu") -> Pipeline:
    """``Pipeline(preprocess, DistilledClassifier(regressor))`` from raw columns (``features.preprocessor``).

    MLP and linear students get the linear preprocessing with median imputation but no missing-indicator
    columns (skl2onnx cannot convert ``add_indicator``); the LightGBM student takes NaN natively.
    """
    pre = preprocessor(spec, STYLES[student.type], impute=True)
    if STYLES[student.type] == "linear" and spec.numeric:
        pre.set_params(num__impute__add_indicator=False)
    return Pipeline([("preprocess", pre), ("model", DistilledClassifier(_regressor(student, seed, threads, device)))])


def fit_student(pipeline: Pipeline, frame: pd.DataFrame, target: np.ndarray, spec: DatasetConfig,
                threads: int = 1) -> tuple[Pipeline, dict[str, Any]]:
    """Fit on the transfer set; a LightGBM GPU learner that is unavailable falls back to CPU (logged).

    Returns the fitted pipeline and ``{"device": used, "fit_seconds": s, "fallback": reason or None}``.
    """
    reg = pipeline[-1].regressor
    device = getattr(reg, "device_type", "cpu") if type(reg).__name__ == "LGBMRegressor" else "cpu"
    fallback = None
    start = time.perf_counter()
    with threadpool_limits(limits=threads):
        try:
            pipeline.fit(frame[spec.features], target)
        except Exception as err:  # LightGBMError: GPU Tree Learner was not enabled in this build / no OpenCL device
            if device == "cpu":
                raise
            fallback = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            logger.warning("LightGBM device '%s' unavailable (%s); falling back to CPU", device, fallback)
            pipeline.set_params(model__regressor__device_type="cpu")
            device = "cpu"
            pipeline.fit(frame[spec.features], target)
    if device != "cpu":
        logger.info("LightGBM student trained on device '%s'", device)
    return pipeline, {"device": device, "fit_seconds": time.perf_counter() - start, "fallback": fallback}


# --------------------------------------------------------------------------------------------------- transfer set
def transfer_set(train_df: pd.DataFrame, spec: DatasetConfig, cfg: DistillConfig) -> pd.DataFrame:
    """The teacher's training rows (feature columns), plus ``augmentation.copies`` perturbed copies.

    A copy jitters every numeric feature by ``numeric_noise`` x its std (clipped to the dataset's range, NaN kept)
    and resamples each categorical cell with probability ``category_resample_rate`` from the column's observed
    distribution.
    """
    base = train_df[spec.features].reset_index(drop=True)
    if cfg.max_transfer_rows and len(base) > cfg.max_transfer_rows:
        base = base.sample(cfg.max_transfer_rows, random_state=cfg.seed).reset_index(drop=True)
    aug = cfg.augmentation
    if aug.copies == 0:
        return base
    rng = np.random.default_rng(aug.seed)
    parts = [base]
    for _ in range(aug.copies):
        copy = base.copy()
        for col, rule in spec.numeric.items():
            values = copy[col].to_numpy(dtype=float, na_value=np.nan)
            std = np.nanstd(values) or 0.0
            jittered = values + rng.normal(0.0, aug.numeric_noise * std, len(values))
            copy[col] = np.clip(jittered, rule.min if rule.min is not None else -np.inf,
                                rule.max if rule.max is not None else np.inf)
        for col in spec.categorical:
            observed = base[col].dropna()
            if observed.empty or aug.category_resample_rate == 0:
                continue
            mask = rng.random(len(copy)) < aug.category_resample_rate
            column = copy[col].astype(object).to_numpy(copy=True)
            column[mask] = rng.choice(observed.astype(object).to_numpy(), int(mask.sum()))
            copy[col] = column
        parts.append(copy)
    out = pd.concat(parts, ignore_index=True)
    logger.info("transfer set: %d rows (%d original, %d augmented copies)", len(out), len(base), aug.copies)
    return out


def teacher_logits(teacher: Pipeline, frame: pd.DataFrame, spec: DatasetConfig, threads: int = 1) -> np.ndarray:
    """The teacher's logit for each row: logit(predict_proba)."""
    return logit(models.predict_proba(teacher, frame, spec, threads))


# --------------------------------------------------------------------------------------------------- teacher
@dataclass(frozen=True)
class Teacher:
    """The verified TrainFlow model to distil, with the artifacts DistillFlow carries over from its run."""

    run_id: str
    fingerprint: str
    model_name: str
    blob: bytes
    model: Pipeline
    holdout_df: pd.DataFrame
    lineage: dict[str, Any]
    feature_schema: dict[str, Any]
    train_df: pd.DataFrame


def resolve_teacher(teacher_run: str | None, branch: str, project: str) -> Teacher:
    """The TrainFlow run ``teacher_run`` (default: the branch's champion), its model verified against its fingerprint.

    Raises:
        RegistryError: no run given and the branch has no champion, or the run is not on the branch.
        FingerprintMismatch: the model bytes do not hash to the recorded fingerprint.
    """
    from steps import registry

    reg = registry.Registry("TrainFlow", branch, project)
    run = reg.run(teacher_run) if teacher_run else reg.champion()
    if run is None:
        raise registry.RegistryError(f"no TrainFlow champion on branch {branch}: pass --teacher-run")
    model = registry.load_model(run)  # refuses bytes that do not hash to the recorded fingerprint
    data = run.data
    return Teacher(run.id, data.model_fingerprint, data.model_name, data.model_blob, model, data.holdout_df,
                   data.lineage, data.feature_schema, run["split"].task.data.train_df)


def export_teacher(teacher: Pipeline, spec: DatasetConfig) -> bytes | None:
    """The teacher's ONNX bytes, or None (logged) when it cannot be exported: its cost is then compared on native."""
    try:
        return to_onnx(teacher, spec)
    except export.ExportError as err:
        logger.warning("teacher cannot be exported to ONNX (%s); its cost is compared on native", err)
        return None


# --------------------------------------------------------------------------------------------------- ONNX
def _register_regressors() -> None:
    """Teach skl2onnx to convert ``LGBMRegressor`` with onnxmltools' converter (idempotent)."""
    from lightgbm import LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes,
                                convert_lightgbm)


def append_sigmoid(model: Any, logit_output: str, output: str = export.OUTPUT) -> Any:
    """Replace the graph's outputs by ``output`` = ``[1 - sigmoid(x), sigmoid(x)]`` of ``logit_output`` ([N, 1])."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array([1.0], dtype=np.float32), "distill_one"))
    graph.node.extend([
        helper.make_node("Reshape", [logit_output, "distill_shape"], ["distill_logit"], name="distill_reshape"),
        helper.make_node("Sigmoid", ["distill_logit"], ["distill_p1"], name="distill_sigmoid"),
        helper.make_node("Sub", ["distill_one", "distill_p1"], ["distill_p0"], name="distill_complement"),
        helper.make_node("Concat", ["distill_p0", "distill_p1"], [output], axis=1, name="distill_concat"),
    ])
    graph.initializer.append(numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "distill_shape"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, 2]))
    return model


def student_to_onnx(pipeline: Pipeline, spec: DatasetConfig, target_opset: int = export.TARGET_OPSET) -> bytes:
    """A fitted student pipeline as ONNX bytes: preprocessing + regressor + Sigmoid, output ``probabilities``."""
    import onnx
    from skl2onnx import convert_sklearn

    if not isinstance(pipeline[-1], DistilledClassifier):
        raise export.ExportError(f"not a student pipeline: last step is {type(pipeline[-1]).__name__}")
    _register_regressors()
    graph = export.graph_pipeline(pipeline)
    graph.steps[-1] = ("model", graph[-1].regressor_)
    name = type(graph[-1]).__name__
    try:
        onx = convert_sklearn(graph, initial_types=export.initial_types(spec),
                              target_opset={"": target_opset, "ai.onnx.ml": export.ML_OPSET})
    except Exception as err:
        raise export.ExportError(f"cannot convert student {name} to ONNX: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0][:300]}") from err
    outputs = [o.name for o in onx.graph.output]
    if len(outputs) != 1:
        raise export.ExportError(f"student {name} graph has outputs {outputs}, expected one regression output")
    onx = export.pack_inputs(append_sigmoid(onx, outputs[0]), spec)
    onnx.checker.check_model(onx)
    blob = onx.SerializeToString()
    logger.info("exported student %s to ONNX (%d bytes)", name, len(blob))
    return blob


def to_onnx(pipeline: Pipeline, spec: DatasetConfig) -> bytes:
    """ONNX bytes of a teacher (``export.to_onnx``) or a student (:func:`student_to_onnx`)."""
    if isinstance(pipeline[-1], DistilledClassifier):
        return student_to_onnx(pipeline, spec)
    return export.to_onnx(pipeline, spec)


def quantize(onnx_bytes: bytes) -> tuple[bytes, dict[str, Any]]:
    """Dynamic int8 quantization (``quantize_dynamic``, QInt8 weights); returns (bytes, what changed)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        src.write_bytes(onnx_bytes)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        out = dst.read_bytes()
    import onnx

    ops = sorted({n.op_type for n in onnx.load_from_string(out).graph.node}
                 - {n.op_type for n in onnx.load_from_string(onnx_bytes).graph.node})
    info = {"size_bytes": len(onnx_bytes), "quantized_size_bytes": len(out),
            "size_ratio": len(out) / len(onnx_bytes), "new_ops": ops, "changed": bool(ops)}
    logger.info("quantize_dynamic: %d -> %d bytes, new ops %s", len(onnx_bytes), len(out), ops or "none")
    return out, info


def parity_check(native: np.ndarray, onnx: np.ndarray, threshold: float, tolerance: float,
                 max_flip_rate: float) -> dict[str, Any]:
    """``export.parity`` plus the verdict: max |diff| <= tolerance and flips <= max_flip_rate x rows."""
    result = export.parity(native, onnx, threshold)
    allowed = int(np.floor(max_flip_rate * result["rows"]))
    result.update(tolerance=float(tolerance), allowed_flips=allowed, max_flip_rate=float(max_flip_rate),
                  passed=bool(result["max_abs_diff"] <= tolerance and result["decision_flips"] <= allowed))
    return result


# --------------------------------------------------------------------------------------------------- cost
def rows_per_second(predict: Any, batch: Any, repeats: int = 3) -> float:
    """Best-of-``repeats`` batch throughput of ``predict(batch)`` on one thread."""
    best = float("inf")
    with threadpool_limits(limits=1):
        predict(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            predict(batch)
            best = min(best, time.perf_counter() - start)
    n = len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
    return n / best if best > 0 else float("inf")


def single_row_us(predict: Any, rows: list[Any], warmup: int = 5) -> dict[str, float]:
    """p50 / p99 microseconds of one-row calls (rows prepared before timing)."""
    with threadpool_limits(limits=1):
        for r in rows[:warmup]:
            predict(r)
        out = np.empty(len(rows))
        for i, r in enumerate(rows):
            start = time.perf_counter()
            predict(r)
            out[i] = (time.perf_counter() - start) * 1e6
    return {"p50_us": float(np.percentile(out, 50)), "p99_us": float(np.percentile(out, 99))}


def measure_runtimes(pipeline: Pipeline, onnx_bytes: bytes | None, quantized: bytes | None, frame: pd.DataFrame,
                     spec: DatasetConfig, batch_rows: int, latency_rows: int) -> dict[str, dict[str, Any]]:
    """Per runtime (native, onnx, quantized): holdout scores, rows/s on one thread, per-row cost, latency, size.

    ONNX timings are of ``session.run`` on inputs already fed (``OnnxScorer.feed``): the categorical cleaning is
    the same Python work for every model and is left out, so the ratio compares the graphs themselves.
    """
    batch = frame.iloc[:batch_rows]
    feats = batch[spec.features]
    singles = [feats.iloc[[i % len(feats)]] for i in range(latency_rows)]
    out: dict[str, dict[str, Any]] = {}
    rps = rows_per_second(lambda f: pipeline.predict_proba(f), feats)
    out["native"] = {"rows_per_s": rps, "cost_us_per_row": 1e6 / rps,
                     **single_row_us(lambda f: pipeline.predict_proba(f), singles),
                     "size_bytes": len(models.serialize(pipeline))}
    for runtime, blob in (("onnx", onnx_bytes), ("quantized", quantized)):
        if blob is None:
            continue
        scorer = export.OnnxScorer(blob, threads=1)
        feed = scorer.feed(batch)
        run = scorer.session.run
        rps = rows_per_second(lambda f: run([export.OUTPUT], f), feed)
        single_feeds = [scorer.feed(s) for s in singles]
        out[runtime] = {"rows_per_s": rps, "cost_us_per_row": 1e6 / rps,
                        **single_row_us(lambda f: run([export.OUTPUT], f), single_feeds),
                        "size_bytes": len(blob)}
    return out


# --------------------------------------------------------------------------------------------------- evaluation
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
        scores = export.OnnxScorer(blob).predict(holdout)
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
    from steps.gates import GateResult

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


# --------------------------------------------------------------------------------------------------- join
@dataclass(frozen=True)
class TrainedStudent:
    """One ``train_student`` task's output: the ``student`` summary and the model bytes (native, ONNX, int8)."""

    summary: dict[str, Any]
    blob: bytes
    onnx: bytes
    quantized: bytes | None

    @classmethod
    def from_task(cls, task: Any) -> "TrainedStudent":
        """From a join input's artifacts ``student``, ``student_blob``, ``student_onnx``, ``student_quantized``."""
        return cls(task.student, task.student_blob, task.student_onnx, task.student_quantized)

    @property
    def name(self) -> str:
        """The student's configured name."""
        return self.summary["name"]


def time_models(teacher: Pipeline, teacher_onnx: bytes | None, teacher_eval: dict[str, Any],
                students: list[TrainedStudent], holdout: pd.DataFrame, spec: DatasetConfig,
                cfg: DistillConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Time the teacher and every student in this one process (:func:`measure_runtimes`), so their costs compare.

    Returns:
        The teacher's evaluation with ``runtimes`` added, and one :func:`candidate_row` per student.
    """
    measure = dict(frame=holdout, spec=spec, batch_rows=cfg.cost_rows, latency_rows=cfg.latency_rows)
    teacher_eval = {**teacher_eval, "runtimes": measure_runtimes(teacher, teacher_onnx, None, **measure)}
    rows = []
    for student in students:
        pipeline = models.deserialize(student.blob, student.summary["fingerprint"])
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
                  champion: tuple[str, Pipeline, bytes]) -> Selection:
    """Gate the selected student against its teacher (as ``champion``), with :func:`distillation_verdict`.

    Args:
        name: the selected student (:func:`select`), or None: then nothing is gated and the run cannot serve.
        rows: the candidate rows from :func:`select`.
        champion: (teacher run id, teacher model, teacher model bytes).
    """
    if not name:
        return Selection()
    chosen = next(s for s in students if s.name == name)
    row = next(r for r in rows if r["name"] == name)
    model = models.deserialize(chosen.blob, chosen.summary["fingerprint"])
    assessment = gates.assess(model, chosen.blob, holdout, spec, gates_cfg, champion=champion)
    verdict = gates.Verdict(distillation_verdict(assessment.verdict.results, row["auc_ratio"], row["cost_ratio"],
                                                 cfg))
    quantized = {**(chosen.summary["quantization"] or {}), "parity": row["parity"].get("quantized"),
                 "runtime": row["runtimes"].get("quantized")}
    return Selection(chosen.blob, chosen.summary["fingerprint"], chosen.onnx, chosen.summary["onnx_fingerprint"],
                     chosen.quantized, quantized, [r.to_dict() for r in verdict.results], verdict.summary(),
                     verdict.passed, build_reference(model, holdout, spec, ReferenceConfig()))


# --------------------------------------------------------------------------------------------------- registry
def register_serving(run_id: str, branch: str, project: str, selected: bool, passed: bool,
                     gate_summary: dict[str, Any] | None, who: str | None = None) -> dict[str, Any] | None:
    """Tag the DistillFlow run ``candidate``; when a student was selected and every gate passed, move ``serving``
    here (from any other run of the branch) and append a ``serve`` event to the DistillFlow audit log."""
    from steps.registry import CANDIDATE, Registry

    reg = Registry(flow="DistillFlow", branch=branch, project=project)
    reg.run(run_id).add_tag(CANDIDATE)
    if not (selected and passed):
        return None
    return reg.move_tag(run_id, SERVING, "serve", "student selected and every gate passed", who, gate_summary)


def serving_run(branch: str, project: str = "tabular_mlops") -> Any:
    """The newest successful DistillFlow run tagged ``serving`` on the branch, or None."""
    from steps.registry import Registry

    runs = Registry(flow="DistillFlow", branch=branch, project=project).runs(SERVING)
    return runs[0] if runs else None


# --------------------------------------------------------------------------------------------------- card
def quality_cost_figure(points: list[dict[str, Any]]) -> Any:
    """AUC ratio (vs the teacher) against per-row cost (us, log scale): one marker per model and runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"native": "o", "onnx": "s", "quantized": "^"}
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for p in points:
        ax.scatter(p["cost_us_per_row"], p["auc_ratio"], marker=markers.get(p["runtime"], "x"), s=60,
                   color="tab:red" if p["kind"] == "teacher" else "tab:blue")
        ax.annotate(f"{p['name']} ({p['runtime']})", (p["cost_us_per_row"], p["auc_ratio"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="per-row cost, us (single-thread batch)", ylabel="AUC / teacher AUC (hold-out)",
           title="Distillation: quality vs cost (red: teacher)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def card_components(table: list[dict[str, Any]], teacher: dict[str, Any], chosen: str | None,
                    cfg: DistillConfig, gate_results: list[dict[str, Any]] | None) -> list[Any]:
    """The DistillFlow card: verdict, candidate table, quality-vs-cost plot, gate results."""
    from metaflow.cards import Image, Markdown, Table

    points = [{"name": "teacher", "kind": "teacher", "runtime": rt, "auc_ratio": 1.0,
               "cost_us_per_row": m["cost_us_per_row"]} for rt, m in teacher["runtimes"].items()]
    for r in table:
        for rt, m in r["runtimes"].items():
            auc = r["parity"].get(rt, {}).get("auc", r["auc"]) if rt != "native" else r["auc"]
            points.append({"name": r["name"], "kind": r["kind"], "runtime": rt, "auc_ratio": auc / teacher["auc"],
                           "cost_us_per_row": m["cost_us_per_row"]})
    rows = [[r["name"] + (" (selected)" if r["name"] == chosen else ""), r["kind"], f"{r['auc']:.4f}",
             f"{r['auc_ratio']:.4f}", f"{r['cost_ratio']:.3f}",
             *[f"{r['runtimes'][rt]['cost_us_per_row']:.3f}" if rt in r["runtimes"] else "-"
               for rt in ("native", "onnx", "quantized")],
             f"{r['parity'].get('onnx', {}).get('max_abs_diff', float('nan')):.2e}",
             str(r["parity"].get("onnx", {}).get("decision_flips", "-")), "; ".join(r["reasons"]) or "eligible"]
            for r in table]
    out = [Markdown(f"# DistillFlow\nTeacher AUC {teacher['auc']:.4f}. Selected: **{chosen or 'none'}** "
                    f"(rule: AUC ratio >= {cfg.min_auc_ratio:g} at cost ratio <= {cfg.max_cost_ratio:g} on "
                    f"{cfg.cost_runtime})."),
           Table(rows, headers=["student", "type", "AUC", "AUC ratio", "cost ratio", "native us/row", "onnx us/row",
                                "int8 us/row", "onnx max|diff|", "flips", "selection"]),
           Image.from_matplotlib(quality_cost_figure(points))]
    if gate_results:
        out += [Markdown("## Gates (teacher as champion; significance replaced by the quality floor)"),
                Table([[("PASS" if g["passed"] else "FAIL") + ("" if g["gated"] else " (not gated)"), g["suite"],
                        g["name"], g["threshold"], f"{g['actual']:.4g}" if g["actual"] is not None else "-"]
                       for g in gate_results], headers=["result", "suite", "check", "threshold", "actual"])]
    return out
