"""steps/synth.py: deterministic bytes, a realistic shape, group-dependent base rates and working drift knobs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from steps.config import DatasetConfig
from steps.data import synth
from steps.data.contract import expected_columns, validate
from steps.data.synth import SynthSpec

ROOT = Path(__file__).resolve().parents[2]
DRIFT_MONTH = 6  # 0-based: July of the default 2025 year


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def after(frame: pd.DataFrame, spec: SynthSpec, month: int) -> pd.Series:
    """Rows at or after 0-based ``month`` of ``spec``."""
    cut = pd.Timestamp(spec.start, tz="UTC") + pd.DateOffset(months=month)
    return frame["event_time"] >= cut


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """200k rows without drift (a third of a second to generate)."""
    return synth.generate(SynthSpec(rows=200_000, seed=5))


# --------------------------------------------------------------------------------------------------- determinism
def test_same_spec_gives_identical_bytes(tmp_path: Path) -> None:
    spec = SynthSpec(rows=5_000, seed=9, row_group_rows=2_000, covariate_drift_month=3, concept_drift_month=8)
    first = synth.write_parquet(spec, tmp_path / "a" / "one.parquet")
    second = synth.write_parquet(spec, tmp_path / "b" / "two.parquet")
    assert first.read_bytes() == second.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["one.parquet"]  # no temporary file left behind


def test_generate_is_deterministic() -> None:
    spec = SynthSpec(rows=3_000, seed=4, row_group_rows=1_000)
    pd.testing.assert_frame_equal(synth.generate(spec), synth.generate(spec))


@pytest.mark.parametrize("other", [
    SynthSpec(rows=4_000, seed=2),
    SynthSpec(rows=4_000, seed=1, start="2024-01-01"),
    SynthSpec(rows=4_000, seed=1, concept_drift_month=0),
])
def test_different_specs_give_different_data(tmp_path: Path, other: SynthSpec) -> None:
    base = SynthSpec(rows=4_000, seed=1)
    assert sha256(synth.write_parquet(base, tmp_path / "base.parquet")) != \
        sha256(synth.write_parquet(other, tmp_path / "other.parquet"))


def test_different_seeds_differ_in_values() -> None:
    a = synth.generate(SynthSpec(rows=2_000, seed=1))
    b = synth.generate(SynthSpec(rows=2_000, seed=2))
    assert (a["amount"] != b["amount"]).mean() > 0.95
    assert (a["merchant_category"] != b["merchant_category"]).mean() > 0.8
    assert (a["transaction_id"] == b["transaction_id"]).all()  # ids are positional


def test_chunks_are_independent_of_each_other() -> None:
    spec = SynthSpec(rows=3_000, seed=8, row_group_rows=1_000)
    whole = synth.generate(spec)
    middle = synth.generate_chunk(spec, 1_000, 1_000)
    pd.testing.assert_frame_equal(middle, whole.iloc[1_000:2_000].reset_index(drop=True))


def test_parquet_round_trip_matches_generate(tmp_path: Path) -> None:
    spec = SynthSpec(rows=2_500, seed=3, row_group_rows=1_000)
    back = pd.read_parquet(synth.write_parquet(spec, tmp_path / "t.parquet"))
    pd.testing.assert_frame_equal(back, synth.generate(spec))


@pytest.mark.parametrize("rows, row_group_rows, sizes", [
    (10_500, 2_000, [2_000] * 5 + [500]),
    (4_000, 4_000, [4_000]),
    (3_000, 10_000, [3_000]),
    (2_001, 1_000, [1_000, 1_000, 1]),
])
def test_row_groups_follow_row_group_rows(tmp_path: Path, rows: int, row_group_rows: int, sizes: list[int]) -> None:
    path = synth.write_parquet(SynthSpec(rows=rows, seed=1, row_group_rows=row_group_rows), tmp_path / "rg.parquet")
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == sizes
    assert meta.num_rows == rows


def test_zero_rows_gives_an_empty_table_with_the_schema(tmp_path: Path) -> None:
    spec = SynthSpec(rows=0)
    assert synth.generate(spec).empty
    back = pd.read_parquet(synth.write_parquet(spec, tmp_path / "empty.parquet"))
    assert len(back) == 0
    assert list(back.columns) == list(synth.generate(SynthSpec(rows=10)).columns)


@pytest.mark.parametrize("kwargs", [{"rows": -1}, {"months": 0}, {"row_group_rows": 0}])
def test_spec_rejects_bad_sizes(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="rows must be >= 0"):
        SynthSpec(**kwargs)


def test_cli_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "cli" / "t.parquet"
    synth.main(["--rows", "1500", "--seed", "3", "--row-group-rows", "500", "--out", str(out)])
    assert pq.ParquetFile(out).metadata.num_row_groups == 3
    assert out.read_bytes() == synth.write_parquet(SynthSpec(rows=1500, seed=3, row_group_rows=500),
                                                   tmp_path / "api.parquet").read_bytes()


# --------------------------------------------------------------------------------------------------- shape
def test_columns_match_the_dataset_schema(raw_frame: pd.DataFrame, dataset_spec: DatasetConfig) -> None:
    assert raw_frame.shape[1] >= 20
    assert set(raw_frame.columns) == set(expected_columns(dataset_spec))
    assert raw_frame["transaction_id"].tolist() == list(range(1, len(raw_frame) + 1))
    assert str(raw_frame["event_time"].dt.tz) == "UTC"
    validated = validate(raw_frame, dataset_spec, "synth")  # raises on any violation
    assert len(validated) == len(raw_frame)


def test_missing_values_are_sparse(big: pd.DataFrame) -> None:
    assert 0.005 < big["device_type"].isna().mean() < 0.02
    assert 0.01 < big["km_from_home"].isna().mean() < 0.03
    assert big.drop(columns=["device_type", "km_from_home"]).notna().all().all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_prevalence_between_one_and_five_percent(seed: int) -> None:
    rate = synth.generate(SynthSpec(rows=30_000, seed=seed))["is_fraud"].mean()
    assert 0.01 <= rate <= 0.05


@pytest.mark.parametrize("start, months", [("2025-01-01", 12), ("2024-02-01", 3), ("2023-11-01", 4), ("2025-06-01", 1)])
def test_timestamps_span_the_configured_months(start: str, months: int) -> None:
    spec = SynthSpec(rows=6_000, seed=2, start=start, months=months)
    t = synth.generate(spec)["event_time"]
    begin = pd.Timestamp(start, tz="UTC")
    end = begin + pd.DateOffset(months=months)
    assert t.min() >= begin and t.max() < end
    assert t.is_monotonic_increasing
    seen = t.dt.tz_localize(None).dt.to_period("M")
    expected = pd.period_range(begin.tz_localize(None), periods=months, freq="M")
    assert sorted(seen.unique()) == list(expected)
    # rows spread evenly over time: each month holds its share of days, within 10%
    share = seen.value_counts(normalize=True)
    days = pd.Series({p: p.days_in_month for p in expected}, dtype=float)
    assert np.allclose(share.sort_index().to_numpy(), (days / days.sum()).to_numpy(), rtol=0.1)
    assert t.iloc[0] - begin < pd.Timedelta(days=1) and end - t.iloc[-1] < pd.Timedelta(days=1)


def test_derived_columns_are_consistent(big: pd.DataFrame) -> None:
    present = big["channel"].isin(["pos_chip", "contactless", "atm"])
    assert (big["card_present"] == present.astype(int)).all()
    assert (big["txn_count_24h"] >= big["txn_count_1h"]).all()
    assert big["hour"].between(0, 23).all() and big["day_of_week"].between(0, 6).all()
    assert (big["day_of_week"] == big["event_time"].dt.dayofweek).all()
    assert (big.loc[big["card_present"] == 0, "failed_pin_attempts_24h"] == 0).all()
    assert (big["region"] == big["country"].map(synth.COUNTRIES)).all()


# --------------------------------------------------------------------------------------------------- base rates
@pytest.mark.parametrize("column, high, low, ratio", [
    ("customer_age_band", "18-25", "36-50", 1.15),
    ("customer_age_band", "65+", "36-50", 1.1),
    ("region", "mea", "europe", 1.2),
    ("region", "latam", "europe", 1.2),
])
def test_group_dependent_base_rates(big: pd.DataFrame, column: str, high: str, low: str, ratio: float) -> None:
    rates = big.groupby(column)["is_fraud"].mean()
    assert rates[high] > ratio * rates[low], rates.to_dict()


def test_fraud_follows_the_known_rule(big: pd.DataFrame) -> None:
    rate = big["is_fraud"].mean()
    high_risk = big["merchant_category"].isin(synth.HIGH_RISK_MERCHANTS)
    night_ecom = (big["hour"] <= 5) & (big["channel"] == "ecommerce")
    assert big.loc[high_risk, "is_fraud"].mean() > 1.5 * big.loc[~high_risk, "is_fraud"].mean()
    assert big.loc[night_ecom, "is_fraud"].mean() > 3 * rate
    assert big.loc[big["customer_tenure_days"] < 90, "is_fraud"].mean() > 2 * rate


# --------------------------------------------------------------------------------------------------- drift knobs
@pytest.fixture(scope="module")
def covariate() -> tuple[SynthSpec, pd.DataFrame, pd.DataFrame]:
    spec = SynthSpec(rows=60_000, seed=13)
    drifted = synth.generate(SynthSpec(rows=60_000, seed=13, covariate_drift_month=DRIFT_MONTH))
    return spec, synth.generate(spec), drifted


def test_covariate_drift_shifts_amount_and_channel_from_the_month(covariate) -> None:
    spec, base, drifted = covariate
    late = after(base, spec, DRIFT_MONTH)
    assert 0.4 < late.mean() < 0.6
    amount_shift = drifted.loc[late, "amount"].median() / base.loc[late, "amount"].median()
    assert 1.25 < amount_shift < 1.45
    ecom_base = (base.loc[late, "channel"] == "ecommerce").mean()
    ecom_drift = (drifted.loc[late, "channel"] == "ecommerce").mean()
    assert ecom_drift > ecom_base + 0.12
    assert drifted.loc[late, "txn_count_1h"].mean() > 2 * base.loc[late, "txn_count_1h"].mean()
    # without the knob, late and early months look alike
    assert 0.9 < base.loc[late, "amount"].median() / base.loc[~late, "amount"].median() < 1.1


def test_covariate_drift_leaves_earlier_months_untouched(covariate) -> None:
    spec, base, drifted = covariate
    early = ~after(base, spec, DRIFT_MONTH)
    pd.testing.assert_frame_equal(drifted.loc[early], base.loc[early])
    assert not drifted.loc[~early, "amount"].equals(base.loc[~early, "amount"])


@pytest.mark.parametrize("month", [2, 9])
def test_covariate_drift_starts_exactly_at_its_month(month: int) -> None:
    spec = SynthSpec(rows=24_000, seed=3, covariate_drift_month=month)
    drifted = synth.generate(spec)
    base = synth.generate(SynthSpec(rows=24_000, seed=3))
    month_of = drifted["event_time"].dt.month - 1
    before, at = month_of == month - 1, month_of == month
    assert (drifted.loc[before, "amount"] == base.loc[before, "amount"]).all()
    assert (drifted.loc[at, "amount"] > base.loc[at, "amount"]).mean() > 0.95  # scaled by 1.35 (clipped, rounded)


def test_zero_drift_strength_changes_nothing() -> None:
    base = synth.generate(SynthSpec(rows=5_000, seed=6))
    none = synth.generate(SynthSpec(rows=5_000, seed=6, covariate_drift_month=2, covariate_drift_strength=0.0,
                                    concept_drift_month=2, concept_drift_strength=0.0))
    pd.testing.assert_frame_equal(none, base)


@pytest.fixture(scope="module")
def concept() -> tuple[SynthSpec, pd.DataFrame, pd.DataFrame]:
    spec = SynthSpec(rows=200_000, seed=5)
    drifted = synth.generate(SynthSpec(rows=200_000, seed=5, concept_drift_month=DRIFT_MONTH))
    return spec, synth.generate(spec), drifted


def test_concept_drift_changes_only_labels(concept) -> None:
    spec, base, drifted = concept
    pd.testing.assert_frame_equal(drifted.drop(columns="is_fraud"), base.drop(columns="is_fraud"))
    early = ~after(base, spec, DRIFT_MONTH)
    assert (drifted.loc[early, "is_fraud"] == base.loc[early, "is_fraud"]).all()
    assert (drifted.loc[~early, "is_fraud"] != base.loc[~early, "is_fraud"]).any()


def test_concept_drift_changes_the_label_rule(concept) -> None:
    spec, base, drifted = concept
    late = after(base, spec, DRIFT_MONTH)
    burst = (base["channel"] == "contactless") & (base["txn_count_1h"] >= 3)
    night_ecom = (base["hour"] <= 5) & (base["channel"] == "ecommerce")
    small = base["amount"] < 5.0
    assert (burst & late).sum() > 100
    # contactless bursts become fraud after the drift month ...
    assert drifted.loc[burst & late, "is_fraud"].mean() > 2 * base.loc[burst & late, "is_fraud"].mean()
    assert drifted.loc[burst & late, "is_fraud"].mean() > 2 * drifted.loc[burst & ~late, "is_fraud"].mean()
    # ... so do small card-testing amounts, while night e-commerce fraud fades
    assert drifted.loc[small & late, "is_fraud"].mean() > 3 * base.loc[small & late, "is_fraud"].mean()
    assert drifted.loc[night_ecom & late, "is_fraud"].mean() < 0.5 * base.loc[night_ecom & late, "is_fraud"].mean()
