"""Any column name through ONNX: hyphens, apostrophes, spaces, dots, unicode, leading digits and names that collide
once sanitized, for the teacher export (LightGBM, logistic regression) and the three student types, in both
encodings (one encoder for all categoricals, and skl2onnx's per-column graph); and the single-encoder graph's size
does not grow with the number of categorical columns."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest

from steps.config import CandidateConfig, DatasetConfig, StudentConfig
from steps.distill.onnx import parity_check, to_onnx as distill_to_onnx
from steps.distill.students import build_student, fit_student, teacher_logits
from steps.modeling import models
from steps.modeling.onnx import CATEGORICAL_CODES, CATEGORICAL_INPUT, NUMERIC_INPUT, OnnxScorer, to_onnx

NAME_SETS = {
    # every kind of name at once; the categoricals' levels come from the config (unicode and quotes included)
    "mixed": (["a-b", "a_b", "3d-shape", "it's", "x.y z"],
              {"größe": ["klein", "groß", "ü-ber"], "o'brien": ["x", "y's"], "cat-1": ["1", "2", "3"],
               "1st.level": ["a b", "c.d"]}),
    # names that collide after naive sanitization, levels learned from the data ('auto')
    "collisions": (["a-b", "a b", "a.b", "a_b"], {"c-d": None, "c_d": None, "c'd": None}),
}
MODELS = ["lightgbm", "logistic_regression", "student_lightgbm", "student_mlp", "student_linear"]
STUDENTS = {
    "lightgbm": StudentConfig(name="lgbm", type="lightgbm", params={"n_estimators": 20, "num_leaves": 7}),
    "mlp": StudentConfig(name="mlp", type="mlp", params={"hidden_layer_sizes": [8], "max_iter": 60}),
    "linear": StudentConfig(name="linear", type="linear"),
}


def _spec(numeric: list[str], categorical: dict[str, list[str] | None]) -> DatasetConfig:
    return DatasetConfig(name="names", path="unused.parquet", time="event_time", target={"name": "label"},
                         numeric={c: {} for c in numeric},
                         categorical={c: {"categories": levels} for c, levels in categorical.items()})


def _frame(spec: DatasetConfig, rows: int, seed: int) -> pd.DataFrame:
    """Random features with a known signal; the categoricals' levels from the config, or 'l0'..'l3'."""
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({c: rng.normal(size=rows) for c in spec.numeric}, index=pd.RangeIndex(rows))
    numbers = out.to_numpy()
    signal = numbers[:, 0] - 0.5 * numbers[:, -1] if spec.numeric else np.zeros(rows)
    for i, (c, rule) in enumerate(spec.categorical.items()):
        levels = rule.categories or [f"l{k}" for k in range(4)]
        out[c] = rng.choice(np.array(levels, dtype=object), rows)
        signal = signal + (out[c] == levels[0]).to_numpy() * (1.0 if i % 2 else -0.7)
    out[spec.target.name] = (signal + rng.normal(0, 0.5, rows) > 0).astype(int)
    return out


def _unusual_rows(frame: pd.DataFrame, spec: DatasetConfig, with_nan: bool) -> pd.DataFrame:
    """``frame`` with missing, empty and never-seen categorical values (and missing numbers when ``with_nan``)."""
    out = frame.copy()
    for i, c in enumerate(spec.categorical):
        column = out[c].astype(object)
        column.iloc[3 * i] = None
        column.iloc[3 * i + 1] = ""
        column.iloc[3 * i + 2] = "never seen-ü"
        out[c] = column
    if with_nan and spec.numeric:
        out.loc[::7, next(iter(spec.numeric))] = np.nan
    return out


@pytest.fixture(scope="module", params=list(NAME_SETS))
def case(request):
    """A spec with unusual names, its train and test frames, and each model fitted on it."""
    spec = _spec(*NAME_SETS[request.param])
    train, test = _frame(spec, 400, 1), _frame(spec, 300, 2)
    fitted = {}
    for kind, params, impute in (("lightgbm", {"n_estimators": 30, "num_leaves": 7, "min_child_samples": 5}, True),
                                 ("logistic_regression", {"C": 1.0}, False)):
        candidate = CandidateConfig(name=kind, type=kind, params=params, impute=impute)
        fitted[kind], _ = models.fit(models.build_pipeline(candidate, spec, 0, 1), train, spec, 1)
    target = teacher_logits(fitted["lightgbm"], train, spec)
    for kind, student in STUDENTS.items():
        fitted[f"student_{kind}"], _ = fit_student(build_student(student, spec, 0), train, target, spec)
    return spec, test, fitted


