"""Graphs that encode every categorical column at once: a node count that does not grow with the columns.

skl2onnx converts an ``OrdinalEncoder``/``OneHotEncoder`` column by column (one string ``LabelEncoder`` per column,
and for one-hot a dense matrix that feeds a ``MatMul``): with 30 categoricals that is most of a small model's cost.
Even one string encoder for all columns leaves ONNX Runtime copying m Python strings into a string tensor per row,
which costs more than a small model (``bench_distill``, many-categoricals table). So these graphs read no strings:
their input ``categorical_codes`` (int64 [N, m]) holds each column's level as its position in that column's fitted
levels (``len(levels)`` for a value the column never saw, missing included when it is not a level), the levels
being in the graph's metadata (``categorical_levels``) for the scorer, which maps strings or pandas/Arrow
dictionary codes to positions before the graph (``onnx.OnnxScorer.feed``). Adding the constant ``j * W`` to column
j (W: the most levels of any column, plus one) gives a flat index into a per-(column, level) table, read by one
``Gather``:

* ordinal codes (tree models): the table holds each level's code in its column, ``unknown_value`` (-1) elsewhere,
  exactly sklearn's ``OrdinalEncoder(handle_unknown="use_encoded_value")``; the codes are concatenated with the
  numeric columns in front of the converted estimator (LightGBM, random forest, ...).
* one-hot into a first layer (Ridge, LogisticRegression, MLPRegressor): the table holds each level's row in the
  one-hot space (a zero row for unknown, as ``handle_unknown="ignore"``); a second ``Gather`` of those rows of the
  first layer's weights, summed over the m columns, equals ``onehot @ W`` without the one-hot matrix.

The numeric block (median imputation, standard scaling or passthrough) is written as plain ops. Anything else
(missing indicators, infrequent levels, ``drop``, an estimator with a one-hot input but no known layers) gives
``None``: the caller converts column by column instead (string input, one encoder per column).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from steps.config.dataset import DatasetConfig
from steps.modeling.onnx_graph import (
    CATEGORICAL_CODES,
    IR_VERSION,
    NUMERIC_INPUT,
    OUTPUT,
    Builder,
    ExportError,
    append_sigmoid,
    convert_estimator,
    is_cleaner,
    opsets,
    packed_inputs,
    set_columns_metadata,
)

logger = logging.getLogger(__name__)


PREFIX = "enc_"


ACTIVATIONS = {"identity": None, "relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid"}


Layer = tuple[np.ndarray, np.ndarray, str]  # weights [n_in, n_out], bias [n_out], activation after it


@dataclass(frozen=True)
class Block:
    """One transformer of the ColumnTransformer: numeric steps or a categorical encoder, and its output width."""

    kind: Literal["num", "cat"]
    steps: tuple[Any, ...]
    width: int


def _is_identity(step: Any) -> bool:
    """True for a step that passes its input through (a fitted ColumnTransformer's 'passthrough')."""
    return isinstance(step, FunctionTransformer) and step.func is None


def _numeric_steps(transformer: Any, k: int) -> tuple[Any, ...] | None:
    """The fitted imputer/scaler steps of the numeric transformer; None when one is not written here."""
    if isinstance(transformer, str):
        return () if transformer == "passthrough" else None
    steps = tuple(s for _, s in transformer.steps) if isinstance(transformer, Pipeline) else (transformer,)
    steps = tuple(s for s in steps if not _is_identity(s))
    for step in steps:
        if isinstance(step, SimpleImputer):
            stats = np.asarray(step.statistics_, dtype=float)
            if step.add_indicator or stats.shape != (k,) or not np.isfinite(stats).all() or \
                    not (isinstance(step.missing_values, float) and np.isnan(step.missing_values)):
                return None
        elif not isinstance(step, StandardScaler):
            return None
    return steps


def _encoder(transformer: Any) -> Any:
    """The categorical transformer's encoder (the cleaner runs before the graph); None when not written here."""
    steps = [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
    steps = [s for s in steps if not is_cleaner(s)]
    if len(steps) != 1 or getattr(steps[0], "_infrequent_enabled", False):
        return None
    encoder = steps[0]
    if isinstance(encoder, OrdinalEncoder):
        unknown = encoder.unknown_value if encoder.handle_unknown == "use_encoded_value" else -1
        return encoder if isinstance(unknown, int | np.integer) else None  # NaN codes: not in an int table
    if isinstance(encoder, OneHotEncoder) and encoder.drop is None and encoder.handle_unknown == "ignore":
        return encoder
    return None


def _block(kind: Literal["num", "cat"], transformer: Any, width: int) -> Block | None:
    """The block of one fitted transformer over ``width`` columns; None when this module does not write it."""
    if kind == "num":
        steps = _numeric_steps(transformer, width)
        return None if steps is None else Block(kind, steps, width)
    encoder = _encoder(transformer)
    if encoder is None:
        return None
    if isinstance(encoder, OneHotEncoder):
        width = sum(len(c) for c in encoder.categories_)
    return Block(kind, (encoder,), width)


def layout(pre: Any, spec: DatasetConfig) -> list[Block] | None:
    """The ColumnTransformer's blocks in output order, when every one is written by this module; else None."""
    if not isinstance(pre, ColumnTransformer):
        return None
    groups: dict[Literal["num", "cat"], list[str]] = {"num": list(spec.numeric), "cat": list(spec.categorical)}
    blocks = []
    for _, transformer, columns in pre.transformers_:
        names = list(columns) if isinstance(columns, list | tuple | np.ndarray) else None
        if (isinstance(transformer, str) and transformer == "drop") or names == []:
            continue
        kind = next((k for k, cols in groups.items() if cols and names == cols), None)
        block = None if kind is None else _block(kind, transformer, len(groups[kind]))
        if block is None:
            return None
        blocks.append(block)
    if sorted(b.kind for b in blocks) != sorted(k for k, cols in groups.items() if cols):
        return None  # a group of columns the preprocessing drops, or reads twice
    return blocks


def levels(encoder: Any) -> list[list[str]]:
    """Each column's fitted levels as the strings the cleaned input holds."""
    return [[str(level) for level in column] for column in encoder.categories_]


def _int_type(low: int, high: int) -> Any:
    """The smallest signed integer NumPy type holding ``low`` .. ``high``."""
    return next(t for t in (np.int8, np.int16, np.int32, np.int64)
                if np.iinfo(t).min <= low and high <= np.iinfo(t).max)


def level_lookup(b: Builder, values: list[np.ndarray], unknown: int, to: int) -> str:
    """[N, m] tensor of ONNX type ``to``: ``values[j][i]`` where column j's code is i (its level i),
    ``unknown`` where the code is ``len(values[j])`` (a level the column never saw).

    A per-column offset added to the codes, one Gather from an integer table of m x W entries (W: the longest
    column plus one) in the smallest integer type that holds them, one Cast.
    """
    width = max(len(v) for v in values) + 1
    high = max([unknown, *[int(np.max(v)) for v in values if len(v)]])
    low = min([unknown, *[int(np.min(v)) for v in values if len(v)]])
    table = np.full((len(values), width), unknown, dtype=_int_type(low, high))
    for j, vals in enumerate(values):
        table[j, :len(vals)] = vals
    offsets = b.const("column_offsets", (np.arange(len(values), dtype=np.int64) * width).reshape(1, -1))
    flat = b.op("Add", [CATEGORICAL_CODES, offsets], "flat_index")
    found = b.op("Gather", [b.const("level_table", table.ravel()), flat], "lookup", axis=0)
    return b.op("Cast", [found], "looked_up", to=to)


def numeric_block(b: Builder, steps: tuple[Any, ...]) -> str:
    """The numeric input through the fitted imputer and scaler steps, as float32 [N, k]."""
    x = NUMERIC_INPUT
    for step in steps:
        if isinstance(step, SimpleImputer):
            stats = b.const("impute_value", np.asarray(step.statistics_, dtype=np.float32).reshape(1, -1))
            x = b.op("Where", [b.op("IsNaN", [x], "is_missing"), stats, x], "imputed")
            continue
        if step.with_mean:  # with_mean=False still fits mean_, but transform does not subtract it
            x = b.op("Sub", [x, b.const("scale_mean", step.mean_.astype(np.float32).reshape(1, -1))], "centred")
        if step.with_std:
            x = b.op("Div", [x, b.const("scale_std", step.scale_.astype(np.float32).reshape(1, -1))], "scaled")
    return x


def ordinal_codes(b: Builder, encoder: OrdinalEncoder) -> str:
    """Every column's ordinal code (float32 [N, m]), ``unknown_value`` for a level the column never saw."""
    from onnx import TensorProto

    columns = levels(encoder)
    unknown = encoder.unknown_value if encoder.handle_unknown == "use_encoded_value" else -1
    # an integer table, cast to float after the lookup: quantize_dynamic leaves it be
    return level_lookup(b, [np.arange(len(c)) for c in columns], unknown, TensorProto.FLOAT)


def linear_layers(estimator: Any, logit: bool) -> list[Layer] | None:
    """The estimator as dense layers whose output is a logit: a regressor of the logit (``logit``) or a binary
    logistic regression's decision function; None for any other estimator."""
    if logit == isinstance(estimator, LogisticRegression):  # a classifier where a regressor is due, or the reverse
        return None
    if isinstance(estimator, MLPRegressor):
        if estimator.n_outputs_ != 1 or estimator.out_activation_ != "identity":
            return None
        last = len(estimator.coefs_) - 1
        return [(np.asarray(w), np.asarray(c), "identity" if i == last else estimator.activation)
                for i, (w, c) in enumerate(zip(estimator.coefs_, estimator.intercepts_, strict=True))]
    binary = isinstance(estimator, LogisticRegression) and len(estimator.classes_) == 2
    if binary or (isinstance(estimator, Ridge | LinearRegression) and np.size(estimator.intercept_) == 1):
        coef = np.asarray(estimator.coef_, dtype=float).reshape(-1, 1)
        return [(coef, np.atleast_1d(np.asarray(estimator.intercept_, dtype=float)).reshape(1), "identity")]
    return None


def _first_layer(b: Builder, blocks: list[Block], weights: np.ndarray) -> list[str]:
    """``x @ weights`` of the preprocessed input, per block: a MatMul for the numbers, a row Gather for one-hot."""
    from onnx import TensorProto

    parts, row = [], 0
    for block in blocks:
        w = weights[row:row + block.width].astype(np.float32)
        row += block.width
        if block.kind == "num":
            parts.append(b.op("MatMul", [numeric_block(b, block.steps), b.const("weights_num", w)], "num_product"))
            continue
        columns = levels(block.steps[0])
        starts = np.cumsum([0, *[len(c) for c in columns[:-1]]])
        rows = level_lookup(b, [s + np.arange(len(c)) for s, c in zip(starts, columns, strict=True)], block.width,
                            TensorProto.INT32)
        table = b.const("weights_cat", np.vstack([w, np.zeros((1, w.shape[1]), np.float32)]))
        picked = b.op("Gather", [table, rows], "picked_rows", axis=0)
        parts.append(b.op("ReduceSum", [picked, b.const("axis", np.array([1], np.int64))], "cat_product",
                          keepdims=0))
    return parts


def _dense(b: Builder, parts: list[str], bias: np.ndarray, activation: str) -> str:
    """``activation(sum(parts) + bias)``."""
    x = parts[0]
    for part in parts[1:]:
        x = b.op("Add", [x, part], "sum")
    x = b.op("Add", [x, b.const("bias", bias.astype(np.float32).reshape(1, -1))], "layer")
    op = ACTIVATIONS[activation]
    return b.op(op, [x], activation) if op else x


def layers_logit(b: Builder, blocks: list[Block], layers: list[Layer]) -> str:
    """The logit of a dense-layer model on the preprocessed input, as float32 [N, 1]."""
    weights, bias, activation = layers[0]
    x = _dense(b, _first_layer(b, blocks, weights), bias, activation)
    for weights, bias, activation in layers[1:]:
        product = b.op("MatMul", [x, b.const("weights", weights.astype(np.float32))], "product")
        x = _dense(b, [product], bias, activation)
    return x


def _model(b: Builder, spec: DatasetConfig, output: str, target_opset: int) -> Any:
    """A model of the builder's nodes on the packed inputs, with ``output`` (float [N, ?]) as its only output."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(b.nodes, "single_encoder", packed_inputs(spec, codes=True),
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, None])],
                              initializer=b.initializers)
    return helper.make_model(graph, opset_imports=opsets(target_opset), ir_version=IR_VERSION)


def _with_estimator(b: Builder, blocks: list[Block], estimator: Any, spec: DatasetConfig, target_opset: int) -> Any:
    """Preprocessing nodes (numbers, ordinal codes) feeding the converted bare estimator, on the packed inputs."""
    parts = [numeric_block(b, block.steps) if block.kind == "num" else ordinal_codes(b, block.steps[0])
             for block in blocks]
    features = b.op("Concat", parts, "features", axis=1)
    model = convert_estimator(estimator, features, sum(block.width for block in blocks), target_opset)
    graph = model.graph
    clash = {n for node in graph.node for n in node.output if n.startswith(PREFIX)}
    if clash:
        raise ExportError(f"converted {type(estimator).__name__} uses tensor names {sorted(clash)} of the encoder")
    nodes = [*b.nodes, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(b.initializers)
    del graph.input[:]
    graph.input.extend(packed_inputs(spec, codes=True))
    domains = {o.domain for o in model.opset_import} - {"", "ai.onnx.ml"}
    keep = [o for o in model.opset_import if o.domain in domains]
    del model.opset_import[:]
    model.opset_import.extend([*opsets(target_opset), *keep])
    model.ir_version = IR_VERSION
    return model


def single_encoder_model(pipeline: Pipeline, spec: DatasetConfig, estimator: Any, logit: bool,
                         target_opset: int) -> Any:
    """ONNX model of ``pipeline``'s preprocessing + ``estimator`` on the packed inputs with one categorical encoder.

    ``logit``: the estimator predicts a logit (a student's regressor); the graph then ends in ``[1 - s, s]`` with
    s = sigmoid. Otherwise the estimator is the binary classifier and the graph outputs its ``probabilities``.
    None when the preprocessing or the estimator is not one this module writes (the caller converts column by
    column).
    """
    name = type(estimator).__name__
    blocks = layout(pipeline[0], spec)
    if blocks is None:
        logger.info("%s: preprocessing not written by onnx_encoding (missing indicators, infrequent levels, ...)",
                    name)
        return None
    layers = linear_layers(estimator, logit)
    one_hot = any(b.kind == "cat" and isinstance(b.steps[0], OneHotEncoder) for b in blocks)
    if layers is None and one_hot:
        logger.info("%s: one-hot input into an estimator not written as dense layers by onnx_encoding", name)
        return None
    if layers is not None and (one_hot or not any(b.kind == "cat" for b in blocks)):
        b = Builder(PREFIX)
        model = _model(b, spec, layers_logit(b, blocks, layers), target_opset)
        model = append_sigmoid(model, model.graph.output[0].name)
    else:
        model = _with_estimator(Builder(PREFIX), blocks, estimator, spec, target_opset)
        outputs = [o.name for o in model.graph.output]
        if logit:
            if len(outputs) != 1:
                raise ExportError(f"{name} graph has outputs {outputs}, expected one regression output")
            model = append_sigmoid(model, outputs[0])
        elif OUTPUT not in outputs:
            raise ExportError(f"converted {name} has outputs {outputs}, expected '{OUTPUT}'")
    categorical = [block.steps[0] for block in blocks if block.kind == "cat"]
    set_columns_metadata(model, spec, levels(categorical[0]) if categorical else None)
    return model
