"""steps.score and steps.export without Metaflow: shard planning, row validation, atomic parts, the streaming shard
scorer, the manifest and stale-file sweep, fault and spot guards, ONNX export and parity."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.config import FaultInjection, ScoreConfig
from steps.core.storage import sha256_file
from steps.data.contract import SchemaMismatch, ScoreInputError, reason_labels, row_violations
from steps.modeling import models
from steps.modeling.onnx import (
    CATEGORICAL_CODES,
    CATEGORICAL_INPUT,
    NUMERIC_INPUT,
    ExportError,
    OnnxScorer,
    check_parity,
    parity,
    to_onnx,
)
from steps.scoring.faults import InjectedFault, fault_settings
from steps.scoring.partition import (
    MANIFEST,
    QuarantineLimitExceeded,
    finish_partition,
    partition_uri,
    quarantine_uri,
    read_manifest,
    read_partition,
    retract_manifest,
)
from steps.scoring.plan import (
    InputFile,
    Piece,
    RunPlan,
    Shard,
    inspect_inputs,
    list_inputs,
    partition_date,
    plan_run,
    plan_shards,
)
from steps.scoring.read import read_shard
from steps.scoring.resolve import ScoreModelError
from steps.scoring.runtime import NativeScorer, check_explainable
from steps.scoring.shard import (
    SPOT_NOTICE_ENV,
    Guard,
    ShardJob,
    SpotTermination,
    guard_for,
    job_for,
    score_shard,
    spot_notice_path,
)
from steps.scoring.write import PartWriter

DAY = "2026-01-15"

DECISION = {"threshold": 0.3, "review_band": [0.4, 0.6], "source": "test"}


# --------------------------------------------------------------------------------------------------- helpers
def _file(path: str, *groups: int) -> InputFile:
    return InputFile(path, tuple(groups), 0, 0)


def _write(frame: pd.DataFrame, path: Path, row_group_rows: int = 500) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, row_group_size=row_group_rows, index=False)
    return path


def _job(spec, plan: RunPlan, shard: int = 0, **overrides) -> ShardJob:
    cfg = ScoreConfig.model_validate({"batch_rows": 300, **overrides.pop("cfg", {})})
    return job_for(plan.shards[shard].to_dict(), plan.summary(), spec, cfg, DECISION,
                   {"run": "TrainFlow/1", "fingerprint": "f" * 64}, **overrides)


@pytest.fixture(scope="module")
def lgbm(fitted):
    """The fitted LightGBM pipeline of the unit fixtures and its bytes."""
    pipeline = fitted["lightgbm"]
    return pipeline, models.serialize(pipeline)


@pytest.fixture
def tainted(raw_frame) -> pd.DataFrame:
    """1,200 raw rows with five planted violations (rows 3, 10, 11, 700, 1100)."""
    frame = raw_frame.iloc[:1200].copy()
    frame.loc[3, "amount"] = -5.0
    frame.loc[10, "channel"] = "carrier_pigeon"
    frame.loc[11, "amount"] = np.inf
    frame.loc[700, "hour"] = 99
    frame.loc[1100, "region"] = None
    return frame


# --------------------------------------------------------------------------------------------------- shards
def test_shards_are_cut_at_row_group_boundaries():
    files = [_file("a", 2000, 2000, 2000)]
    assert [s.rows for s in plan_shards(files, 2000)] == [2000, 2000, 2000]
    assert [s.rows for s in plan_shards(files, 3000)] == [4000, 2000]
    assert [s.rows for s in plan_shards(files, 10**9)] == [6000]
    assert [s.rows for s in plan_shards(files, 1)] == [2000, 2000, 2000]  # a row group is never split


def test_shards_span_files_and_skip_empty_row_groups():
    shards = plan_shards([_file("a", 700, 0), _file("b", 500, 900)], 1000)
    assert [s.rows for s in shards] == [1200, 900]
    assert shards[0].pieces == (Piece("a", (0,), 700), Piece("b", (0,), 500))
    assert shards[1].pieces == (Piece("b", (1,), 900, first_row=500),)  # row 500 of file b: the row keys count on
    assert [s.part_name for s in shards] == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    assert Shard.from_dict(shards[0].to_dict()) == shards[0]


def test_an_empty_input_still_gets_one_empty_shard():
    shards = plan_shards([_file("a", 0)], 100)
    assert len(shards) == 1 and shards[0].rows == 0 and shards[0].pieces == ()
    with pytest.raises(ValueError, match="shard_rows"):
        plan_shards([], 0)


def test_partition_date_defaults_to_today_utc_and_rejects_garbage():
    assert partition_date("2026-02-03") == "2026-02-03"
    assert partition_date("") == datetime.now(UTC).date().isoformat()
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        partition_date("03/02/2026")
    assert partition_uri("s3://b/p/", "2026-02-03") == "s3://b/p/dt=2026-02-03"
    assert quarantine_uri("/x", "2026-02-03") == "/x/_quarantine/dt=2026-02-03"


# --------------------------------------------------------------------------------------------------- inputs
def test_inputs_list_skips_hidden_and_underscore_files(tmp_path, raw_frame):
    for name in ("b.parquet", "a.parquet", "sub/c.parquet", ".a.parquet.tmp", "_manifest.json",
                 "_quarantine/q.parquet", ".hidden/d.parquet"):
        _write(raw_frame.iloc[:10], tmp_path / name)
    found = [Path(p).relative_to(tmp_path).as_posix() for p in list_inputs(str(tmp_path))]
    assert found == ["a.parquet", "b.parquet", "sub/c.parquet"]
    with pytest.raises(ScoreInputError, match="no Parquet files"):
        list_inputs(str(tmp_path / "nothing"))


def test_corrupt_file_and_schema_mismatch_name_the_file_and_columns(tmp_path, raw_frame, dataset_spec):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")
    with pytest.raises(ScoreInputError, match=f"{bad}: not a readable Parquet file"):
        inspect_inputs([str(bad)], dataset_spec)
    wrong = _write(raw_frame.drop(columns=["amount", "country"]).assign(hour=[b"\x00"] * len(raw_frame)),
                   tmp_path / "wrong.parquet")
    with pytest.raises(SchemaMismatch) as err:
        inspect_inputs([str(wrong)], dataset_spec)
    assert str(wrong) in str(err.value) and "['amount', 'country']" in str(err.value)
    assert "hour (binary, expected numbers or numeric strings)" in str(err.value)


# --------------------------------------------------------------------------------------------------- validation
def test_row_violations_give_one_reason_per_bad_row(tainted, dataset_spec):
    reasons = row_violations(tainted, dataset_spec)
    bad = reasons.dropna()
    assert list(bad.index) == [3, 10, 11, 700, 1100]
    assert bad[3] == "amount below min 0 (got -5.0)"
    assert bad[10] == "channel unknown category (got 'carrier_pigeon')"
    assert "amount is infinite" in bad[11] and "above max" not in bad[11]
    assert bad[700] == "hour above max 23 (got 99)"
    assert bad[1100] == "region is null"
    assert reason_labels(bad[3]) == ["amount below min 0"]


def test_row_violations_respect_the_null_and_unknown_budgets(raw_frame, dataset_spec):
    frame = raw_frame.iloc[:6].copy()
    frame.loc[0, "km_from_home"] = np.nan          # max_null_rate 0.05: allowed per row
    frame.loc[1, "device_type"] = None              # max_null_rate 0.05: allowed
    frame.loc[2, "merchant_category"] = "new_shop"  # max_unknown_rate 0.01: the model's unknown code
    frame.loc[3, "amount"] = np.nan                 # no null budget
    frame.loc[4, "channel"] = ""                    # '' is missing, and channel has no null budget
    frame.loc[5, "transaction_id"] = None
    reasons = row_violations(frame, dataset_spec)
    assert reasons[:3].isna().all()
    assert reasons[3] == "amount is null" and reasons[4] == "channel is null"
    assert reasons[5] == "transaction_id is null"


def test_categorical_dtype_gives_the_same_reasons(tainted, dataset_spec):
    as_categories = tainted.astype({c: "category" for c in dataset_spec.categorical})
    pd.testing.assert_series_equal(row_violations(as_categories, dataset_spec),
                                   row_violations(tainted, dataset_spec))


def test_row_violations_need_every_model_column(raw_frame, dataset_spec):
    with pytest.raises(SchemaMismatch, match=r"missing columns \['amount'\]"):
        row_violations(raw_frame.drop(columns="amount"), dataset_spec)


# --------------------------------------------------------------------------------------------------- writer
def test_part_writer_is_atomic(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    final = tmp_path / "dt=x" / "part-00000-of-00001.parquet"
    with PartWriter(str(final), schema) as part:
        part.write(pa.record_batch([pa.array([1, 2, 3])], schema=schema))
        assert not final.exists() and part.tmp.exists() and part.tmp.name.startswith(".")
        written = part.commit()
    assert final.exists() and list(final.parent.iterdir()) == [final]
    assert written["rows"] == 3 and written["sha256"] == sha256_file(final)
    with pytest.raises(RuntimeError, match="boom"), PartWriter(str(tmp_path / "other.parquet"), schema) as p:
        p.write(pa.record_batch([pa.array([1])], schema=schema))
        raise RuntimeError("boom")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["dt=x"]  # nothing half-written remains


# --------------------------------------------------------------------------------------------------- shard scorer
@pytest.fixture
def planned(tmp_path, tainted, dataset_spec) -> RunPlan:
    src = _write(tainted, tmp_path / "in" / "t.parquet", row_group_rows=400)
    return plan_run(str(src), str(tmp_path / "out"), DAY, dataset_spec, shard_rows=800)


def test_a_shard_streams_scores_and_quarantines(planned, lgbm, dataset_spec, tainted):
    pipeline, _ = lgbm
    assert [s.rows for s in planned.shards] == [800, 400]
    job = _job(dataset_spec, planned, 0)
    record = score_shard(job, NativeScorer(pipeline, dataset_spec.features))
    # batches never cross row groups: 400-row groups in 300-row batches are read as 300 + 100, twice
    assert (record["rows_in"], record["rows_out"], record["rows_quarantined"], record["batches"]) == (800, 796, 4, 4)
    assert record["reasons"] == {"amount below min 0": 1, "channel unknown category": 1, "amount is infinite": 1,
                                 "hour above max 23": 1}
    out = pq.read_table(job.part_uri).to_pandas()
    assert list(out.columns) == ["transaction_id", "score", "decision", "review", "model_run", "model_fingerprint",
                                 "scored_at"]
    valid = tainted.iloc[:800].drop(index=[3, 10, 11, 700])
    assert out["transaction_id"].tolist() == valid["transaction_id"].tolist()
    np.testing.assert_allclose(out["score"], models.predict_proba(pipeline, valid, dataset_spec))
    assert (out["decision"] == (out["score"] >= 0.3)).all()
    assert (out["review"] == out["score"].between(0.4, 0.6)).all()
    assert set(out["model_run"]) == {"TrainFlow/1"} and out["scored_at"].dt.tz is not None
    quarantined = pq.read_table(job.quarantine_part_uri).to_pandas()
    assert quarantined["transaction_id"].tolist() == tainted.loc[[3, 10, 11, 700], "transaction_id"].tolist()
    assert quarantined["reason"].str.len().gt(0).all() and set(quarantined["source"]) == {planned.files[0].path}
    assert record["part"]["path"] == f"dt={DAY}/part-00000-of-00002.parquet"
    assert record["quarantine_part"]["path"] == f"_quarantine/dt={DAY}/part-00000-of-00002.parquet"


def test_numbers_given_as_strings_or_booleans_score_as_training_reads_them(tmp_path, lgbm, dataset_spec, tainted):
    texts = tainted.assign(amount=tainted["amount"].astype(str), hour=tainted["hour"].astype(str),
                           is_foreign=tainted["is_foreign"].astype(bool))
    texts.loc[5, "amount"] = "12,50"
    plan = plan_run(str(_write(texts, tmp_path / "in" / "t.parquet", row_group_rows=400)), str(tmp_path / "out"),
                    DAY, dataset_spec, shard_rows=800)
    frames = [b.frame for b in read_shard(_job(dataset_spec, plan, 0), {"read_validate_s": 0.0})]
    assert {str(f[c].dtype) for f in frames for c in ("amount", "hour", "is_foreign")} == {"float64"}
    valid = tainted.iloc[:800].drop(index=[3, 5, 10, 11, 700])
    for scorer in (NativeScorer(lgbm[0], dataset_spec.features), OnnxScorer(to_onnx(lgbm[0], dataset_spec))):
        job = _job(dataset_spec, plan, 0)
        record = score_shard(job, scorer)
        assert record["reasons"] == {"amount below min 0": 1, "channel unknown category": 1, "amount is infinite": 1,
                                     "hour above max 23": 1, "amount is not a number": 1}
        quarantined = pq.read_table(job.quarantine_part_uri).to_pandas().set_index("transaction_id")["reason"]
        assert quarantined[tainted.loc[5, "transaction_id"]] == "amount is not a number (got '12,50')"
        out = pq.read_table(job.part_uri).to_pandas()
        assert out["transaction_id"].tolist() == valid["transaction_id"].tolist()
        np.testing.assert_allclose(out["score"], scorer.predict(valid), rtol=0, atol=1e-12)


def test_overlapped_io_writes_the_same_part(planned, lgbm, dataset_spec, tmp_path):
    scorer = NativeScorer(lgbm[0], dataset_spec.features)
    serial = score_shard(_job(dataset_spec, planned, 1, cfg={"overlap_io": False}), scorer)
    again = pq.read_table(_job(dataset_spec, planned, 1).part_uri).drop(["scored_at"])
    overlapped = score_shard(_job(dataset_spec, planned, 1, cfg={"overlap_io": True}), scorer)
    assert serial["rows_out"] == overlapped["rows_out"] == 399
    assert pq.read_table(_job(dataset_spec, planned, 1).part_uri).drop(["scored_at"]).equals(again)


def test_top_k_contributions_and_shadow_agreement(planned, lgbm, dataset_spec):
    pipeline, _ = lgbm
    names = check_explainable(pipeline, 3)
    job = _job(dataset_spec, planned, 1, cfg={"top_k": 3}, feature_names=names)
    scorer = NativeScorer(pipeline, dataset_spec.features)
    record = score_shard(job, scorer, shadow=_Constant(0.35), explain=pipeline)
    out = pq.read_table(job.part_uri).to_pandas()
    assert [c for c in out.columns if c.startswith("top")] == [
        "top1_feature", "top1_contribution", "top2_feature", "top2_contribution", "top3_feature", "top3_contribution"]
    assert set(out["top1_feature"]) <= set(names)
    assert (out["top1_contribution"].abs() >= out["top2_contribution"].abs()).all()
    assert (out["top2_contribution"].abs() >= out["top3_contribution"].abs()).all()
    # the shadow flags every row (0.35 >= the 0.3 threshold): it agrees exactly where the model flags a row too
    assert (out["shadow_score"] == 0.35).all() and out["shadow_decision"].all()
    flagged = int((out["score"] >= DECISION["threshold"]).sum())
    assert 0 < flagged < len(out)  # both kinds of rows, so agreement and disagreement are both exercised
    shadow = record["shadow"]
    assert (shadow["rows"], shadow["agree"], shadow["to_positive"], shadow["to_negative"]) == (
        len(out), flagged, len(out) - flagged, 0)
    assert shadow["agreement_rate"] == pytest.approx(flagged / len(out))
    assert shadow["max_abs_diff"] == pytest.approx(float((out["score"] - 0.35).abs().max()))
    assert shadow["mean_abs_diff"] == pytest.approx(float((out["score"] - 0.35).abs().mean()))


class _Constant:
    """A shadow model that gives every row the same score."""

    def __init__(self, score: float) -> None:
        self.score = score

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), self.score)


def test_top_k_needs_lightgbm(fitted):
    with pytest.raises(ScoreModelError, match="LightGBM"):
        check_explainable(fitted["random_forest"], 2)


def test_spot_notice_stops_the_shard_before_anything_is_kept(planned, lgbm, dataset_spec, tmp_path):
    notice = tmp_path / "notice-0-0"
    notice.touch()
    guard = Guard(shard=0, attempt=0, notice_path=str(notice))
    job = _job(dataset_spec, planned, 0)
    with pytest.raises(SpotTermination, match="shard 0 attempt 0"):
        score_shard(job, NativeScorer(lgbm[0], dataset_spec.features), guard=guard)
    assert not Path(job.output_root).exists() or not any(Path(job.output_root).rglob("*.parquet*"))


def test_injected_fault_raises_mid_write_and_leaves_no_temporary_file(planned, lgbm, dataset_spec):
    fault = FaultInjection(enabled=True, shards=[0], attempts=[0], after_batches=2, mode="raise")
    job = _job(dataset_spec, planned, 0)
    with pytest.raises(InjectedFault, match="after 2 batch"):
        score_shard(job, NativeScorer(lgbm[0], dataset_spec.features), guard=Guard(0, 0, None, fault))
    assert not any(Path(job.output_root).rglob("*.parquet*"))
    score_shard(job, NativeScorer(lgbm[0], dataset_spec.features), guard=Guard(0, 1, None, fault))
    assert Path(job.part_uri).exists()  # the retry (attempt 1) is not targeted


def test_fault_settings_and_spot_path_from_the_environment(monkeypatch):
    base = FaultInjection()
    assert fault_settings(base, "") == base
    assert fault_settings(base, "1").enabled
    merged = fault_settings(base, '{"enabled": true, "shards": [2], "mode": "raise"}')
    assert (merged.enabled, merged.shards, merged.attempts, merged.mode) == (True, [2], [0], "raise")
    assert spot_notice_path("/tmp/spot_termination_notice", 1, 0) == "/tmp/spot_termination_notice"
    monkeypatch.setenv(SPOT_NOTICE_ENV, "/n/notice-{shard}-{attempt}")
    assert spot_notice_path(None, 3, 1) == "/n/notice-3-1"


# --------------------------------------------------------------------------------------------------- partition
def _records(planned, lgbm, dataset_spec) -> list[dict]:
    scorer = NativeScorer(lgbm[0], dataset_spec.features)
    return [score_shard(_job(dataset_spec, planned, i), scorer) for i in range(len(planned.shards))]


def test_join_sweeps_stale_files_and_writes_the_manifest_last(planned, lgbm, dataset_spec):
    where = Path(partition_uri(planned.output_root, DAY))
    where.mkdir(parents=True)
    stale = ("part-00000-of-00005.parquet", ".part-00001-of-00002.parquet.tmp-dead", "part-00007-of-00009.parquet")
    for name in stale:
        (where / name).write_bytes(b"old")
    records = _records(planned, lgbm, dataset_spec)
    manifest = finish_partition(planned.output_root, DAY, records, {"flow_run": "ScoreFlow/1"}, 0.01)
    assert sorted(p.name for p in where.iterdir()) == [MANIFEST, "part-00000-of-00002.parquet",
                                                       "part-00001-of-00002.parquet"]
    assert sorted(manifest["removed"]) == [f"dt={DAY}/{name}" for name in sorted(stale)]
    assert manifest["totals"] == {"rows_in": 1200, "rows_out": 1195, "rows_quarantined": 5,
                                  "quarantine_rate": 5 / 1200}
    assert json.loads((where / MANIFEST).read_text()) == json.loads(json.dumps(manifest, default=str))
    table = read_partition(planned.output_root, DAY, verify=True)
    assert table.num_rows == 1195 and table.column("transaction_id").to_pandas().is_unique
    for part in manifest["parts"]:
        assert sha256_file(Path(planned.output_root) / part["path"]) == part["sha256"]


def test_too_many_quarantined_rows_leave_the_partition_untrusted(planned, lgbm, dataset_spec):
    records = _records(planned, lgbm, dataset_spec)
    with pytest.raises(QuarantineLimitExceeded, match=r"5 of 1200 rows failed validation"):
        finish_partition(planned.output_root, DAY, records, {}, max_quarantine_rate=0.001)
    assert read_manifest(planned.output_root, DAY) is None
    with pytest.raises(ScoreInputError, match=f"^{partition_uri(planned.output_root, DAY)} has no {MANIFEST}: not a "
                                              "trusted partition$"):
        read_partition(planned.output_root, DAY)


@pytest.mark.parametrize(("reasons", "expected"), [
    ([{"amount: above max": 3}, {"amount: above max": 2, "country: unknown": 5}],
     [("amount: above max", 5), ("country: unknown", 5)]),  # ties by name
    ([{"b": 1}, {}, {"a": 4, "b": 2}], [("a", 4), ("b", 3)]),
    ([{}, {}], []),
])
def test_quarantine_reasons_sum_every_shard_most_first(reasons, expected):
    from steps.scoring.partition import quarantine_reasons

    assert quarantine_reasons([{"shard": i, "reasons": r} for i, r in enumerate(reasons)]) == expected


def test_a_rerun_retracts_the_old_manifest_first(planned, lgbm, dataset_spec):
    records = _records(planned, lgbm, dataset_spec)
    finish_partition(planned.output_root, DAY, records, {}, 0.01)
    assert retract_manifest(planned.output_root, DAY)
    assert read_manifest(planned.output_root, DAY) is None
    assert not retract_manifest(planned.output_root, DAY)


def test_join_refuses_records_that_do_not_add_up(planned, lgbm, dataset_spec):
    records = _records(planned, lgbm, dataset_spec)
    with pytest.raises(RuntimeError, match=r"expected shards 0..1"):
        finish_partition(planned.output_root, DAY, records[:1] + records[:1], {}, 0.01)
    broken = [{**records[0], "rows_out": 1}, records[1]]
    with pytest.raises(RuntimeError, match="rows in 800"):
        finish_partition(planned.output_root, DAY, broken, {}, 0.01)


# --------------------------------------------------------------------------------------------------- export
def test_onnx_export_matches_the_native_lightgbm(lgbm, raw_frame, dataset_spec):
    pipeline, _ = lgbm
    scorer = OnnxScorer(to_onnx(pipeline, dataset_spec))
    assert sorted(scorer.features) == sorted(dataset_spec.features)
    frame = raw_frame.iloc[:1500].copy()
    frame.loc[0, "device_type"] = None
    frame.loc[1, "merchant_category"] = "never_seen"
    frame.loc[2, "channel"] = ""
    result = check_parity(pipeline, scorer, frame, dataset_spec, threshold=0.3, tolerance=1e-4)
    assert result["rows"] == 1500 and result["max_abs_diff"] < 1e-5 and result["decision_flips"] == 0
    as_categories = frame.astype({c: "category" for c in dataset_spec.categorical})
    np.testing.assert_array_equal(scorer.predict(as_categories), scorer.predict(frame))


def test_onnx_graph_takes_two_packed_inputs_and_never_splits_the_numbers_apart(lgbm, raw_frame, dataset_spec):
    import onnx

    pipeline, _ = lgbm
    blob = to_onnx(pipeline, dataset_spec)
    model = onnx.load_from_string(blob)
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {NUMERIC_INPUT: [0, len(dataset_spec.numeric)],
                      CATEGORICAL_CODES: [0, len(dataset_spec.categorical)]}
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta == {"numeric_columns": list(dataset_spec.numeric),
                    "categorical_columns": list(dataset_spec.categorical),
                    "categorical_levels": [list(c) for c in pipeline[0].named_transformers_["cat"][-1].categories_]}
    ops = [n.op_type for n in model.graph.node]
    assert "Split" not in ops and "LabelEncoder" not in ops and ops.count("Gather") == 1  # one lookup, all columns
    per_column = onnx.load_from_string(to_onnx(pipeline, dataset_spec, encoding="per_column"))
    unpacks = [n for n in per_column.graph.node if n.op_type == "Split"]
    assert [list(n.input) for n in unpacks] == [[CATEGORICAL_INPUT]]  # numbers are read packed
    frame = raw_frame.iloc[:300]
    for graph in (blob, per_column.SerializeToString()):
        np.testing.assert_allclose(OnnxScorer(graph).predict(frame),
                                   models.predict_proba(pipeline, frame, dataset_spec), atol=1e-5)


def _one_input_per_column(pipeline, spec) -> bytes:
    """A graph of the convention before packing: one [None, 1] input per raw column, named after the column."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    from steps.modeling.onnx import graph_pipeline

    graph = graph_pipeline(pipeline)
    types = ([(c, FloatTensorType([None, 1])) for c in spec.numeric]
             + [(c, StringTensorType([None, 1])) for c in spec.categorical])
    return convert_sklearn(graph, initial_types=types, target_opset={"": 15, "ai.onnx.ml": 3},
                           options={id(graph[-1]): {"zipmap": False}}).SerializeToString()