@pytest.mark.parametrize("encoding", ["single", "per_column"])
@pytest.mark.parametrize("kind", MODELS)
def test_any_column_name_exports_and_matches_native(case, kind, encoding):
    spec, test, fitted = case
    pipeline = fitted[kind]
    export = distill_to_onnx if kind.startswith("student") else to_onnx
    blob = export(pipeline, spec, encoding=encoding)
    if encoding == "single":  # one table lookup reads every categorical's code: no string, nothing unpacked
        ops = [n.op_type for n in onnx.load_from_string(blob).graph.node]
        assert "LabelEncoder" not in ops and "Split" not in ops and ops.count("Add") >= 1
    scorer = OnnxScorer(blob)
    assert scorer.numeric == list(spec.numeric) and scorer.strings == list(spec.categorical)
    frame = _unusual_rows(test, spec, with_nan=kind != "logistic_regression")
    native = pipeline.predict_proba(frame[spec.features])[:, 1]
    result = parity_check(native, scorer.predict(frame), 0.5, 1e-4, 1e-4)
    assert result["passed"] and result["max_abs_diff"] <= 1e-4, result


@pytest.mark.parametrize("kind", ["lightgbm", "student_mlp"])
def test_user_names_live_only_in_the_metadata(case, kind):
    spec, _, fitted = case
    export = distill_to_onnx if kind.startswith("student") else to_onnx
    for encoding in ("single", "per_column"):
        model = onnx.load_from_string(export(fitted[kind], spec, encoding=encoding))
        meta = {p.key: json.loads(p.value) for p in model.metadata_props}
        levels = meta.pop("categorical_levels", None)
        assert meta == {"numeric_columns": list(spec.numeric), "categorical_columns": list(spec.categorical)}
        codes = encoding == "single"
        assert [i.name for i in model.graph.input] == [NUMERIC_INPUT, CATEGORICAL_CODES if codes else CATEGORICAL_INPUT]
        assert (levels is not None) == codes
        if codes:  # the levels a person reads are the user's own, unicode and quotes included
            assert [set(col) - {"__missing__"} for col in levels] == [
                set(rule.categories or [f"l{k}" for k in range(4)]) for rule in spec.categorical.values()]
        tensors = {name for node in model.graph.node for name in [*node.input, *node.output]}
        assert not tensors & set(spec.features)


@pytest.mark.parametrize("groups", ["numeric_only", "categorical_only"])
def test_a_dataset_with_one_kind_of_column_exports(groups):
    numeric, categorical = NAME_SETS["mixed"]
    spec = _spec(numeric, {}) if groups == "numeric_only" else _spec([], categorical)
    train, test = _frame(spec, 400, 3), _frame(spec, 200, 4)
    candidate = CandidateConfig(name="t", type="lightgbm", params={"n_estimators": 20, "min_child_samples": 5})
    teacher, _ = models.fit(models.build_pipeline(candidate, spec, 0, 1), train, spec, 1)
    target = teacher_logits(teacher, train, spec)
    pipelines = [teacher] + [fit_student(build_student(s, spec, 0), train, target, spec)[0]
                             for s in STUDENTS.values()]
    for pipeline in pipelines:
        scorer = OnnxScorer(distill_to_onnx(pipeline, spec))
        assert list(scorer.packed) == ([NUMERIC_INPUT] if groups == "numeric_only" else [CATEGORICAL_CODES])
        native = pipeline.predict_proba(test[spec.features])[:, 1]
        assert parity_check(native, scorer.predict(test), 0.5, 1e-4, 1e-4)["passed"]


def _node_counts(categoricals: int) -> dict[str, dict[str, int]]:
    """Graph node counts per model and encoding for a dataset with two numbers and ``categoricals`` columns."""
    spec = _spec(["n-1", "n-2"], {f"c-{j}": None for j in range(categoricals)})
    train = _frame(spec, 300, 5)
    candidate = CandidateConfig(name="t", type="lightgbm", params={"n_estimators": 10, "min_child_samples": 5})
    teacher, _ = models.fit(models.build_pipeline(candidate, spec, 0, 1), train, spec, 1)
    target = teacher_logits(teacher, train, spec)
    pipelines = {"teacher": teacher, **{kind: fit_student(build_student(s, spec, 0), train, target, spec)[0]
                                        for kind, s in STUDENTS.items()}}
    return {kind: {enc: len(onnx.load_from_string(distill_to_onnx(p, spec, encoding=enc)).graph.node)
                   for enc in ("single", "per_column")} for kind, p in pipelines.items()}


