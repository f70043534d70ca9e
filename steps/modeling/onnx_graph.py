"""What every ONNX graph of the project shares: opsets and tensor names, the packed inputs and their column metadata,
a small node builder, the Sigmoid head, and the conversion of a bare estimator (see ``steps.modeling.onnx``).

Tensor names inside a graph are never the user's column names (skl2onnx rewrites names it does not like, and two
names can collide once rewritten): the packed inputs have fixed names, a per-column tensor is ``c<position>``
(:func:`safe_names`), and the column names live only in the metadata.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sklearn.preprocessing import FunctionTransformer

from steps.config.dataset import DatasetConfig
from steps.modeling.features import _to_str

TARGET_OPSET = 15  # the LightGBM converter of onnxmltools 1.16 supports main opsets up to 15


ML_OPSET = 3


IR_VERSION = 8  # the IR version of opset 15; graphs written here declare it


OUTPUT = "probabilities"


NUMERIC_INPUT, CATEGORICAL_INPUT = "numeric_inputs", "categorical_inputs"


CATEGORICAL_CODES = "categorical_codes"  # int64 [N, m]: each categorical as its position in the graph's levels


COLUMNS_KEY = {NUMERIC_INPUT: "numeric_columns", CATEGORICAL_INPUT: "categorical_columns",
               CATEGORICAL_CODES: "categorical_columns"}


LEVELS_KEY = "categorical_levels"  # metadata of a graph reading codes: each categorical's levels (JSON lists)


class ExportError(RuntimeError):
    """The model cannot be converted to ONNX, or the converted graph disagrees with the native model."""


def is_cleaner(step: Any) -> bool:
    """True for the pipeline's categorical cleaner (``features.categorical_cleaner``)."""
    return isinstance(step, FunctionTransformer) and step.func is _to_str


def safe_names(spec: DatasetConfig) -> dict[str, str]:
    """Each feature column's tensor name inside a graph: ``c<position in spec.features>``."""
    return {column: f"c{i}" for i, column in enumerate(spec.features)}


def packed_columns(spec: DatasetConfig, codes: bool = False) -> dict[str, list[str]]:
    """The packed inputs a graph of ``spec`` takes, with their columns in order (an empty group has no input);
    ``codes``: the categoricals come as level positions (``categorical_codes``), not strings."""
    groups = {NUMERIC_INPUT: list(spec.numeric), CATEGORICAL_CODES if codes else CATEGORICAL_INPUT:
              list(spec.categorical)}
    return {name: columns for name, columns in groups.items() if columns}


def packed_inputs(spec: DatasetConfig, codes: bool = False) -> list[Any]:
    """The graph inputs of the convention: ``numeric_inputs`` float32 [N, k], and ``categorical_inputs`` string
    [N, m] or (``codes``) ``categorical_codes`` int64 [N, m]."""
    from onnx import TensorProto, helper

    kinds = {NUMERIC_INPUT: TensorProto.FLOAT, CATEGORICAL_INPUT: TensorProto.STRING,
             CATEGORICAL_CODES: TensorProto.INT64}
    return [helper.make_tensor_value_info(name, kinds[name], [None, len(columns)])
            for name, columns in packed_columns(spec, codes).items()]


def set_columns_metadata(model: Any, spec: DatasetConfig, levels: list[list[str]] | None = None) -> None:
    """Record the user's column names of each packed input (JSON lists) in the model's metadata, and with
    ``levels`` (a graph reading ``categorical_codes``) each categorical's levels in code order."""
    from onnx import helper

    props = {p.key: p.value for p in model.metadata_props}
    props.update({COLUMNS_KEY[name]: json.dumps(columns) for name, columns in packed_columns(spec).items()})
    if levels is not None:
        props[LEVELS_KEY] = json.dumps(levels)
    helper.set_model_props(model, props)


def opsets(target_opset: int) -> list[Any]:
    """The opset imports of a graph written here: the main domain at ``target_opset`` and ``ai.onnx.ml``."""
    from onnx import helper

    return [helper.make_opsetid("", target_opset), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]


class Builder:
    """Nodes and initializers of a graph fragment; every tensor and node name it makes starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        """A fresh name: prefix, a counter and ``hint``."""
        self._count += 1
        return f"{self.prefix}{self._count}_{hint}"

    def const(self, hint: str, value: np.ndarray) -> str:
        """Add ``value`` as an initializer; returns its name."""
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, domain: str = "", **attrs: Any) -> str:
        """Add one node with one output; returns the output's name."""
        from onnx import helper

        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{out}_node", domain=domain, **attrs))
        return out


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


def convert_estimator(estimator: Any, input_name: str, width: int, target_opset: int) -> Any:
    """The ONNX model of a bare fitted estimator reading ``input_name`` (float32 [N, width]); classifiers output
    ``probabilities`` without ZipMap. ExportError (naming the estimator) when skl2onnx cannot convert it."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    try:
        return convert_sklearn(estimator, initial_types=[(input_name, FloatTensorType([None, width]))],
                               target_opset={"": target_opset, "ai.onnx.ml": ML_OPSET}, options=options)
    except Exception as err:  # skl2onnx raises many types; the message must say which model failed
        raise ExportError(f"cannot convert {type(estimator).__name__} to ONNX: {type(err).__name__}: "
                          f"{str(err).splitlines()[0][:300]}") from err