def test_onnx_scorer_still_reads_graphs_with_one_input_per_column(lgbm, raw_frame, dataset_spec):
    pipeline, _ = lgbm
    packed = OnnxScorer(to_onnx(pipeline, dataset_spec))
    per_column = OnnxScorer(_one_input_per_column(pipeline, dataset_spec))
    assert len(per_column.session.get_inputs()) == len(dataset_spec.features) and not per_column.packed
    frame = raw_frame.iloc[:300]
    np.testing.assert_allclose(per_column.predict(frame), packed.predict(frame), atol=1e-6)


def test_onnx_export_refuses_what_it_cannot_convert(fitted, dataset_spec):
    with pytest.raises(ExportError, match="HistGradientBoostingClassifier"):
        to_onnx(fitted["hist_gradient_boosting"], dataset_spec)
    with pytest.raises(ExportError, match="add_indicator"):
        to_onnx(fitted["logistic_regression"], dataset_spec)
    with pytest.raises(ExportError, match="target_opset"):
        to_onnx(fitted["lightgbm"], dataset_spec, target_opset=17)


def test_parity_counts_flips_at_the_threshold():
    result = parity(np.array([0.1, 0.29, 0.31, 0.9]), np.array([0.1, 0.31, 0.31, 0.8]), 0.3)
    assert result["decision_flips"] == 1 and result["max_abs_diff"] == pytest.approx(0.1)


