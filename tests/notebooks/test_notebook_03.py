"""Execute notebook 03 headless on a ScoreFlow run of its own (train_run's model, two invalid rows) and check it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from notebook_cells import ROOT, assert_ran_on_the_venv_kernel_in, charts, data, execute, table, text
from support import FORCE_TINY, run_flow

from steps.scoring.partition import read_manifest

NOTEBOOK = ROOT / "notebooks" / "03-audit-scored-partition.ipynb"
DAY = "2026-03-01"


@pytest.fixture(scope="module")
def score_run(root, workspace, config_paths, tiny_data, train_run, tmp_path_factory) -> Any:
    """A ScoreFlow run over the tiny data with two invalid rows, in three shards."""
    directory = tmp_path_factory.mktemp("nb03")
    frame = pd.read_parquet(tiny_data)
    frame.loc[10, "amount"], frame.loc[3000, "region"] = -1.0, None
    source = directory / "input.parquet"
    frame.to_parquet(source, row_group_size=2000, index=False)
    config = directory / "score.yaml"
    config.write_text(yaml.safe_dump({"shard_rows": 2000, "batch_rows": 1000}))
    configs = {"dataset": config_paths["dataset"], "gates": config_paths["gates"],
               "profile": config_paths["profile"], "score": config}
    result = run_flow(root, workspace, "score_flow.py", configs, input=str(source),
                      output=str(directory / "predictions"), date=DAY, model_run=train_run.id, force=FORCE_TINY)
    assert result.status == "successful", (result.stdout + result.stderr)[-4000:]
    return result.run


@pytest.fixture(scope="module")
def executed(score_run, workspace: Path, kernel_dir: Path) -> dict[str, Any]:
    """Notebook 03 executed in the workspace on ``score_run``; its code cells by id."""
    return execute(NOTEBOOK, workspace, kernel_dir, {"SCORE_RUN_ID": score_run.id})


def test_runs_on_the_venv_kernel_in_the_workspace(executed, workspace: Path) -> None:
    assert_ran_on_the_venv_kernel_in(executed, workspace)


def test_reads_the_requested_run_and_its_partition(executed, score_run) -> None:
    out = text(executed["run"])
    assert f"run: {score_run.pathspec} (successful: True)" in out
    assert f"/predictions/dt={DAY}" in out


def test_manifest_overview_and_shards(executed, score_run, train_run) -> None:
    overview = {row[""]: row["value"] for row in table(data(executed["manifest"], "text/html"))}
    assert overview["written by"] == score_run.pathspec and overview["model run"] == train_run.pathspec
    assert overview["model sha256"] == train_run.data.model_fingerprint
    assert (overview["rows in"], overview["rows scored"], overview["rows quarantined"]) == ("6000", "5998", "2")
    shards = table(data(executed["shards"], "text/html"))
    assert [r["rows_out"] for r in shards] == ["1999", "1999", "2000"]


def test_row_counts_are_recomputed_and_pass(executed) -> None:
    assert "all checks pass: True" in text(executed["counts"])
    checks = table(data(executed["counts"], "text/html"))
    assert len(checks) == 3 * 2 + 4 and all(row["ok"] == "True" for row in checks)


def test_score_distribution_review_rate_and_reasons(executed, score_run) -> None:
    manifest = read_manifest(*(score_run.data.plan[k] for k in ("output_root", "date")))
    bins = table(data(executed["scores"], "text/html"))
    assert len(bins) == 10 and sum(int(r["rows"]) for r in bins) == 5998
    (plot,) = charts(executed["score-plot"])
    assert sum(r["rows"] for r in plot["data"]["values"]) == 5998  # every scored row in one of its bins
    review = {row[""]: row["value"] for row in table(data(executed["review"], "text/html"))}
    assert review["rows"] == "5998" and review["review flags match the band"] == "True"
    assert 0.0 <= float(review["review rate"]) <= 1.0
    reasons = {row[""]: row["rows"] for row in table(data(executed["quarantine"], "text/html"))}
    assert reasons == {"amount below min 0": "1", "region is null": "1"}
    assert manifest["totals"]["rows_quarantined"] == 2
