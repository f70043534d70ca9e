"""ONNX export of a fitted model pipeline (preprocessing included), an ONNX Runtime scorer, and parity checks.

Graph input convention (every flow that produces ONNX follows it): the raw feature columns packed into two inputs,
``numeric_inputs`` (``float32 [None, k]``, the dataset's numeric columns in config order) and the categoricals in
config order, either as ``categorical_codes`` (``int64 [None, m]``: each value's position in the column's fitted
levels, which the metadata holds as ``categorical_levels``) or as ``categorical_inputs`` (``string [None, m]``);
the column names are stored in the model's metadata (``numeric_columns``, ``categorical_columns``: JSON lists) and
nowhere else: tensor names inside
a graph are generated (``onnx_graph.safe_names``), so any column name works (hyphens, quotes, spaces, unicode,
names that collide once skl2onnx has sanitized them). The output ``probabilities`` is ``[None, 2]`` (no ZipMap).
Two inputs instead of one per column is what makes a single-row call cheap: ONNX Runtime's per-call cost grows with
the number of inputs it binds (about 1 us each, measured in bench_distill). Graphs with one input per column (the
convention before) are still scored.

When the preprocessing is the project's (``features.preprocessor`` without missing indicators), the graph reads
codes and encodes all categoricals with one table lookup (``onnx_encoding``: the node count does not grow with the
number of columns, and ONNX Runtime copies no strings); otherwise skl2onnx converts it column by column from
strings, a ``Split`` giving each column back its own ``[None, 1]`` tensor (``encoding="per_column"`` asks for that
graph).

The pipeline's ``categorical_cleaner`` (a ``FunctionTransformer``; skl2onnx cannot convert it) is left out of the
graph: :class:`OnnxScorer` applies the very same function (``features._to_str``: None, NaN and '' become
``features.MISSING``, everything else ``str``) before it feeds the strings or maps them to level positions (once
per distinct value, or per category of a pandas categorical), so the graph starts at the encoder.
Numbers are fed as float32, so a value within float32 rounding of a split threshold can land on the other side:
:func:`parity` measures that against the native pipeline (max |diff| and decision flips at a threshold).

Convertible today: LightGBM (onnxmltools' converter, ``target_opset`` <= 15 for it), logistic regression without
missing indicators (``impute: false``), random forest (sklearn routes NaN in trees; the ONNX tree ensemble does not,
so parity fails on rows with missing values). Anything else raises :class:`ExportError`; runtime ``native`` always
works.

"""

from __future__ import annotations

import copy
import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from steps.config.dataset import DatasetConfig
from steps.modeling.features import MISSING, _clean_levels, _to_str
from steps.modeling.onnx_encoding import single_encoder_model
from steps.modeling.onnx_graph import (
    CATEGORICAL_CODES,
    CATEGORICAL_INPUT,
    COLUMNS_KEY,
    LEVELS_KEY,
    ML_OPSET,
    NUMERIC_INPUT,
    OUTPUT,
    TARGET_OPSET,
    ExportError,
    is_cleaner,
    packed_columns,
    packed_inputs,
    safe_names,
    set_columns_metadata,
)

logger = logging.getLogger(__name__)


Encoding = Literal["single", "per_column"]


def _register_lightgbm() -> None:
    """Teach skl2onnx to convert ``LGBMClassifier`` with onnxmltools' converter (idempotent)."""
    from lightgbm import LGBMClassifier
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})


def _without_cleaner(transformer: Any, name: str) -> Any:
    """``transformer`` with the categorical cleaner removed (it runs in :class:`OnnxScorer` instead)."""
    if not isinstance(transformer, Pipeline):
        if is_cleaner(transformer):
            raise ExportError(f"transformer '{name}' is only the categorical cleaner; nothing left to convert")
        return transformer
    steps = [(n, s) for n, s in transformer.steps if not is_cleaner(s)]
    for step_name, step in steps:
        if isinstance(step, FunctionTransformer):
            raise ExportError(f"transformer '{name}' step '{step_name}' is a FunctionTransformer "
                              f"({getattr(step.func, '__name__', step.func)}); skl2onnx cannot convert it")
        if getattr(step, "add_indicator", False):
            raise ExportError(f"transformer '{name}' step '{step_name}': SimpleImputer(add_indicator=True) has no "
                              "skl2onnx converter (a linear candidate with impute: true); use runtime native")
    return steps[0][1] if len(steps) == 1 else Pipeline(steps)