def test_the_aws_profile_sends_shards_to_the_spot_queue():
    from steps.config import ProfileConfig, load_file

    profile = load_file(ProfileConfig, Path(__file__).resolve().parents[2] / "config" / "profiles" / "aws.yaml")
    shard = profile.for_step("score_shard")
    assert shard.queue == "spot" and profile.queues["spot"] and profile.retry.times >= 1
    assert profile.for_step("start").queue != "spot"


@pytest.mark.parametrize("flow, tags, passed, expected", [
    ("TrainFlow", {"dataset:card_transactions"}, True, []),
    ("TrainFlow", set(), True, []),  # a run from before datasets were tagged
    ("DistillFlow", {"dataset:card_transactions"}, True, ["it is a run of DistillFlow, not TrainFlow"]),
    ("TrainFlow", {"dataset:german_health"}, True, ["it is a model of dataset 'german_health', not "
                                                    "'card_transactions'"]),
    ("TrainFlow", {"dataset:card_transactions"}, False, ["it did not pass its gates"]),
    ("ScoreFlow", {"dataset:x"}, False, ["it is a run of ScoreFlow, not TrainFlow",
                                         "it is a model of dataset 'x', not 'card_transactions'",
                                         "it did not pass its gates"]),
])
def test_a_given_model_run_must_be_a_passing_run_of_the_flow_and_dataset(flow, tags, passed, expected):
    from types import SimpleNamespace

    from steps.scoring.resolve import _broken_rules

    run = SimpleNamespace(parent=SimpleNamespace(id=flow), user_tags=frozenset(tags))
    assert _broken_rules(run, "TrainFlow", "card_transactions", passed) == expected


