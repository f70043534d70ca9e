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
    ML_OPSET,
    OUTPUT,
    TARGET_OPSET,
    ExportError,
    graph_pipeline,
    initial_types,
    pack_inputs,
    parity,
)
from steps.modeling.onnx import to_onnx as classifier_to_onnx

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


def append_sigmoid(model: Any, logit_output: str, output: str = OUTPUT) -> Any:
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


def student_to_onnx(pipeline: Pipeline, spec: DatasetConfig, target_opset: int = TARGET_OPSET) -> bytes:
    """A fitted student pipeline as ONNX bytes: preprocessing + regressor + Sigmoid, output ``probabilities``."""
    import onnx
    from skl2onnx import convert_sklearn

    if not isinstance(pipeline[-1], DistilledClassifier):
        raise ExportError(f"not a student pipeline: last step is {type(pipeline[-1]).__name__}")
    _register_regressors()
    graph = graph_pipeline(pipeline)
    graph.steps[-1] = ("model", graph[-1].regressor_)
    name = type(graph[-1]).__name__
    try:
        onx = convert_sklearn(graph, initial_types=initial_types(spec),
                              target_opset={"": target_opset, "ai.onnx.ml": ML_OPSET})
    except Exception as err:
        raise ExportError(f"cannot convert student {name} to ONNX: {type(err).__name__}: "
                          f"{str(err).splitlines()[0][:300]}") from err
    outputs = [o.name for o in onx.graph.output]
    if len(outputs) != 1:
        raise ExportError(f"student {name} graph has outputs {outputs}, expected one regression output")
    onx = pack_inputs(append_sigmoid(onx, outputs[0]), spec)
    onnx.checker.check_model(onx)
    blob = onx.SerializeToString()
    logger.info("exported student %s to ONNX (%d bytes)", name, len(blob))
    return blob


def to_onnx(pipeline: Pipeline, spec: DatasetConfig) -> bytes:
    """ONNX bytes of a teacher (``steps.modeling.onnx.to_onnx``) or a student (:func:`student_to_onnx`)."""
    if isinstance(pipeline[-1], DistilledClassifier):
        return student_to_onnx(pipeline, spec)
    return classifier_to_onnx(pipeline, spec)


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


def explain_quantization(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """The quantization record, with a note when ``quantize_dynamic`` changed nothing (no MatMul/Gemm weights)."""
    if info is None or info["changed"]:
        return info
    return {**info, "note": "quantize_dynamic changed nothing: no MatMul/Gemm weights (tree ensemble or "
                            "LinearRegressor op); the int8 graph is the float graph"}


def parity_check(native: np.ndarray, onnx: np.ndarray, threshold: float, tolerance: float,
                 max_flip_rate: float) -> dict[str, Any]:
    """``parity`` plus the verdict: max |diff| <= tolerance and flips <= max_flip_rate x rows."""
    result = parity(native, onnx, threshold)
    allowed = int(np.floor(max_flip_rate * result["rows"]))
    result.update(tolerance=float(tolerance), allowed_flips=allowed, max_flip_rate=float(max_flip_rate),
                  passed=bool(result["max_abs_diff"] <= tolerance and result["decision_flips"] <= allowed))
    return result
