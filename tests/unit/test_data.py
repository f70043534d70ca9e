"""steps/data.py: validation reports every violation at once; split, load and derive behave."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.config import DatasetConfig, SplitSpec
from steps.data import split as split_module, synth, table
from steps.data.contract import DataValidationError, expected_columns, in_order, validate
from steps.data.load import derive_columns, finish_lineage, load_table, parse_table
from steps.data.split import PARTS, Split, cut, split_columns, split_frame

Mutation = Callable[[pd.DataFrame], pd.DataFrame]


def violations(frame: pd.DataFrame, spec: DatasetConfig, source: str = "in/test.parquet") -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        validate(frame, spec, source)
    err = info.value
    assert err.source == source
    assert str(err).startswith(f"{source}: {len(err.violations)} validation error(s):")
    return err


def setting(column: str, rows: slice | list[int] | int, value: object, dtype: str | None = None) -> Mutation:
    def mutate(f: pd.DataFrame) -> pd.DataFrame:
        if dtype is not None:
            f[column] = f[column].astype(dtype)
        f.loc[rows, column] = value
        return f
    return mutate


def as_strings_with(rows: dict[int, object]) -> Mutation:
    def mutate(f: pd.DataFrame) -> pd.DataFrame:
        f["event_time"] = f["event_time"].astype(str).astype(object)
        for row, value in rows.items():
            f.loc[row, "event_time"] = value
        return f
    return mutate


def only_positives(n: int, rows: int | None = None) -> Mutation:
    def mutate(f: pd.DataFrame) -> pd.DataFrame:
        f = f.iloc[:rows].copy() if rows else f
        f["is_fraud"] = 0
        f.loc[f.index[:n], "is_fraud"] = 1
        return f
    return mutate


# --------------------------------------------------------------------------------------------------- validate
def test_valid_frame_passes_and_is_normalized(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    shuffled = raw_frame.sample(frac=1.0, random_state=0)
    before = shuffled.copy()
    out = validate(shuffled, dataset_spec, "ok.parquet")
    pd.testing.assert_frame_equal(shuffled, before)  # the input is not modified
    assert list(out.columns) == ["transaction_id", "event_time", *dataset_spec.features, "is_fraud"]
    assert out["event_time"].is_monotonic_increasing and out.index.tolist() == list(range(len(out)))
    assert all(out[c].dtype == "float64" for c in dataset_spec.numeric)
    assert all(pd.api.types.is_string_dtype(out[c]) for c in dataset_spec.categorical)
    assert out["is_fraud"].dtype == "int64"
    assert out["device_type"].isna().sum() == raw_frame["device_type"].isna().sum()  # missing stays missing
    assert set(out["device_type"].dropna().map(type)) == {str}
    assert out["is_fraud"].sum() == raw_frame["is_fraud"].sum()


def test_every_violation_is_reported_at_once(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    f = raw_frame.drop(columns=["country"])
    f["surprise"] = 1
    f["hour"] = f["hour"].astype(str)
    f.loc[[3, 9], "hour"] = "seven"  # numeric strings are numbers; words are not
    f.loc[:399, "km_from_home"] = np.nan                       # 10% > 5% budget
    f.loc[5, "amount"] = -3.0
    f.loc[7, "txn_count_1h"] = 5000
    f["device_type"] = f["device_type"].astype(object)
    f.loc[1000:1499, "device_type"] = None                     # 12.5% > 5% budget
    f.loc[100:199, "channel"] = "telepathy"
    f.loc[11, "transaction_id"] = f.loc[10, "transaction_id"]
    f = as_strings_with({20: "not a time", 21: ""})(f)
    f = only_positives(5)(f)
    err = violations(f, dataset_spec, "s3://bucket/bad.parquet")
    expected = [
        "missing columns: ['country']",
        "unexpected columns: ['surprise']",
        "column 'hour': 2 value(s) are not numbers at rows 3, 9 (e.g. 'seven')",
        "column 'km_from_home': null rate 0.1", "exceeds max_null_rate 0.05",
        "column 'amount': 1 value(s) below min 0.0 at rows 5 (e.g. -3.0)",
        "column 'txn_count_1h': 1 value(s) above max 1000.0 at rows 7 (e.g. 5000)",
        "column 'device_type': null rate 0.13",
        "column 'channel': unknown categories in 0.0250 of rows (max_unknown_rate 0.0): ['telepathy'] at rows 100, ",
        "id column 'transaction_id': 1 duplicated id(s) (e.g. 11) at rows 10, 11",
        "time column 'event_time': 2 empty or unparseable value(s) at rows 20, 21 (e.g. 'not a time', '')",
        "target 'is_fraud': only 5 positive row(s), min_positives is 20",
    ]
    msg = str(err)
    assert [e for e in expected if e not in msg] == []
    assert len(err.violations) == 11  # one line per problem, nothing else


@pytest.mark.parametrize("mutate, fragments, count", [
    pytest.param(lambda f: f.drop(columns=["country", "hour"]), ["missing columns: ['hour', 'country']"], 1,
                 id="missing-columns"),
    pytest.param(lambda f: f.drop(columns=["is_fraud"]), ["missing columns: ['is_fraud']"], 1, id="missing-target"),
    pytest.param(lambda f: f.assign(extra=1, notes="x"), ["unexpected columns: ['extra', 'notes']",
                                                          "add them to 'ignored'"], 1, id="extra-columns"),
    pytest.param(setting("hour", [4, 8], "n/a", "object"),
                 ["column 'hour': 2 value(s) are not numbers at rows 4, 8 (e.g. 'n/a')"], 1, id="words-in-numeric"),
    pytest.param(lambda f: f.assign(channel=1.5), ["column 'channel': 4000 number(s) with a fraction at rows 0, 1",
                                                   "(e.g. 1.5, 1.5", "list the column under numeric"],
                 1, id="categorical-as-float"),
    pytest.param(setting("km_from_home", slice(0, 399), np.nan),
                 ["column 'km_from_home': null rate 0.1", "exceeds max_null_rate 0.05"], 1, id="numeric-nulls"),
    pytest.param(setting("amount", 3, np.nan), ["column 'amount': null rate 0.000", "exceeds max_null_rate 0.0"], 1,
                 id="null-in-zero-budget"),
    pytest.param(setting("device_type", slice(0, 399), None, "object"),
                 ["column 'device_type': null rate 0.1", "exceeds max_null_rate 0.05"], 1, id="categorical-nulls"),
    pytest.param(setting("amount", 5, -3.0), ["column 'amount': 1 value(s) below min 0.0 at rows 5 (e.g. -3.0)"], 1,
                 id="below-min"),
    pytest.param(setting("hour", [7, 9], 24), ["column 'hour': 2 value(s) above max 23.0 at rows 7, 9 (e.g. 24, 24)"],
                 1, id="above-max"),
    pytest.param(setting("amount_sum_24h", 4, np.inf), ["column 'amount_sum_24h': 1 infinite value(s) at rows 4",
                                                        "above max 1000000.0 at rows 4"], 2, id="infinite"),
    pytest.param(setting("channel", slice(0, 9), "telepathy", "object"),
                 ["column 'channel': unknown categories in 0.0025 of rows (max_unknown_rate 0.0): ['telepathy'] at "
                  "rows 0, 1, 2, 3, 4 ..."], 1, id="unknown-category"),
    pytest.param(setting("merchant_category", slice(0, 79), "fireworks", "object"),
                 ["column 'merchant_category': unknown categories in 0.0200 of rows (max_unknown_rate 0.01): "
                  "['fireworks']"], 1, id="unknown-above-rate"),
    pytest.param(setting("transaction_id", [11, 12], 11), ["id column 'transaction_id': 1 duplicated id(s) (e.g. 11) "
                                                          "at rows 10, 11, 12"], 1, id="duplicate-ids"),
    pytest.param(setting("transaction_id", 3, np.nan, "float64"),
                 ["id column 'transaction_id': 1 empty id(s) at rows 3"], 1, id="empty-id"),
    pytest.param(as_strings_with({20: "not a time", 21: "", 22: None}),
                 ["time column 'event_time': 3 empty or unparseable value(s) at rows 20, 21, 22 (e.g. 'not a time', "
                  "'')"], 1,
                 id="bad-timestamps"),
    pytest.param(setting("event_time", 8, pd.NaT), ["time column 'event_time': 1 empty or unparseable value(s) "
                                                    "at rows 8"], 1, id="NaT"),
    pytest.param(setting("is_fraud", 0, 2), ["target 'is_fraud' is not binary 0/1: 1 row(s) at rows 0 hold other "
                                             "values (e.g. 2); derive it with target.derive"], 1,
                 id="non-binary-target"),
    pytest.param(setting("is_fraud", 6, np.nan, "float64"), ["target 'is_fraud': 1 null value(s) at rows 6"], 1,
                 id="null-target"),
    pytest.param(only_positives(5), ["target 'is_fraud': only 5 positive row(s), min_positives is 20"], 1,
                 id="too-few-positives"),
    pytest.param(lambda f: f.assign(is_fraud=1), ["target 'is_fraud': positive rate 1.0000 exceeds "
                                                  "max_positive_rate 0.5"], 1, id="too-many-positives"),
    pytest.param(only_positives(20, rows=50), ["only 50 row(s), min_rows is 100"], 1, id="too-few-rows"),
])
def test_each_violation_names_column_row_and_value(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig,
                                                   mutate: Mutation, fragments: list[str], count: int) -> None:
    err = violations(mutate(raw_frame), dataset_spec)
    assert len(err.violations) == count, err.violations
    assert [f for f in fragments if f not in str(err)] == []


def test_day_first_date_strings_are_refused_without_a_format_and_read_with_one(raw_frame: pd.DataFrame,
                                                                              dataset_spec: DatasetConfig) -> None:
    """'02/01/2025' is 2 January or 1 February: without time.format only ISO 8601 is read (pandas' per-value guess
    read days up to 12 month-first and the others day-first, silently mixing the dates)."""
    times = pd.to_datetime(raw_frame["event_time"], utc=True)
    day_first = raw_frame.assign(event_time=times.dt.strftime("%d/%m/%Y %H:%M:%S"))
    err = violations(day_first, dataset_spec)
    assert len(err.violations) == 1
    assert err.violations[0].startswith(f"time column 'event_time': {len(raw_frame)} empty or unparseable value(s) "
                                        "at rows 0, 1, 2, 3, 4 ... (e.g. ")
    assert "without time.format only ISO 8601 is read" in str(err) and "format: '%d/%m/%Y %H:%M'" in str(err)
    day_first_format = dataset_spec.time.model_copy(update={"format": "%d/%m/%Y %H:%M:%S"})
    spec = dataset_spec.model_copy(update={"time": day_first_format})
    validated = validate(day_first, spec, "in/test.parquet")
    assert validated["event_time"].tolist() == times.dt.floor("s").tolist()
    assert validate(raw_frame.assign(event_time=times.dt.strftime("%Y-%m-%dT%H:%M:%S%z")), dataset_spec,
                    "in/iso.parquet")["event_time"].tolist() == times.dt.floor("s").tolist()


@pytest.mark.parametrize("mutate", [
    pytest.param(setting("merchant_category", slice(0, 29), "fireworks", "object"), id="unknown-below-rate"),
    pytest.param(setting("device_type", slice(0, 99), None, "object"), id="nulls-within-budget"),
    pytest.param(lambda f: f.assign(is_fraud=f["is_fraud"].astype(bool)), id="boolean-target"),
    pytest.param(lambda f: f.assign(is_fraud=f["is_fraud"].astype(float)), id="float-target"),
    pytest.param(lambda f: f.assign(hour=f["hour"].astype("int32")), id="int32-numeric"),
    pytest.param(lambda f: f.assign(hour=f["hour"].astype(str)), id="numeric-strings-are-numbers"),
    pytest.param(lambda f: f.assign(is_foreign=f["is_foreign"].astype(bool)), id="booleans-are-0-and-1"),
])
def test_tolerated_deviations_pass(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig, mutate: Mutation) -> None:
    out = validate(mutate(raw_frame), dataset_spec, "ok.parquet")
    assert len(out) == len(raw_frame) and out["is_fraud"].dtype == "int64"


def test_empty_data_is_one_violation(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    err = violations(raw_frame.iloc[:0], dataset_spec, "empty.csv")
    assert err.violations == ["the data is empty (0 rows)"]


def test_ignored_columns_are_allowed_and_dropped(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    spec = DatasetConfig.model_validate({**dataset_spec.model_dump(), "ignored": ["notes"]})
    out = validate(raw_frame.assign(notes="free text"), spec, "ok.parquet")
    assert "notes" not in out.columns
    assert "notes" in expected_columns(spec)


@pytest.mark.parametrize("dtype", ["Int64", "Float64"])
def test_nullable_numeric_with_missing_and_out_of_range(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig,
                                                        dtype: str) -> None:
    f = raw_frame.assign(txn_count_1h=raw_frame["txn_count_1h"].astype(dtype))
    f.loc[3, "txn_count_1h"] = pd.NA
    f.loc[7, "txn_count_1h"] = 5000
    err = violations(f, dataset_spec)
    assert "column 'txn_count_1h': 1 value(s) above max 1000.0 at rows 7" in str(err)
    assert "column 'txn_count_1h': null rate" in str(err)


TIMES = {"datetime_utc": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-02", "2025-01-03"], utc=True),
         "datetime": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-02", "2025-01-03"]),
         "period": pd.array([1, 2, 2, 3], dtype="int64")}
IDS = {"int": pd.array([5, 7, 8, 1], dtype="int64"), "str": pd.array(["e", "g", "h", "a"], dtype="str"),
       "object": np.array(["e", "g", "h", "a"], dtype=object)}


@pytest.mark.parametrize("time", TIMES)
@pytest.mark.parametrize("ids", IDS)
@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [0, 2, 1, 3], [1, 0, 2, 3], [3, 0, 1, 2], [0, 3]])
def test_in_order_says_whether_a_stable_sort_by_time_then_id_would_move_a_row(time: str, ids: str,
                                                                              rows: list[int]) -> None:
    frame = pd.DataFrame({"t": TIMES[time], "id": IDS[ids]}).iloc[rows].reset_index(drop=True)
    unmoved = frame.sort_values(["t", "id"], kind="stable").index.equals(frame.index)
    assert in_order(frame, ["t", "id"]) == unmoved
    assert in_order(frame, ["t"]) == frame.sort_values("t", kind="stable").index.equals(frame.index)


def test_validation_keeps_data_already_in_order_as_it_is_and_sorts_the_rest(clean_frame: pd.DataFrame,
                                                                            dataset_spec: DatasetConfig) -> None:
    shuffled = clean_frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = validate(shuffled, dataset_spec, "shuffled")
    pd.testing.assert_frame_equal(again, clean_frame)
    assert in_order(again, ["event_time", "transaction_id"]) and not in_order(shuffled, ["event_time"])


# --------------------------------------------------------------------------------------------------- temporal split
@pytest.mark.parametrize("validation, holdout", [(0.15, 0.15), (0.2, 0.1), (0.1, 0.3), (0.25, 0.25)])
def test_temporal_split_is_disjoint_and_honours_fractions(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig,
                                                          validation: float, holdout: float) -> None:
    parts = split_frame(clean_frame, dataset_spec, SplitSpec(validation_fraction=validation,
                                                                  holdout_fraction=holdout))
    n = len(clean_frame)
    assert len(parts.train) + len(parts.validation) + len(parts.holdout) == n
    assert abs(len(parts.validation) / n - validation) < 0.01
    assert abs(len(parts.holdout) / n - holdout) < 0.01
    assert parts.train["event_time"].max() < parts.validation["event_time"].min()
    assert parts.validation["event_time"].max() < parts.holdout["event_time"].min()
    ids = [set(p["transaction_id"]) for p in (parts.train, parts.validation, parts.holdout)]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert set.union(*ids) == set(clean_frame["transaction_id"])
    summary = parts.summary(dataset_spec)
    assert summary["method"] == "time" and summary["warnings"] == []
    assert sum(summary[p]["positives"] for p in PARTS) == clean_frame["is_fraud"].sum()
    assert all(summary[p]["positives"] > 0 for p in PARTS)
    assert summary["train"]["time_max"] < summary["validation"]["time_min"]


@pytest.mark.parametrize("part, rows", [("train", slice(0, 2799)), ("validation", slice(2800, 3399)),
                                        ("holdout", slice(3400, None))])
def test_temporal_split_raises_when_a_part_lacks_positives(clean_frame: pd.DataFrame, dataset_spec: DatasetConfig,
                                                           part: str, rows: slice) -> None:
    f = clean_frame.copy()
    f.loc[rows, "is_fraud"] = 0
    pattern = rf"time split failed: the {part} part has \d+ rows and needs both classes\. Try fewer, larger parts"
    with pytest.raises(ValueError, match=pattern):
        split_frame(f, dataset_spec, SplitSpec())


def test_temporal_split_keeps_equal_timestamps_together(clean_frame: pd.DataFrame,
                                                        dataset_spec: DatasetConfig) -> None:
    f = clean_frame.copy()
    f["event_time"] = f["event_time"].dt.floor("7D")  # many rows share each timestamp
    parts = split_frame(f, dataset_spec, SplitSpec())
    assert parts.train["event_time"].max() < parts.validation["event_time"].min()
    assert parts.validation["event_time"].max() < parts.holdout["event_time"].min()


@pytest.mark.parametrize("split", [SplitSpec(), SplitSpec(method="random", holdout_fraction=0.2),
                                   SplitSpec(method="column", column="region", holdout_values=["apac"])],
                         ids=["time", "random", "column"])
def test_cut_from_the_split_columns_alone_matches_the_split_of_the_whole_frame(
        clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, split: SplitSpec) -> None:
    whole = split_frame(clean_frame, dataset_spec, split)
    columns = split_columns(dataset_spec, split)
    assert dataset_spec.id not in columns and len(columns) < len(clean_frame.columns)
    parts = cut(clean_frame[columns], dataset_spec, split)
    np.testing.assert_array_equal(parts.codes, whole.codes)
    assert parts.summary(dataset_spec) == whole.summary(dataset_spec)
    assert [s["rows"] for s in parts.stats.values()] == [len(whole.train), len(whole.validation), len(whole.holdout)]


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 20])
@pytest.mark.parametrize("times", ["utc", "period", None])
def test_parts_statistics_from_chunks_of_rows_are_those_of_each_whole_part(
        monkeypatch: pytest.MonkeyPatch, chunk: int, times: str | None) -> None:
    monkeypatch.setattr(split_module, "STATS_CHUNK_ROWS", chunk)
    n, rng = 3000, np.random.default_rng(2)
    codes = np.sort(rng.choice(np.array([0, 1, 2], dtype=np.int8), n, p=[.7, .2, .1]))
    codes[rng.choice(n, 40)] = 0  # a part that is not one run of rows
    target = pd.Series((rng.uniform(size=n) < .1).astype(np.int8))
    target[codes == 2] = 1  # a part with one class
    stamps = {"utc": pd.Series(pd.date_range("2025-01-01", periods=n, freq="min", tz="UTC")[rng.permutation(n)]),
              "period": pd.Series(rng.integers(1, 50, n)), None: None}[times]
    got = split_module.parts_stats(codes, target, stamps)
    for k, name in enumerate(PARTS):
        mask = codes == k
        assert got[name] == split_module.part_stats(target[mask], stamps[mask] if stamps is not None else None)
    assert not got["holdout"]["both_classes"] and got["train"]["both_classes"]
    empty = split_module.parts_stats(np.zeros(n, dtype=np.int8), target, stamps)["holdout"]
    nothing = split_module.part_stats(target[:0], stamps[:0] if stamps is not None else None)
    assert empty.keys() == nothing.keys() and empty["rows"] == 0 and not empty["both_classes"]
    assert all(pd.isna(empty[k]) and pd.isna(nothing[k]) for k in ("time_min", "time_max") if times is not None)


def test_a_time_split_whose_cut_points_coincide_holds_out_the_latest_time_and_validates_on_the_one_before(
        dataset_spec: DatasetConfig) -> None:
    days = pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03"], utc=True)
    frame = pd.DataFrame({"event_time": np.repeat(days, [10, 10, 80]), "is_fraud": np.tile([0, 1], 50)})
    parts = cut(frame, dataset_spec, SplitSpec(validation_fraction=0.15, holdout_fraction=0.15))  # both cuts: day 3
    assert np.bincount(parts.codes).tolist() == [10, 10, 80]
    assert parts.summary(dataset_spec)["validation"]["time_min"].startswith("2025-01-02")


@pytest.mark.parametrize("split", [SplitSpec(), SplitSpec(method="random")], ids=["time", "random"])
def test_a_part_read_by_reference_is_the_part_cut_from_the_frame(
        clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, split: SplitSpec, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 300)  # many row groups: whole ones kept, boundary ones filtered
    ref = table.write_table(clean_frame, str(tmp_path)).to_dict()
    parts = split_frame(clean_frame, dataset_spec, split)
    codes = table.split_ref(ref, parts.codes, parts.method, parts.warnings)
    assert len(ref["row_groups"]) > 10
    for name in PARTS:
        pd.testing.assert_frame_equal(table.read_part(codes, name), getattr(parts, name))
    assert list(table.read_part(codes, "holdout", ["is_fraud"]).columns) == ["is_fraud"]


@pytest.mark.parametrize("split", [SplitSpec(), SplitSpec(method="random")], ids=["time", "random"])
@pytest.mark.parametrize("limit", [250, 1000, None])
def test_a_sampled_part_holds_only_the_rows_pandas_sample_draws(
        clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, split: SplitSpec, limit: int | None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 300)
    ref = table.write_table(clean_frame, str(tmp_path)).to_dict()
    parts = split_frame(clean_frame, dataset_spec, split)
    codes = table.split_ref(ref, parts.codes, parts.method, parts.warnings)
    whole = table.read_part(codes, "train")
    sampled = table.read_part(codes, "train", ["transaction_id", "amount"], limit=limit, seed=11)
    if limit is None:
        pd.testing.assert_frame_equal(sampled, whole[["transaction_id", "amount"]])
        return
    assert len(whole) > limit  # what DataFrame.sample (the sampling before the read) kept, in table order
    expected = whole.sample(n=limit, random_state=11).sort_index()[["transaction_id", "amount"]]
    pd.testing.assert_frame_equal(sampled, expected.reset_index(drop=True))
    other = table.read_part(codes, "train", ["transaction_id"], limit=limit, seed=12)
    assert set(other["transaction_id"]) != set(sampled["transaction_id"])


def test_frames_of_an_older_run_become_a_stored_table_and_a_split_reference(
        split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 300)
    ref = table.frames_ref({"train": split.train, "holdout": split.holdout}, str(tmp_path))
    assert ref["method"] == "frames" and ref["table"]["rows"] == len(split.train) + len(split.holdout)
    for name in ("train", "holdout"):
        pd.testing.assert_frame_equal(table.read_part(ref, name), getattr(split, name).reset_index(drop=True))
    assert table.read_part(ref, "validation").empty
    again = table.frames_ref({"train": split.train, "holdout": split.holdout}, str(tmp_path))
    assert again["table"]["uri"] == ref["table"]["uri"] and len(list(tmp_path.rglob("*.parquet"))) == 1  # once


def test_a_stored_table_that_is_gone_or_replaced_fails_with_its_uri(
        split: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "ROW_GROUP_ROWS", 300)
    ref = table.frames_ref({"train": split.train, "holdout": split.holdout}, str(tmp_path))
    uri = ref["table"]["uri"]
    other = table.write_table(split.train.head(500), str(tmp_path / "other"))
    Path(uri).write_bytes(Path(other.uri).read_bytes())  # another table under the name
    with pytest.raises(table.StoredTableError, match=rf"{re.escape(uri)} holds 500 rows in 2 row groups, not the "
                                                     rf"{ref['table']['rows']:,} rows in .* was replaced"):
        table.read_part(ref, "holdout")
    Path(uri).unlink()
    for read in (lambda: table.read_part(ref, "train"), lambda: table.read_columns(ref["table"], ["amount"]),
                 lambda: next(table.part_rows(ref, "train").batches())):
        with pytest.raises(table.StoredTableError, match=rf"{re.escape(uri)} \(.* rows in .* row groups, sha256 "
                                                         rf"{ref['table']['sha256'][:12]}\) is gone"):
            read()
    again = table.frames_ref({"train": split.train, "holdout": split.holdout}, str(tmp_path))  # the same data again
    assert again["table"]["uri"] == uri and len(table.read_part(ref, "holdout")) == len(split.holdout)


def test_a_part_is_read_with_the_system_allocator_and_the_default_comes_back(
        clean_frame: pd.DataFrame, dataset_spec: DatasetConfig, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa

    ref = table.write_table(clean_frame, str(tmp_path)).to_dict()
    codes = table.split_ref(ref, split_frame(clean_frame, dataset_spec, SplitSpec()).codes, "time", [])
    default, system = pa.default_memory_pool(), pa.system_memory_pool()
    before = system.bytes_allocated()
    holdout = table.read_part(codes, "holdout")  # its string columns keep Arrow buffers: from the system allocator
    assert system.bytes_allocated() > before and pa.default_memory_pool().backend_name == default.backend_name
    del holdout
    pools = []
    monkeypatch.setattr(table, "open_table", lambda ref: pools.append(pa.default_memory_pool().backend_name) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        table.read_part(codes, "train")
    assert pools == ["system"] and pa.default_memory_pool().backend_name == default.backend_name


@pytest.mark.parametrize("batch", [1, 4, 50])
def test_a_part_read_a_few_columns_at_a_time_is_the_frame_to_pandas_makes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, rng = 1000, np.random.default_rng(0)
    frame = pd.DataFrame({
        "i64": np.arange(n), "f64": rng.normal(size=n), "f_nan": np.where(rng.uniform(size=n) < .1, np.nan, 1.0),
        "s": rng.choice(["a", "b", None], n), "i32": np.arange(n, dtype=np.int32),
        "int_null": pd.array(np.where(np.arange(n) % 7 == 0, None, np.arange(n)), dtype="Int64"),
        "int_ext": pd.array(np.arange(n), dtype="Int64"), "b": rng.uniform(size=n) < .5,
        "t": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
        "cat": pd.Categorical(rng.choice(["x", "y"], n)), "u8": np.arange(n, dtype=np.uint8),
        "f32": np.ones(n, np.float32), "b2": np.arange(n) % 3 == 0,
        "t_naive": pd.date_range("2025-01-01", periods=n, freq="min"),
        "t_naive2": pd.date_range("2024-01-01", periods=n)})
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=128)
    pf = pq.ParquetFile(path)
    monkeypatch.setattr(table, "READ_BATCH_COLUMNS", batch)
    groups = list(range(pf.num_row_groups))
    got = table.frame_by_columns(lambda names: pf.read_row_groups(groups, columns=names), pf.schema_arrow,
                                 pf.schema_arrow.names, table.null_free_columns(pf, groups), n)
    expected = pq.read_table(path).to_pandas()
    pd.testing.assert_frame_equal(got, expected)
    assert got._mgr.nblocks == expected._mgr.nblocks  # numbers in one block per dtype, as to_pandas lays them out
    assert "int_null" not in table.null_free_columns(pf, groups) and "i64" in table.null_free_columns(pf, groups)
    assert table.frame_by_columns(lambda names: 1 / 0, pf.schema_arrow, [], set(), n).shape == (n, 0)
    twice = table.frame_by_columns(lambda names: pf.read_row_groups(groups, columns=names), pf.schema_arrow,
                                   ["f64", "s", "f64"], table.null_free_columns(pf, groups), n)
    pd.testing.assert_frame_equal(twice, expected[["f64", "s"]])  # a name given twice is read once


@pytest.mark.parametrize("batch", [1, 4])
def test_a_part_without_pandas_metadata_converts_as_to_pandas_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 600
    path = tmp_path / "plain.parquet"  # written by Arrow alone: no pandas metadata to say which integers are nullable
    columns = {"a": pa.array(range(n)), "with_null": pa.array([None if i % 5 == 0 else i for i in range(n)]),
               "x": pa.array(np.linspace(0, 1, n)), "later_null": pa.array([None] * 10 + list(range(n - 10)))}
    pq.write_table(pa.table(columns), path, row_group_size=100)
    pf = pq.ParquetFile(path)
    monkeypatch.setattr(table, "READ_BATCH_COLUMNS", batch)
    for groups in ([0, 1, 2, 3, 4, 5], [1, 2]):  # every row group, or only some (the nulls are in the first)
        got = table.frame_by_columns(lambda names, g=groups: pf.read_row_groups(g, columns=names), pf.schema_arrow,
                                     pf.schema_arrow.names, table.null_free_columns(pf, groups), 100 * len(groups))
        expected = pf.read_row_groups(groups).to_pandas()
        pd.testing.assert_frame_equal(got, expected)
        assert ("later_null" in table.null_free_columns(pf, groups)) == (groups == [1, 2])
    assert str(got["later_null"].dtype) == "int64" and str(expected["with_null"].dtype) == "float64"


def test_sample_positions_bounds() -> None:
    assert table.sample_positions(10, None, 0) is None and table.sample_positions(10, 10, 0) is None
    chosen = table.sample_positions(1000, 30, 4)
    assert chosen is not None and len(set(chosen)) == 30 and np.all(np.diff(chosen) > 0) and chosen.max() < 1000


# --------------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("name, blob", [
    ("data/broken.parquet", b"this is not parquet at all"),
    ("data/truncated.parquet", b"PAR1\x00\x00"),
    ("data/no_extension", b"\x00\x01\x02"),
    ("data/broken.csv", b"\xff\xfe\x00\x81 not utf-8"),
    ("data/broken.csv.gz", b"not gzip"),
    ("s3://bucket/key/broken.parquet?versionId=3", b"junk"),
])
def test_parse_table_on_corrupt_bytes_names_the_file(name: str, blob: bytes) -> None:
    with pytest.raises(DataValidationError) as info:
        parse_table(blob, name)
    assert info.value.source == name
    assert str(info.value).startswith(f"{name}: 1 validation error(s):")
    assert "file is not readable as " in str(info.value)


def test_parse_table_reads_csv_gzip_and_parquet(raw_frame: pd.DataFrame) -> None:
    small = raw_frame.head(50)
    csv = small.to_csv(index=False).encode()
    buf = io.BytesIO()
    small.to_parquet(buf)
    for name, blob in [("t.csv", csv), ("t.CSV", csv), ("t.csv.gz", gzip.compress(csv)), ("t.parquet", buf.getvalue())]:
        out = parse_table(blob, name)
        assert out.shape == small.shape, name
        assert out["transaction_id"].tolist() == small["transaction_id"].tolist()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("load")
    spec = synth.SynthSpec(rows=1500, seed=4, row_group_rows=500)
    parquet = synth.write_parquet(spec, folder / "t.parquet")
    csv = folder / "t.csv"
    synth.generate(spec).to_csv(csv, index=False)
    return {"parquet": parquet, "csv": csv}


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_load_from_path_records_lineage(files: dict[str, Path], dataset_spec: DatasetConfig, kind: str) -> None:
    path = files[kind]
    frame, lineage = load_table(str(path), dataset_spec)
    assert len(frame) == 1500
    assert lineage.source == str(path) and lineage.data_rev is None
    assert lineage.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lineage.size_bytes == path.stat().st_size and lineage.rows == 1500
    clean = validate(frame, dataset_spec, lineage.source)
    assert str(clean["event_time"].dt.tz) == "UTC"  # CSV strings and Parquet timestamps alike
    done = finish_lineage(lineage, clean, dataset_spec)
    assert done.rows == 1500 and done.sha256 == lineage.sha256
    assert done.time_min == clean["event_time"].min().isoformat()
    assert done.time_max == clean["event_time"].max().isoformat()
    assert done.time_min.startswith("2025-01-01") and done.time_max.startswith("2025-12-31")


def test_csv_and_parquet_load_the_same_rows(files: dict[str, Path], dataset_spec: DatasetConfig) -> None:
    a = validate(load_table(str(files["parquet"]), dataset_spec)[0], dataset_spec, "p")
    b = validate(load_table(str(files["csv"]), dataset_spec)[0], dataset_spec, "c")
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False)


def test_lineage_has_no_dvc_md5_for_files_outside_dvc(files: dict[str, Path], dataset_spec: DatasetConfig) -> None:
    _, lineage = load_table(str(files["parquet"]), dataset_spec)
    assert lineage.dvc_md5 is None


def test_load_missing_file_names_it(tmp_path: Path, dataset_spec: DatasetConfig) -> None:
    missing = tmp_path / "nope.parquet"
    with pytest.raises(FileNotFoundError, match="data file not found: .*nope.parquet"):
        load_table(str(missing), dataset_spec)


def test_load_of_a_folder_says_the_data_is_one_file(tmp_path: Path, dataset_spec: DatasetConfig) -> None:
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} is a folder: the data is one Parquet file"):
        load_table(str(tmp_path), dataset_spec)


@pytest.mark.parametrize("source", ["/abs/data.parquet", "s3://bucket/data.parquet"])
def test_data_rev_needs_a_repository_path(dataset_spec: DatasetConfig, source: str) -> None:
    with pytest.raises(ValueError, match="--data-rev needs a path inside the DVC repository"):
        load_table(source, dataset_spec, data_rev="HEAD")


# --------------------------------------------------------------------------------------------------- derived columns
def derived_spec(op: str = ">", value: float | str = 15) -> DatasetConfig:
    return DatasetConfig.model_validate({
        "name": "flights", "path": "f.parquet", "id": None, "time": "time_hour",
        "target": {"name": "is_delayed", "derive": {"source": "arr_delay", "op": op, "value": value},
                   "min_positives": 1, "max_positive_rate": 1.0},
        "numeric": {"distance": {"min": 0}}, "categorical": {"origin": {"categories": ["EWR", "JFK", "LGA"]}},
        "min_rows": 1,
    })


def flights() -> pd.DataFrame:
    return pd.DataFrame({
        "time_hour": ["2013-01-01 05:00:00", "2013-01-01 06:00:00", "2013-01-01T07:00:00Z", "2013-01-02 05:00:00",
                      "2013-01-02 09:00:00+01:00"],
        "arr_delay": [30.0, np.nan, 5.0, 15.0, 16.0],
        "distance": [100.0, 200.0, 300.0, 400.0, 500.0],
        "origin": ["EWR", "JFK", "LGA", "EWR", "JFK"],
    })


@pytest.mark.parametrize("op, value, expected", [
    (">", 15, [1, 0, 0, 1]),
    (">=", 15, [1, 0, 1, 1]),
    ("<", 15, [0, 1, 0, 0]),
    ("<=", 15.0, [0, 1, 1, 0]),
    ("==", 15, [0, 0, 1, 0]),
    ("!=", 15, [1, 1, 0, 1]),
])
def test_derive_columns_derives_the_target_and_adds_no_id(op: str, value: float, expected: list[int]) -> None:
    raw = flights()
    before = raw.copy()
    out = derive_columns(raw, derived_spec(op, value))
    pd.testing.assert_frame_equal(raw, before)  # the input is not modified
    assert out["is_delayed"].tolist() == expected and out["is_delayed"].dtype == "int64"
    assert "row_id" not in out.columns and "row_key" not in out.columns  # id: null means no id column, none made up
    assert out["distance"].tolist() == [100.0, 300.0, 400.0, 500.0]  # the row without arr_delay is dropped
    assert validate(out, derived_spec(op, value), "f")["time_hour"].iloc[-1] == pd.Timestamp("2013-01-02 08:00",
                                                                                             tz="UTC")


def test_derived_dataset_validates_end_to_end() -> None:
    spec = derived_spec()
    assert set(expected_columns(spec)) == {"time_hour", "distance", "origin", "arr_delay"}
    out = validate(derive_columns(flights(), spec), spec, "flights.parquet")
    assert list(out.columns) == ["time_hour", "distance", "origin", "is_delayed"]
    assert out["is_delayed"].sum() == 2


def test_derive_columns_without_derivation_keeps_the_frame(raw_frame: pd.DataFrame,
                                                           dataset_spec: DatasetConfig) -> None:
    out = derive_columns(raw_frame, dataset_spec)
    pd.testing.assert_frame_equal(out, raw_frame)
    assert "row_id" not in out.columns


def test_derive_columns_when_the_source_column_is_missing() -> None:
    out = derive_columns(flights().drop(columns="arr_delay"), derived_spec())
    assert "is_delayed" not in out.columns and len(out) == 5
    err = violations(out, derived_spec())
    assert "missing columns: ['arr_delay']" in str(err)


def test_an_s3_source_without_credentials_is_a_data_source_error_naming_it(monkeypatch, tmp_path) -> None:
    from steps.data.load import DataSourceError, read_source

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("METAFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9/no-credentials-test")  # a client of its own
    with pytest.raises(DataSourceError, match=r"^cannot read s3://my-bucket/x.parquet: NoCredentialsError: Unable "
                                              "to locate credentials$"):
        read_source("s3://my-bucket/x.parquet")


def test_only_a_valid_file_is_stored_in_the_data_remote(files: dict[str, Path], dataset_spec: DatasetConfig,
                                                        tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    bad = tmp_path / "bad.parquet"
    pd.read_parquet(files["parquet"]).drop(columns=["country"]).to_parquet(bad)
    with pytest.raises(DataValidationError, match=rf"(?s){re.escape(str(bad))}: 1 validation error.*missing columns"):
        load_table(str(bad), dataset_spec, remote=str(remote))
    assert not remote.exists() or not any(p.is_file() for p in remote.rglob("*"))  # nothing stored
    _, lineage = load_table(str(files["parquet"]), dataset_spec, remote=str(remote))
    assert Path(lineage.extra["content"]["object"]).read_bytes() == files["parquet"].read_bytes()


@pytest.mark.parametrize("group_rows", [64, 1000])
def test_whole_columns_read_one_at_a_time_are_the_frame_to_pandas_makes(tmp_path: Path, group_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, rng = 500, np.random.default_rng(1)
    frame = pd.DataFrame({
        "i64": np.arange(n), "f_nan": np.where(rng.uniform(size=n) < .1, np.nan, 1.0),
        "u8": np.arange(n, dtype=np.uint8),
        "int_ext": pd.array(np.arange(n), dtype="Int64"), "s": rng.choice(["a", None], n), "b": np.arange(n) % 2 == 0,
        "t_utc": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC").as_unit("us"),
        "t_paris": pd.date_range("2025-03-30", periods=n, freq="min", tz="Europe/Paris"),
        "t_naive": pd.date_range("2025-01-01", periods=n, freq="s"), "cat": pd.Categorical(rng.choice(["x", "y"], n)),
        "t_objects": pd.Series(list(pd.date_range("2025-01-01", periods=n, tz="UTC")), dtype=object),
        "target": np.arange(n) % 2})
    path = tmp_path / "whole.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=group_rows)
    ref = {"uri": str(path)}
    expected = pq.read_table(path).to_pandas()
    pd.testing.assert_frame_equal(table.read_columns(ref), expected)
    names = ["t_paris", "i64", "target", "i64"]
    got = table.read_columns(ref, names, {"target": "int8"})
    assert list(got.columns) == ["t_paris", "i64", "target"] and got["target"].dtype == np.int8
    pd.testing.assert_frame_equal(got.astype({"target": "int64"}), expected[["t_paris", "i64", "target"]])
    assert table._fillable(pq.ParquetFile(path), list(frame.columns)) == {
        "i64", "u8", "t_utc", "t_paris", "t_naive", "t_objects", "target"}  # not a column with a null (f_nan's
    # NaN), an Int64, a string, a bool or a dictionary: those are read whole
    for name in ("i64", "int_ext"):  # read into its array; read whole (a stored Int64)
        with pytest.raises(ValueError, match=f"column '{name}' of .*whole.parquet cannot be held as int8: .*not in "):
            table.read_columns(ref, [name], {name: "int8"})  # 499 does not fit: never wrapped around
    assert table.read_columns(ref, []).shape == (n, 0)