def graph_pipeline(pipeline: Pipeline, names: dict[str, str] | None = None) -> Pipeline:
    """A copy of ``pipeline`` whose preprocessing skl2onnx can convert (categorical cleaning taken out), its column
    lists renamed by ``names`` (the graph's tensor names, :func:`safe_names`) when given."""
    if not isinstance(pipeline, Pipeline) or not isinstance(pipeline[0], ColumnTransformer):
        raise ExportError(f"expected Pipeline(ColumnTransformer, estimator), got {type(pipeline).__name__}")
    out = copy.deepcopy(pipeline)
    pre = out[0]
    pre.transformers_ = [(name, tr if tr in ("drop", "passthrough") else _without_cleaner(tr, name),
                          _renamed(cols, names)) for name, tr, cols in pre.transformers_]
    return out


def _renamed(columns: Any, names: dict[str, str] | None) -> Any:
    """A ColumnTransformer column selection with every column name replaced by ``names[name]``."""
    if names is None:
        return columns
    if isinstance(columns, str):
        return names.get(columns, columns)
    if isinstance(columns, list | tuple | np.ndarray):
        return [names.get(c, c) if isinstance(c, str) else c for c in columns]
    return columns


def initial_types(spec: DatasetConfig) -> list[tuple[str, Any]]:
    """The per-column graph inputs skl2onnx converts from: ``[None, 1]`` per raw feature, float32 numeric, string
    categorical, named by :func:`safe_names` (never the column names: skl2onnx rewrites some, and they can clash)."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    names = safe_names(spec)
    return ([(names[c], FloatTensorType([None, 1])) for c in spec.numeric]
            + [(names[c], StringTensorType([None, 1])) for c in spec.categorical])


def pack_inputs(model: Any, spec: DatasetConfig) -> Any:
    """Replace the graph's per-column inputs (:func:`initial_types`) by the two packed inputs of the convention."""
    from onnx import helper

    graph = model.graph
    names = safe_names(spec)
    packed = {name: [names[c] for c in columns] for name, columns in packed_columns(spec).items()}
    nodes = [helper.make_node("Split", [name], columns, axis=1, name=f"unpack_{name}") if len(columns) > 1
             else helper.make_node("Identity", [name], columns, name=f"unpack_{name}")
             for name, columns in packed.items()]
    body = _reuse_packed(list(graph.node), packed)
    used = {name for node in body for name in node.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend([*[n for n in nodes if used & set(n.output)], *body])  # an unpack nobody reads is dropped
    del graph.input[:]
    graph.input.extend(packed_inputs(spec))
    set_columns_metadata(model, spec)
    return model


def _reuse_packed(nodes: list[Any], packed: dict[str, list[str]]) -> list[Any]:
    """``nodes`` with every column-wise ``Concat`` of exactly one packed input's columns, in order, reading that
    input directly (skl2onnx concatenates the numeric columns right back: unpacking them was wasted work)."""
    from onnx import helper

    out = []
    for node in nodes:
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        source = next((name for name, cols in packed.items() if list(node.input) == cols), None)
        if node.op_type == "Concat" and axis in (1, -1) and source is not None:
            node = helper.make_node("Identity", [source], list(node.output), name=node.name or f"reuse_{source}")
        out.append(node)
    return out


def per_column_model(pipeline: Pipeline, spec: DatasetConfig, estimator_options: dict[str, Any],
                     target_opset: int = TARGET_OPSET) -> Any:
    """skl2onnx's conversion of ``pipeline`` (cleaner taken out), one encoder per categorical column, with one
    ``[None, 1]`` input per column named by :func:`safe_names` (:func:`pack_inputs` packs them)."""
    from skl2onnx import convert_sklearn

    graph = graph_pipeline(pipeline, safe_names(spec))
    estimator = type(graph[-1]).__name__
    try:
        return convert_sklearn(graph, initial_types=initial_types(spec),
                               target_opset={"": target_opset, "ai.onnx.ml": ML_OPSET},
                               options={id(graph[-1]): estimator_options} if estimator_options else None)
    except Exception as err:  # skl2onnx raises many types; the message must say which model failed
        raise ExportError(f"cannot convert {estimator} to ONNX: {type(err).__name__}: "
                          f"{str(err).splitlines()[0][:300]}") from err


def to_onnx(pipeline: Pipeline, spec: DatasetConfig, target_opset: int = TARGET_OPSET,
            encoding: Encoding = "single") -> bytes:
    """Convert a fitted pipeline to ONNX bytes following the input convention; ExportError when impossible.

    ``encoding="single"``: one encoder for all categorical columns (``onnx_encoding``) where the preprocessing
    allows it, else (and with ``"per_column"``) skl2onnx's conversion, one encoder per column.
    """
    import onnx

    if target_opset > TARGET_OPSET:
        raise ExportError(f"target_opset {target_opset} > {TARGET_OPSET}, the highest the LightGBM converter takes")
    _register_lightgbm()
    if not isinstance(pipeline, Pipeline) or not isinstance(pipeline[0], ColumnTransformer):
        raise ExportError(f"expected Pipeline(ColumnTransformer, estimator), got {type(pipeline).__name__}")
    estimator = type(pipeline[-1]).__name__
    model = single_encoder_model(pipeline, spec, pipeline[-1], False, target_opset) if encoding == "single" else None
    used = "single" if model is not None else "per-column"
    if model is None:
        model = per_column_model(pipeline, spec, {"zipmap": False}, target_opset)
        names = [o.name for o in model.graph.output]
        if OUTPUT not in names:
            raise ExportError(f"converted {estimator} has outputs {names}, expected '{OUTPUT}'")
        model = pack_inputs(model, spec)
    onnx.checker.check_model(model)
    blob = model.SerializeToString()
    logger.info("exported %s to ONNX (%s encoding, %d nodes, %d bytes, opset %d)", estimator, used,
                len(model.graph.node), len(blob), target_opset)
    return blob


def clean_categorical(values: pd.Series) -> np.ndarray:
    """One categorical column as the graph wants it: ``features._to_str`` applied, as a 1-D object array."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # fast path: clean the few levels, then take by code
        levels = _to_str(np.asarray(values.cat.categories, dtype=object).reshape(-1, 1)).ravel()
        codes = values.cat.codes.to_numpy()
        return np.append(levels, MISSING).astype(object)[np.where(codes < 0, len(levels), codes)]
    return _to_str(values.to_numpy(dtype=object).reshape(-1, 1)).ravel()


def level_table(uniques: Any, positions: dict[str, int]) -> np.ndarray:
    """The position of each cleaned value of ``uniques`` in a graph's levels (``len(positions)``: not a level),
    then that of the missing level: a column's positions are ``table[codes]`` with code -1 for missing."""
    cleaned = np.append(_clean_levels(np.asarray(uniques, dtype=object)), MISSING)
    return np.fromiter((positions.get(level, len(positions)) for level in cleaned), np.int64, len(cleaned))


def level_positions(values: pd.Series, positions: dict[str, int]) -> np.ndarray:
    """One categorical column as its values' positions in a graph's levels (``positions``: level -> position),
    ``len(positions)`` for a value the graph does not know; cleaned once per distinct value (``features._to_str``).
    A pandas categorical (what ScoreFlow reads from Arrow dictionaries) is mapped through its categories."""
    array = values.array
    if isinstance(array, pd.Categorical):
        return level_table(array.categories, positions)[array.codes]
    codes, uniques = pd.factorize(values, use_na_sentinel=True)  # Arrow-backed strings factorize natively
    return level_table(uniques, positions)[codes]


def _metadata(meta: dict[str, str], key: str, graph_input: str) -> str:
    """A metadata entry the graph's input ``graph_input`` needs; ExportError naming both when it is absent."""
    if key not in meta:
        raise ExportError(f"the ONNX graph reads '{graph_input}' but its metadata has no '{key}' (what that input's "
                          f"columns mean); export the model with steps.modeling.onnx, or add the entry; the metadata "
                          f"has {sorted(meta)}")
    return meta[key]


class OnnxScorer:
    """Positive-class probabilities from ONNX bytes with ONNX Runtime; the categorical cleaning (and, for a graph
    reading ``categorical_codes``, the mapping to level positions) happens here."""

    def __init__(self, onnx_bytes: bytes, threads: int = 1) -> None:
        import json

        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy waiting on 2 cores
        self.session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        inputs = {i.name: i.type for i in self.session.get_inputs()}
        meta = self.session.get_modelmeta().custom_metadata_map
        self.packed = {name: json.loads(_metadata(meta, key, name)) for name, key in COLUMNS_KEY.items()
                       if name in inputs}
        self.positions: list[dict[str, int]] | None = None
        if CATEGORICAL_CODES in self.packed:
            self.positions = [{level: i for i, level in enumerate(column)}
                              for column in json.loads(_metadata(meta, LEVELS_KEY, CATEGORICAL_CODES))]
        self._tables: dict[int, tuple[pd.Index, np.ndarray]] = {}  # per column: the last categories seen, mapped
        if self.packed:
            self.numeric = self.packed.get(NUMERIC_INPUT, [])
            self.strings = self.packed.get(CATEGORICAL_CODES, self.packed.get(CATEGORICAL_INPUT, []))
            return
        self.numeric = [n for n, t in inputs.items() if t == "tensor(float)"]  # one input per column (older graphs)
        self.strings = [n for n, t in inputs.items() if t == "tensor(string)"]
        other = [n for n in inputs if n not in {*self.numeric, *self.strings}]
        if other:
            raise ExportError(f"graph inputs {other} are neither float nor string tensors")

    @property
    def features(self) -> list[str]:
        """The raw feature columns the graph reads."""
        return [*self.numeric, *self.strings]

    def feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """The graph's inputs built from raw rows (numeric as float32, categoricals as level positions or cleaned
        strings)."""
        if self.packed:
            out = {}
            if self.numeric:
                out[NUMERIC_INPUT] = np.ascontiguousarray(
                    frame[self.numeric].to_numpy(dtype=np.float32, na_value=np.nan))
            if self.positions is not None:
                out[CATEGORICAL_CODES] = self._codes(frame, self.positions)
            elif self.strings:
                out[CATEGORICAL_INPUT] = np.column_stack([clean_categorical(frame[c]) for c in self.strings])
            return out
        out = {c: frame[c].to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1) for c in self.numeric}
        out.update({c: clean_categorical(frame[c]).reshape(-1, 1) for c in self.strings})
        return out

    def _codes(self, frame: pd.DataFrame, positions: list[dict[str, int]]) -> np.ndarray:
        """The categoricals as level positions, int64 [N, m]; a pandas categorical column's categories are mapped
        once and reused while the next frame has the same ones (ScoreFlow's batches of one file usually do)."""
        out = np.empty((len(frame), len(self.strings)), dtype=np.int64)
        for j, column in enumerate(self.strings):
            array = frame[column].array
            if not isinstance(array, pd.Categorical):
                out[:, j] = level_positions(frame[column], positions[j])
                continue
            seen = self._tables.get(j)
            if seen is None or not (seen[0] is array.categories or seen[0].equals(array.categories)):
                seen = self._tables[j] = (array.categories, level_table(array.categories, positions[j]))
            out[:, j] = seen[1][array.codes]
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probability per row (float64)."""
        if frame.empty:
            return np.empty(0)
        proba = self.session.run([OUTPUT], self.feed(frame))[0]
        return proba[:, 1].astype(np.float64)


def parity(native: np.ndarray, onnx: np.ndarray, threshold: float) -> dict[str, Any]:
    """Max and mean |difference| of two score vectors and the decisions that flip at ``threshold``."""
    native, onnx = np.asarray(native, dtype=float), np.asarray(onnx, dtype=float)
    if native.shape != onnx.shape:
        raise ValueError(f"score vectors differ in shape: {native.shape} vs {onnx.shape}")
    diff = np.abs(native - onnx)
    flips = (native >= threshold) != (onnx >= threshold)
    return {"rows": int(diff.size), "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "mean_abs_diff": float(diff.mean()) if diff.size else 0.0, "decision_flips": int(flips.sum()),
            "threshold": float(threshold)}


def check_parity(pipeline: Pipeline, scorer: OnnxScorer, frame: pd.DataFrame, spec: DatasetConfig,
                 threshold: float, tolerance: float) -> dict[str, Any]:
    """Score ``frame`` both ways; ExportError when the max |diff| exceeds ``tolerance`` or a decision flips."""
    native = pipeline.predict_proba(frame[spec.features])[:, 1]
    result = {**parity(native, scorer.predict(frame), threshold), "tolerance": float(tolerance)}
    if result["max_abs_diff"] > tolerance or result["decision_flips"]:
        raise ExportError(f"ONNX parity failed on {result['rows']} rows: max |diff| {result['max_abs_diff']:.3g} "
                          f"(tolerance {tolerance:g}), {result['decision_flips']} decision flip(s) at "
                          f"{threshold:g}; use runtime native")
    logger.info("ONNX parity on %d rows: max |diff| %.3g, no decision flips", result["rows"], result["max_abs_diff"])
    return result
