"""Student ONNX graphs (preprocessing + regressor + Sigmoid), int8 quantization and the parity verdict."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from steps.config.dataset import DatasetConfig
from steps.distill.students import DistilledClassifier
from steps.modeling.onnx import (
    TARGET_OPSET,
    Encoding,
    ExportError,
    pack_inputs,
    parity,
    per_column_model,
    to_onnx as classifier_to_onnx,
)
from steps.modeling.onnx_encoding import single_encoder_model
from steps.modeling.onnx_graph import append_sigmoid

logger = logging.getLogger(__name__)


REGRESSOR_OUTPUT = "variable"


def _register_regressors() -> None:
    """Teach skl2onnx to convert ``LGBMRegressor`` with onnxmltools' converter (idempotent)."""
    from lightgbm import LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_regressor_output_shapes

    update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes,
                                convert_lightgbm)


def _per_column_student(pipeline: Pipeline, spec: DatasetConfig, target_opset: int) -> Any:
    """skl2onnx's graph of the student (one encoder per categorical column) + Sigmoid, on the packed inputs."""
    graph = Pipeline([*pipeline.steps[:-1], ("model", pipeline[-1].regressor_)])
    onx = per_column_model(graph, spec, {}, target_opset)
    outputs = [o.name for o in onx.graph.output]
    if len(outputs) != 1:
        raise ExportError(f"student {type(graph[-1]).__name__} graph has outputs {outputs}, expected one "
                          "regression output")
    return pack_inputs(append_sigmoid(onx, outputs[0]), spec)


def student_to_onnx(pipeline: Pipeline, spec: DatasetConfig, target_opset: int = TARGET_OPSET,
                    encoding: Encoding = "single") -> bytes:
    """A fitted student pipeline as ONNX bytes: preprocessing + regressor + Sigmoid, output ``probabilities``.

    ``encoding="single"``: all categoricals through one encoder (``steps.modeling.onnx_encoding``) where the
    preprocessing allows it; otherwise (and with ``"per_column"``) skl2onnx's graph, one encoder per column.
    """
    import onnx

    if not isinstance(pipeline[-1], DistilledClassifier):
        raise ExportError(f"not a student pipeline: last step is {type(pipeline[-1]).__name__}")
    _register_regressors()
    regressor = pipeline[-1].regressor_
    name = type(regressor).__name__
    model = single_encoder_model(pipeline, spec, regressor, True, target_opset) if encoding == "single" else None
    used = "single" if model is not None else "per-column"
    if model is None:
        model = _per_column_student(pipeline, spec, target_opset)
    onnx.checker.check_model(model)
    blob = model.SerializeToString()
    logger.info("exported student %s to ONNX (%s encoding, %d nodes, %d bytes)", name, used, len(model.graph.node),
                len(blob))
    return blob


def to_onnx(pipeline: Pipeline, spec: DatasetConfig, encoding: Encoding = "single") -> bytes:
    """ONNX bytes of a teacher (``steps.modeling.onnx.to_onnx``) or a student (:func:`student_to_onnx`)."""
    if isinstance(pipeline[-1], DistilledClassifier):
        return student_to_onnx(pipeline, spec, encoding=encoding)
    return classifier_to_onnx(pipeline, spec, encoding=encoding)


def one_column_weights(model: Any) -> list[str]:
    """Nodes whose weight matrix has a single output column (a linear model's coefficients, an MLP's last layer):
    int8 saves nothing there and costs precision, so :func:`quantize` leaves them in float."""
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        weight = {"Gather": 0, "MatMul": 1}.get(node.op_type)
        shape = dims.get(node.input[weight]) if weight is not None and len(node.input) > weight else None
        if shape is not None and len(shape) == 2 and shape[1] == 1:
            out.append(node.name)
    return out


def quantize(onnx_bytes: bytes) -> tuple[bytes, dict[str, Any]]:
    """Dynamic int8 quantization (``quantize_dynamic``, QInt8 weights: MatMul, and Gather tables such as the
    single-encoder first layer), single-column weights excepted; returns (bytes, what changed)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = one_column_weights(onnx.load_from_string(onnx_bytes))
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        src.write_bytes(onnx_bytes)
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, nodes_to_exclude=keep)
        out = dst.read_bytes()

    ops = sorted({n.op_type for n in onnx.load_from_string(out).graph.node}
                 - {n.op_type for n in onnx.load_from_string(onnx_bytes).graph.node})
    info = {"size_bytes": len(onnx_bytes), "quantized_size_bytes": len(out),
            "size_ratio": len(out) / len(onnx_bytes), "new_ops": ops, "changed": bool(ops)}
    logger.info("quantize_dynamic: %d -> %d bytes, new ops %s", len(onnx_bytes), len(out), ops or "none")
    return out, info


def explain_quantization(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quantization record, with a note when ``quantize_dynamic`` changed nothing (no weights to quantize)."""
    if info is None or info["changed"]:
        return info
    return {**info, "note": "quantize_dynamic changed nothing: no MatMul/Gather weights with more than one output "
                            "column (a tree ensemble, or a linear model, left in float); the int8 graph is the "
                            "float graph"}


def parity_check(native: np.ndarray, onnx: np.ndarray, threshold: float, tolerance: float,
                 max_flip_rate: float) -> dict[str, Any]:
    """``parity`` plus the verdict: max |diff| <= tolerance and flips <= max_flip_rate x rows."""
    result = parity(native, onnx, threshold)
    allowed = int(np.floor(max_flip_rate * result["rows"]))
    result.update(tolerance=float(tolerance), allowed_flips=allowed, max_flip_rate=float(max_flip_rate),
                  passed=bool(result["max_abs_diff"] <= tolerance and result["decision_flips"] <= allowed))
    return result