# --------------------------------------------------------------------------------------------------- claims
def test_claims_are_numbered_once_and_the_newest_holds_the_date(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from steps.scoring.claims import ClaimLost, check_claim, claim_date, holder

    root = str(tmp_path / "out")
    first = claim_date(root, DAY, "ScoreFlow/1")
    assert (first.seq, first.tag, holder(root, DAY)["run"]) == (1, "c00000001", "ScoreFlow/1")
    check_claim(first)
    with ThreadPoolExecutor(8) as pool:  # racing claims: every one gets its own number
        racers = list(pool.map(lambda i: claim_date(root, DAY, f"ScoreFlow/{i}"), range(10, 18)))
    assert sorted(c.seq for c in racers) == list(range(2, 10))
    newest = max(racers, key=lambda c: c.seq)
    check_claim(newest)
    with pytest.raises(ClaimLost, match=rf"now held by {newest.run} \(claim 9, .*ScoreFlow/1 \(claim 1\) stops"):
        check_claim(first)


def test_a_shard_whose_claim_is_lost_mid_write_publishes_nothing(planned, lgbm, dataset_spec):
    from steps.scoring.claims import ClaimLost, Watch, claim_date

    claim = claim_date(planned.output_root, DAY, "ScoreFlow/old")
    summary = {**planned.summary(), "claim": claim.to_dict()}
    job = job_for(planned.shards[0].to_dict(), summary, dataset_spec, ScoreConfig(batch_rows=100), DECISION,
                  {"run": "TrainFlow/1", "fingerprint": "f" * 64})
    assert job.part_uri.endswith("part-00000-of-00002-c00000001.parquet")

    class NewerRunArrives(Watch):
        def check(self, force: bool = False) -> None:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 3:  # between record batches, a newer run claims the date
                claim_date(planned.output_root, DAY, "ScoreFlow/new")
            super().check(force=True)

    guard = Guard(shard=0, attempt=0, watch=NewerRunArrives(claim))
    with pytest.raises(ClaimLost, match="now held by ScoreFlow/new"):
        score_shard(job, NativeScorer(lgbm[0], dataset_spec.features), guard=guard)
    assert not any(Path(planned.output_root).rglob("*.parquet*"))  # no part, no temporary file


def test_join_of_a_superseded_run_writes_nothing(planned, lgbm, dataset_spec):
    from steps.scoring.claims import ClaimLost, claim_date

    old = claim_date(planned.output_root, DAY, "ScoreFlow/old")
    records = _records(planned, lgbm, dataset_spec)
    claim_date(planned.output_root, DAY, "ScoreFlow/new")
    before = sorted(p.name for p in Path(partition_uri(planned.output_root, DAY)).iterdir())
    with pytest.raises(ClaimLost, match="now held by ScoreFlow/new"):
        finish_partition(planned.output_root, DAY, records, {}, 0.01, claim=old)
    assert read_manifest(planned.output_root, DAY) is None
    assert sorted(p.name for p in Path(partition_uri(planned.output_root, DAY)).iterdir()) == before  # untouched


def test_join_rereads_every_part_before_publishing(planned, lgbm, dataset_spec):
    records = _records(planned, lgbm, dataset_spec)
    part = Path(planned.output_root) / records[1]["part"]["path"]
    part.write_bytes(part.read_bytes()[:-1] + b"\0")  # same size, other bytes
    with pytest.raises(RuntimeError, match=f"{part} changed after its shard wrote it"):
        finish_partition(planned.output_root, DAY, records, {}, 0.01)
    part.unlink()
    with pytest.raises(RuntimeError, match=f"{part} is listed by its shard but missing"):
        finish_partition(planned.output_root, DAY, records, {}, 0.01)
    assert read_manifest(planned.output_root, DAY) is None


def test_a_shard_stops_when_the_process_that_started_it_is_gone():
    from steps.scoring.claims import RunnerGone, Watch

    Watch(parent_pid=os.getppid()).check()  # alive: nothing happens
    with pytest.raises(RunnerGone, match="pid 1 is gone|pid 1\\) is gone"):
        Watch(parent_pid=1).check()  # orphaned tasks are re-parented: their parent id changes


def test_a_notice_at_metaflows_own_path_mid_shard_stops_it_and_keeps_nothing(planned, lgbm, dataset_spec, tmp_path,
                                                                              monkeypatch):
    monkeypatch.delenv(SPOT_NOTICE_ENV, raising=False)
    notice = tmp_path / "spot_termination_notice"  # what current.spot_termination_notice names on AWS Batch
    cfg = ScoreConfig(fault_injection=FaultInjection(enabled=True, after_batches=2, mode="notice"))
    guard = guard_for(0, 0, str(notice), cfg, watch_parent=False)
    job = _job(dataset_spec, planned, 0)
    with pytest.raises(SpotTermination, match="shard 0 attempt 0 stops"):
        score_shard(job, NativeScorer(lgbm[0], dataset_spec.features), guard=guard)
    assert notice.exists()  # it appeared after two batches had been written, not before the shard started
    assert not any(Path(job.output_root).rglob("*.parquet*"))


def test_an_unreachable_s3_input_is_a_score_input_error_naming_it(monkeypatch):
    """No credentials, access denied or no endpoint: a clear error at plan time, not an internal error retried."""
    from steps.scoring.plan import InputsUnreadable, list_inputs

    monkeypatch.setenv("METAFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(InputsUnreadable, match=r"^cannot list s3://my-bucket/in/: .*127\.0\.0\.1:9"):
        list_inputs("s3://my-bucket/in/")


@pytest.mark.parametrize("given", ["TrainFlow/1796226278058349/end", "TrainFlow/1/end/2", "TrainFlow/", "/"])
def test_a_model_run_that_is_not_a_run_is_refused_naming_it(given):
    from steps.scoring.resolve import resolve_model

    with pytest.raises(ScoreModelError, match=f"--model-run '{given}' is not a run: give its id"):
        resolve_model(given, "main", "tabular", None)