def test_single_encoder_node_count_does_not_grow_with_the_categoricals():
    few, many = _node_counts(3), _node_counts(12)
    for kind in few:
        assert many[kind]["single"] == few[kind]["single"], kind
        assert many[kind]["per_column"] > few[kind]["per_column"], kind


def _hand_built(encoder, regressor, categoricals_first: bool):
    """A student pipeline with settings ``features.preprocessor`` never uses (mean imputation, no centring)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from steps.distill.students import DistilledClassifier
    from steps.modeling.features import categorical_cleaner

    spec = _spec(*NAME_SETS["collisions"])
    num = Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler(with_mean=False))])
    blocks = [("cat", Pipeline([("clean", categorical_cleaner()), ("encode", encoder)]), list(spec.categorical)),
              ("num", num, list(spec.numeric))]
    pre = ColumnTransformer(blocks if categoricals_first else blocks[::-1], verbose_feature_names_out=False)
    return spec, Pipeline([("preprocess", pre), ("model", DistilledClassifier(regressor))])


@pytest.mark.parametrize("model", ["ridge", "mlp_tanh_two_layers", "lightgbm_unknown_minus_7"])
def test_single_encoder_follows_the_fitted_settings(model):
    from lightgbm import LGBMRegressor
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    one_hot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    spec, pipeline = {
        "ridge": lambda: _hand_built(one_hot, Ridge(alpha=0.1), True),
        "mlp_tanh_two_layers": lambda: _hand_built(one_hot, MLPRegressor(hidden_layer_sizes=(6, 4), activation="tanh",
                                                                         max_iter=300, random_state=0), False),
        "lightgbm_unknown_minus_7": lambda: _hand_built(
            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-7),
            LGBMRegressor(n_estimators=20, min_child_samples=5, verbose=-1), True),
    }[model]()
    train = _unusual_rows(_frame(spec, 400, 6), spec, with_nan=True)
    test = _unusual_rows(_frame(spec, 200, 7), spec, with_nan=True)
    pipeline.fit(train[spec.features], train.iloc[:, 0].fillna(0.0) - train[spec.target.name])
    blob = distill_to_onnx(pipeline, spec)
    assert [i.name for i in onnx.load_from_string(blob).graph.input] == [NUMERIC_INPUT, CATEGORICAL_CODES]
    native = pipeline.predict_proba(test[spec.features])[:, 1]
    assert parity_check(native, OnnxScorer(blob).predict(test), 0.5, 1e-4, 1e-4)["passed"]


@pytest.mark.parametrize("as_category", [False, True])
@pytest.mark.parametrize("rows", [1, 5, 3000])
def test_level_positions_map_strings_and_dictionary_codes_alike(as_category, rows):
    from steps.modeling.onnx import level_positions

    positions = {"__missing__": 0, "a b": 1, "ü-ber": 2, "1": 3}  # a graph's levels (missing is a level here)
    values = pd.Series(np.resize(np.array(["ü-ber", None, "", "never", 1, "a b", np.nan], dtype=object), rows))
    expected = np.resize(np.array([2, 0, 0, 4, 3, 1, 0]), rows)  # unknown -> len(positions); 1 and "1" alike
    # a pandas categorical (Arrow dictionary): missing cells have code -1, the categories are the distinct strings
    column = values.astype(str).where(values.notna(), None).astype("category") if as_category else values
    got = level_positions(column, positions)
    assert got.dtype == np.int64 and got.tolist() == expected.tolist()
    without_missing = {k: v - 1 for k, v in positions.items() if k != "__missing__"}
    assert level_positions(column, without_missing).tolist() == [
        3 if e == 0 else e - 1 if e < 4 else 3 for e in expected.tolist()]  # missing is unknown when not a level


@pytest.mark.parametrize("dropped", ["categorical_levels", "categorical_columns"])
def test_a_graph_without_the_metadata_its_input_needs_is_refused_by_name(case, dropped):
    from steps.modeling.onnx import ExportError

    spec, _, fitted = case
    model = onnx.load_from_string(to_onnx(fitted["lightgbm"], spec, encoding="single"))
    kept = [p for p in model.metadata_props if p.key != dropped]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    with pytest.raises(ExportError, match=f"reads '{CATEGORICAL_CODES}' but its metadata has no '{dropped}'"):
        OnnxScorer(model.SerializeToString())
