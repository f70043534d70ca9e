"""ScoreFlow end to end through metaflow.Runner: real runs on 6,000 rows in 3 shards.

The main run plants everything at once (five invalid rows, a shard killed mid-write on its first attempt, a spot
termination notice for another shard's first attempt), so one run proves retries, quarantine and exactly-once
output; the other runs cover rerun, resume, the quarantine gate and bad input (the champion, top-k, shadow and ONNX
runs, on the gates branch, are in test_score_on_gates_branch.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from metaflow import Runner
from support import (
    FORCE_TINY,
    SCREENSHOTS,
    FlowResult,
    assert_user_error,
    card_text,
    chromium,
    logs,
    render_card,
    run_cli,
    score_configs as configs_for,
    score_flow,
)

from steps.modeling import models
from steps.reporting.runs import card_html
from steps.scoring.faults import FAULT_ENV
from steps.scoring.partition import read_manifest, read_partition
from steps.scoring.shard import SPOT_NOTICE_ENV

D_MAIN, D_RESUME, D_BAD, D_EMPTY = "2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"
PLANTED = {5: ("amount", -3.0), 2100: ("amount", -1.0), 4100: ("hour", 31), 7: ("channel", "carrier_pigeon"),
           9: ("amount", None)}  # row position -> (column, value): five invalid rows across the three shards


# --------------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("score")


@pytest.fixture(scope="module")
def tainted(tiny_data: Path, scratch: Path) -> Path:
    """The tiny data with five invalid rows; row groups of 2,000 rows (so three shards of 2,000)."""
    frame = pd.read_parquet(tiny_data)
    for row, (column, value) in PLANTED.items():
        frame.loc[row, column] = value
    path = scratch / "tainted" / "part-a.parquet"
    path.parent.mkdir()
    frame.to_parquet(path, row_group_size=2000, index=False)
    return path


def shard_tasks(run) -> dict[int, Any]:
    """The successful score_shard task of each shard, by shard index."""
    return {task.data.shard_result["shard"]: task for task in run["score_shard"]}


@dataclass
class Snapshot:
    """A partition as it was right after a run (later tests rewrite the same date)."""

    result: FlowResult
    manifest: dict[str, Any]
    table: pd.DataFrame
    files: list[str]


def snapshot(result: FlowResult, output: Path, day: str) -> Snapshot:
    manifest = read_manifest(str(output), day)
    table = read_partition(str(output), day, verify=True).to_pandas() if manifest else pd.DataFrame()
    files = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    return Snapshot(result, manifest, table, files)


# --------------------------------------------------------------------------------------------------- main run
@pytest.fixture(scope="module")
def main_run(root, workspace, config_paths, scratch, tainted, train_run) -> Snapshot:
    """Shard 0 dies mid-write on attempt 0 (process exit); on attempt 0 of shard 1 a spot notice appears mid-shard,
    after its first record batch was written (as the spot monitor writes it when the instance is reclaimed)."""
    notices = scratch / "notices"
    notices.mkdir()
    output = scratch / "out-main"
    faults = [{"enabled": True, "shards": [0], "attempts": [0], "after_batches": 2},
              {"enabled": True, "shards": [1], "attempts": [0], "after_batches": 1, "mode": "notice"}]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(FAULT_ENV, json.dumps(faults))
        mp.setenv(SPOT_NOTICE_ENV, str(notices / "notice-{shard}-{attempt}"))
        result = score_flow(root, workspace, configs_for(config_paths, scratch, "main"), input=str(tainted),
                            output=str(output), date=D_MAIN, model_run=train_run.id, force=FORCE_TINY)
    assert result.status == "successful", logs(result)[-4000:]
    return snapshot(result, output, D_MAIN)


def test_partition_holds_every_valid_row_exactly_once(main_run, tainted):
    frame = pd.read_parquet(tainted)
    valid_ids = frame.drop(index=list(PLANTED))["transaction_id"]
    out = main_run.table
    assert len(out) == 5995 and out["transaction_id"].is_unique
    assert set(out["transaction_id"]) == set(valid_ids)
    assert main_run.manifest["totals"] == {"rows_in": 6000, "rows_out": 5995, "rows_quarantined": 5,
                                           "quarantine_rate": 5 / 6000}
    parts = [f"dt={D_MAIN}/part-0000{i}-of-00003-c00000001.parquet" for i in range(3)]  # named after the run's claim
    quarantine = [f"_quarantine/dt={D_MAIN}/part-0000{i}-of-00003-c00000001.parquet" for i in range(3)]
    assert main_run.files == sorted([*parts, *quarantine, f"dt={D_MAIN}/_manifest.json",
                                     f"_claims/dt={D_MAIN}/00000001.json"])  # no temporary files
    assert main_run.manifest["claim"] == 1
    assert [p["path"] for p in main_run.manifest["parts"]] == parts


def test_runs_cli_shows_the_partition_and_its_totals(main_run, workspace, train_run, tmp_path):
    run = main_run.result.run
    card = tmp_path / "score.html"
    proc = run_cli(workspace, "steps.reporting.runs", "ScoreFlow", "--run-id", run.id, "--card-out", str(card))
    assert proc.returncode == 0, proc.stderr
    assert f"join card: {card.resolve()}" in proc.stdout and f"dt={D_MAIN} written:" in card_text(card.read_text())
    assert f"run: {run.pathspec}\n" in proc.stdout and f"model: {train_run.pathspec} (" in proc.stdout
    assert f"/out-main/dt={D_MAIN}/ from " in proc.stdout
    assert "totals: 6000 rows in, 5995 scored, 5 quarantined (0.0833%) in 3 shards" in proc.stdout


def test_the_card_says_what_was_written_and_why_rows_were_quarantined(main_run, train_run):
    text = card_text(card_html(main_run.result.run, step="join", card_id="scoring"))
    assert f"dt={D_MAIN} written:" in text and "5,995 of 6,000 rows scored, 5 quarantined (0.08%" in text
    assert f"sha256 {train_run.data.model_fingerprint[:12]}" in text
    for reason in ("amount below min 0", "channel unknown category", "amount is null", "hour above max 23"):
        assert reason in text
    assert "carrier_pigeon" not in text  # reasons are counted without their values (those are in the files)


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_card_fits_a_laptop_window(main_run, tmp_path):
    measured = render_card(card_html(main_run.result.run, step="join", card_id="scoring"), "score", tmp_path)
    assert measured["scrollWidth"] <= measured["viewport"] == 1400
    assert [t for t in measured["tables"] if t["scrollWidth"] > t["clientWidth"] + 1] == []
    assert (SCREENSHOTS / "score.png").stat().st_size > 10_000


def test_invalid_rows_are_quarantined_with_a_reason(main_run, scratch, tainted):
    q = pd.concat([pd.read_parquet(scratch / "out-main" / p["path"]) for p in main_run.manifest["quarantine_parts"]])
    ids = pd.read_parquet(tainted)["transaction_id"]
    assert sorted(q["transaction_id"]) == sorted(ids[list(PLANTED)])
    reasons = dict(zip(q["transaction_id"], q["reason"], strict=True))
    assert reasons[ids[5]] == "amount below min 0 (got -3.0)"
    assert reasons[ids[7]] == "channel unknown category (got 'carrier_pigeon')"
    assert reasons[ids[9]] == "amount is null"
    assert reasons[ids[4100]] == "hour above max 23 (got 31)"
    assert set(q["source"]) == {str(tainted)}


def test_scores_are_the_models_and_the_run_records_it(main_run, train_run, tainted, spec):
    run = main_run.result.run
    assert run.data.model_run_used == train_run.pathspec
    assert run.data.model_fingerprint == train_run.data.model_fingerprint
    assert run.data.model_name == train_run.data.model_name
    assert main_run.manifest["forced"] == {"reason": FORCE_TINY, "by": "ci",
                                           "overrides": {"model": ["it did not pass its gates"]}}
    assert main_run.manifest["model"] == {"run": train_run.pathspec, "name": train_run.data.model_name,
                                          "fingerprint": train_run.data.model_fingerprint,
                                          "dataset": "card_transactions"}
    out = main_run.table
    assert set(out["model_run"]) == {train_run.pathspec}
    assert set(out["model_fingerprint"]) == {train_run.data.model_fingerprint}
    pipeline = models.deserialize(train_run.data.model_blob, train_run.data.model_fingerprint)
    frame = pd.read_parquet(tainted).set_index("transaction_id").loc[out["transaction_id"]].reset_index()
    np.testing.assert_allclose(out["score"], models.predict_proba(pipeline, frame, spec), rtol=0, atol=1e-12)
    assert (out["decision"] == (out["score"] >= 0.3)).all()
    assert (out["review"] == out["score"].between(0.4, 0.6)).all()


def test_the_manifest_names_file_and_uncompressed_sizes(main_run, tainted):
    [entry] = main_run.manifest["input"]["files"]
    assert entry["path"] == str(tainted) and entry["rows"] == 6000 and entry["row_groups"] == [2000, 2000, 2000]
    assert entry["file_bytes"] == tainted.stat().st_size  # on storage
    footer = pq.ParquetFile(tainted).metadata
    assert entry["uncompressed_bytes"] == sum(footer.row_group(i).total_byte_size for i in range(3))


def test_each_shard_logs_its_progress_at_info(main_run):
    for index, task in shard_tasks(main_run.result.run).items():
        rows = task.data.shard_result["rows_in"]
        assert f"INFO steps.scoring.shard: shard {index}: {rows:,} rows in " in task.stderr  # readable in `logs`


def test_killed_and_reclaimed_shards_were_retried(main_run, scratch):
    tasks = shard_tasks(main_run.result.run)
    assert {i: t.current_attempt for i, t in tasks.items()} == {0: 1, 1: 1, 2: 0}
    assert {r["shard"]: r["attempt"] for r in main_run.manifest["shards"]} == {0: 1, 1: 1, 2: 0}
    text = logs(main_run.result)
    assert "fault injection: shard 0 attempt 0 after 2 batch(es) written to" in text
    assert (f"spot termination notice at {scratch / 'notices' / 'notice-1-0'} shard 1 attempt 0 after 1 batch(es)"
            in text)  # it appeared mid-shard
    assert "shard 1 attempt 0 stops" in text
    removed = main_run.manifest["removed"]  # the killed attempt's temporary files, swept by join
    assert any(name.startswith(f"dt={D_MAIN}/.part-00000-of-00003-c00000001.parquet.tmp-") for name in removed), \
        removed


# --------------------------------------------------------------------------------------------------- rerun, resume
def test_rerun_replaces_the_date_without_duplicates(root, workspace, config_paths, scratch, tainted, train_run,
                                                    main_run):
    output = scratch / "out-main"
    stale = output / f"dt={D_MAIN}" / "part-00009-of-00010.parquet"  # a leftover of some older layout
    shutil.copy(output / main_run.manifest["parts"][0]["path"], stale)
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "rerun", shard_rows=4000),
                        input=str(tainted), output=str(output), date=D_MAIN, model_run=train_run.id, force=FORCE_TINY)
    assert result.status == "successful", logs(result)[-4000:]
    assert result.run["start"].task.data.retracted_manifest is True
    after = snapshot(result, output, D_MAIN)
    assert [p["path"] for p in after.manifest["parts"]] == [f"dt={D_MAIN}/part-0000{i}-of-00002-c00000002.parquet"
                                                            for i in range(2)]  # the rerun's claim: the second
    assert sorted(after.manifest["removed"]) == sorted(
        [*[f"dt={D_MAIN}/part-0000{i}-of-00003-c00000001.parquet" for i in range(3)],
         f"dt={D_MAIN}/part-00009-of-00010.parquet",
         *[f"_quarantine/dt={D_MAIN}/part-0000{i}-of-00003-c00000001.parquet" for i in range(3)]])
    assert len(after.table) == 5995 and after.table["transaction_id"].is_unique
    assert sorted(p.name for p in (output / f"dt={D_MAIN}").iterdir()) == [
        "_manifest.json", "part-00000-of-00002-c00000002.parquet", "part-00001-of-00002-c00000002.parquet"]


def test_resume_reuses_finished_shards(root, workspace, config_paths, scratch, tiny_data, train_run):
    output = scratch / "out-resume"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(FAULT_ENV, json.dumps({"enabled": True, "shards": [2], "attempts": [0, 1], "mode": "raise"}))
        failed = score_flow(root, workspace, configs_for(config_paths, scratch, "resume"), input=str(tiny_data),
                            output=str(output), date=D_RESUME, model_run=train_run.id, force=FORCE_TINY)
    assert failed.status == "failed"
    assert read_manifest(str(output), D_RESUME) is None
    # resume takes no --config: Metaflow loads the origin run's configs (the default paths are still opened first, so
    # it runs from the project root); the datastore stays the test workspace's
    runner = Runner(str(root / "flows" / "score_flow.py"), show_output=False, cwd=str(root),
                    env={"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workspace)})
    with runner.resume(origin_run_id=failed.run.id) as resumed:
        status, run, text = resumed.status, resumed.run, resumed.stdout + resumed.stderr
    assert status == "successful", text[-4000:]
    tasks = shard_tasks(run)
    cloned = {i: t.origin_pathspec for i, t in tasks.items()}  # a re-executed task has no origin task
    assert cloned[0].startswith(f"ScoreFlow/{failed.run.id}/score_shard/") and cloned[1] and cloned[2] is None
    original = yaml.safe_load(configs_for(config_paths, scratch, "resume")["score"].read_text())
    redone = tasks[2].data  # the re-executed shard ran with the origin run's score config, not config/score.yaml's
    assert dict(redone.score)["batch_rows"] == original["batch_rows"] == 500
    assert dict(redone.score) == dict(failed.run["start"].task.data.score)
    assert redone.shard_result["batches"] == 4  # 2,000 rows in batches of 500 (the default 32,768 would give 1)
    assert redone.shard_result["part"]["path"].endswith("-c00000001.parquet")  # the origin run's claim, still held
    manifest = read_manifest(str(output), D_RESUME)
    assert manifest["totals"]["rows_out"] == 6000 and manifest["flow_run"] == run.pathspec
    table = read_partition(str(output), D_RESUME, verify=True)
    assert table.num_rows == 6000 and table.column("transaction_id").to_pandas().is_unique


# --------------------------------------------------------------------------------------------------- bad input
# These runs keep the profile's retry: a user error must stop the step at once, with a headline and no traceback.
def test_too_many_quarantined_rows_fail_the_run(root, workspace, config_paths, scratch, tainted, train_run):
    output = scratch / "out-gate"
    configs = configs_for(config_paths, scratch, "gate", shard_rows=10**6, max_quarantine_rate=0.0005)
    result = score_flow(root, workspace, configs, input=str(tainted), output=str(output), date=D_BAD,
                        model_run=train_run.id, force=FORCE_TINY)
    assert_user_error(result, "join", "5 of 6000 rows failed validation (rate 0.0008 > max_quarantine_rate 0.0005)")
    assert read_manifest(str(output), D_BAD) is None  # untrusted: no manifest
    assert len(pd.read_parquet(output / "_quarantine" / f"dt={D_BAD}")) == 5


def test_a_corrupt_file_stops_the_run_naming_it(root, workspace, config_paths, scratch, tiny_data, train_run):
    folder = scratch / "corrupt"
    folder.mkdir()
    shutil.copy(tiny_data, folder / "a.parquet")
    (folder / "b.parquet").write_bytes(b"PAR1 this is not parquet")
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "corrupt"),
                        input=str(folder), output=str(scratch / "out-corrupt"), date=D_BAD, model_run=train_run.id,
                        force=FORCE_TINY)
    assert_user_error(result, "start", f"{folder / 'b.parquet'}: not a readable Parquet file")
    assert not (scratch / "out-corrupt").exists()


def test_a_schema_mismatch_names_the_columns(root, workspace, config_paths, scratch, tiny_data, train_run):
    path = scratch / "mismatch.parquet"
    frame = pd.read_parquet(tiny_data)
    frame.drop(columns=["amount", "country"]).assign(hour=[b"\x00"] * len(frame)).to_parquet(path)
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "mismatch"),
                        input=str(path), output=str(scratch / "out-mismatch"), date=D_BAD, model_run=train_run.id,
                        force=FORCE_TINY)
    assert_user_error(result, "start", f"{path}: schema mismatch: missing columns ['amount', 'country']; columns "
                                       "with unusable types: hour (binary, expected numbers or numeric strings)")


def test_an_output_that_is_a_file_is_refused_before_any_work(root, workspace, config_paths, scratch, tiny_data,
                                                            train_run):
    output = scratch / "out-is-a-file"
    output.write_text("not a folder")
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "outfile"), input=str(tiny_data),
                        output=str(output), date=D_BAD, model_run=train_run.id, force=FORCE_TINY)
    assert_user_error(result, "start", f"output {output} is a file, not a folder")
    assert output.read_text() == "not a folder"


def test_a_bad_date_is_refused_with_the_expected_form(root, workspace, config_paths, scratch, tiny_data, train_run):
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "baddate"), input=str(tiny_data),
                        output=str(scratch / "out-baddate"), date="2026-13-01", model_run=train_run.id,
                        force=FORCE_TINY)
    assert_user_error(result, "start", "2026-13-01")
    assert not (scratch / "out-baddate").exists()


def test_an_empty_input_gives_an_empty_partition(root, workspace, config_paths, scratch, tiny_data, train_run):
    path = scratch / "empty.parquet"
    pd.read_parquet(tiny_data).iloc[:0].to_parquet(path)
    output = scratch / "out-empty"
    result = score_flow(root, workspace, configs_for(config_paths, scratch, "empty"), input=str(path),
                        output=str(output), date=D_EMPTY, model_run=train_run.id, force=FORCE_TINY)
    assert result.status == "successful", logs(result)[-4000:]
    manifest = read_manifest(str(output), D_EMPTY)
    assert manifest["totals"] == {"rows_in": 0, "rows_out": 0, "rows_quarantined": 0, "quarantine_rate": 0.0}
    assert [p["rows"] for p in manifest["parts"]] == [0]
    table = read_partition(str(output), D_EMPTY, verify=True)
    assert table.num_rows == 0 and "score" in table.column_names


# --------------------------------------------------------------------------------------------------- deployment
SHOW_SCHEDULE = """
import runpy, sys
sys.path.insert(0, "flows")
import metaflow.plugins.aws.step_functions.schedule_decorator as s
original = s.ScheduleDecorator.flow_init
def flow_init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    print("SCHEDULE", repr(self.schedule), repr(self.timezone))
s.ScheduleDecorator.flow_init = flow_init
sys.argv = ["flows/score_flow.py", "--config", "score", sys.argv[1], "show"]
runpy.run_path("flows/score_flow.py", run_name="__main__")
"""


def test_schedule_comes_from_the_score_config_without_a_timezone(root, scratch):
    import subprocess
    import sys

    config = scratch / "score-cron.yaml"
    config.write_text(yaml.safe_dump({"schedule_cron": "30 1 * * ? *"}))
    proc = subprocess.run([sys.executable, "-c", SHOW_SCHEDULE, str(config)], cwd=root, capture_output=True,
                          text=True, check=True)
    assert "SCHEDULE '30 1 * * ? *' None" in proc.stdout  # Step Functions refuses @schedule with a timezone
