"""The fault campaign: real SIGKILLs of ScoreFlow's runtime and of single tasks at chosen points of a three-shard run,
each followed by a rerun, a ``resume`` or a concurrent run; and a TrainFlow that dies between its audit event and its
tags. After each case the partition's invariants hold (parts listed == parts on disk, sums match, rows out +
quarantined == rows in, no duplicate ids, no temporary files) and the stale writer failed cleanly.

The points are reached with the fault-injection hooks (``steps.scoring.faults``: a shard or ``join`` hangs at a
point, the test kills it there; ``MLOPS_REGISTRY_FAULT`` for the registry); the kills themselves are real signals.
Each case records its result in ``CAMPAIGN``; the last test writes them to ``out/fault-campaign.json``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from metaflow import Runner
from support import FORCE_TINY, logs, score_configs as configs_for, score_flow, train_config

from steps.core.storage import sha256_file
from steps.registry.registry import Registry
from steps.scoring.partition import MANIFEST, read_manifest

DAY = "2026-02-01"
CAMPAIGN: list[dict[str, Any]] = []
STARTED: list[subprocess.Popen] = []  # background runs: their process groups are killed when the module ends


@pytest.fixture(scope="module", autouse=True)
def no_leftovers():
    """Whatever a failing case leaves running (a hung task) is killed with its process group at the end."""
    yield
    for process in STARTED:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --------------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def source(tiny_data: Path, scratch: Path) -> Path:
    """The tiny data in row groups of 2,000: three shards of four record batches (batch_rows 500)."""
    path = scratch / "input" / "part.parquet"
    path.parent.mkdir()
    pd.read_parquet(tiny_data).to_parquet(path, row_group_size=2000, index=False)
    return path


def _configs(config_paths: dict[str, Path], scratch: Path) -> dict[str, Path]:
    """Small shards, the profile's retry (times 1), the claim re-read every 0.5 s."""
    return configs_for(config_paths, scratch, "faults", claim_check_s=0.5)


def start_score(root: Path, workspace: Path, configs: dict[str, Path], faults: list[dict[str, Any]],
                log: Path, **params: str) -> subprocess.Popen:
    """ScoreFlow started in the background (its runtime is the Popen's process); output to ``log``."""
    args = [sys.executable, str(root / "flows" / "score_flow.py")]
    for name, path in configs.items():
        args += ["--config", name, str(path)]
    args += ["run", *[item for k, v in params.items() for item in (f"--{k.replace('_', '-')}", v)]]
    env = {**os.environ, "MLOPS_SCORE_FAULT": json.dumps(faults)}
    process = subprocess.Popen(args, cwd=workspace, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    STARTED.append(process)
    return process


def wait_for(log: Path, pattern: str, timeout: float = 240) -> re.Match:
    """The first match of ``pattern`` in the log, waiting for it."""
    return wait_until(lambda: re.search(pattern, log.read_text()), f"{pattern!r} in {log}", timeout, log)


def wait_until(probe: Callable[[], Any], what: str, timeout: float, log: Path,
               run: subprocess.Popen | None = None) -> Any:
    """The first value of ``probe()`` that is not None, polling; else fail with the end of the log and, when ``run``
    is given, the Python stacks of its processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    dumped = dump_stacks(run) if run is not None else ""
    raise AssertionError(f"{what}: not seen after {timeout} s{dumped}:\n{log.read_text()[-8000:]}")


def dump_stacks(run: subprocess.Popen) -> str:
    """SIGABRT every process of ``run``'s session, tasks first (faulthandler prints each one's Python stacks to its
    stderr, which the runtime copies into the log), then the runtime; says which processes."""
    members = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _session(int(e.name)) == run.pid]
    before = {pid: _cmdline(pid) for pid in members}
    for pid in sorted(members, key=lambda p: p == run.pid):  # the runtime last, so it still copies the tasks' output
        try:
            os.kill(pid, signal.SIGABRT)
        except ProcessLookupError:
            continue
        time.sleep(2)
    return " (Python stacks dumped into the log, SIGABRT with PYTHONFAULTHANDLER, of " + "; ".join(
        f"{pid}: {cmd[:160]}" for pid, cmd in before.items()) + ")"


def _session(pid: int) -> int | None:
    """The session id of a process (None when it is gone)."""
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _cmdline(pid: int) -> str:
    """A process's command line, or '' when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def run_processes(run_id: str) -> list[int]:
    """The processes of a local run's tasks (their command lines name the run id)."""
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and f"--run-id {run_id}" in _cmdline(int(e.name)) and alive(int(e.name))]


def kill(pid: int) -> None:
    """SIGKILL, ignoring a process that already ended."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def resume(root: Path, workspace: Path, run_id: str) -> tuple[str, str, Any]:
    """``resume`` of a ScoreFlow run (its own configs), from the project root on the test workspace's datastore."""
    runner = Runner(str(root / "flows" / "score_flow.py"), show_output=False, cwd=str(root),
                    env={"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workspace), "MLOPS_SCORE_FAULT": ""})
    with runner.resume(origin_run_id=run_id) as resumed:
        return resumed.status, resumed.stdout + resumed.stderr, resumed.run


def invariants(output: Path, rows_in: int) -> list[str]:
    """What is wrong with the date's partition (empty: nothing)."""
    problems = []
    manifest = read_manifest(str(output), DAY)
    if manifest is None:
        return ["no manifest"]
    listed = {p["path"] for p in manifest["parts"]} | {q["path"] for q in manifest["quarantine_parts"]}
    on_disk = {p.relative_to(output).as_posix() for p in output.rglob("*")
               if p.is_file() and not p.relative_to(output).as_posix().startswith("_claims/")}
    on_disk.discard(f"dt={DAY}/{MANIFEST}")
    if listed != on_disk:
        problems.append(f"listed {sorted(listed)} != on disk {sorted(on_disk)}")
    for part in [*manifest["parts"], *manifest["quarantine_parts"]]:
        path = output / part["path"]
        if path.is_file() and (sha256_file(path), path.stat().st_size) != (part["sha256"], part["bytes"]):
            problems.append(f"{part['path']}: checksum or size differs from the manifest")
    totals = manifest["totals"]
    if totals["rows_in"] != rows_in or totals["rows_out"] + totals["rows_quarantined"] != totals["rows_in"]:
        problems.append(f"totals {totals} for {rows_in} input rows")
    ids = pd.concat([pd.read_parquet(output / p["path"], columns=["transaction_id"]) for p in manifest["parts"]])
    if len(ids) != totals["rows_out"] or not ids["transaction_id"].is_unique:
        problems.append(f"{len(ids)} ids ({ids['transaction_id'].duplicated().sum()} duplicated), "
                        f"{totals['rows_out']} rows out")
    temporary = [p.name for p in output.rglob("*") if ".tmp" in p.name]
    if temporary:
        problems.append(f"temporary files {temporary}")
    return problems


def record(case: str, follow_up: str, problems: list[str]) -> None:
    """One case of the campaign, and its invariant violations (asserted empty)."""
    CAMPAIGN.append({"case": case, "follow_up": follow_up, "violations": problems})
    assert problems == [], f"{case} / {follow_up}: {problems}"


def files(output: Path) -> dict[str, bytes]:
    """Every file under ``output`` (claims aside) and its bytes."""
    return {p.relative_to(output).as_posix(): p.read_bytes() for p in sorted(output.rglob("*"))
            if p.is_file() and "_claims" not in p.parts}


# --------------------------------------------------------------------------------------------------- ScoreFlow
def test_a_killed_runtime_orphans_stop_a_rerun_wins_and_the_old_resume_is_refused(
        root, workspace, config_paths, scratch, source, train_run):
    output, log = scratch / "out-runtime", scratch / "runtime.log"
    configs = _configs(config_paths, scratch)
    stale = start_score(root, workspace, configs, [{"enabled": True, "shards": [1], "attempts": [0],
                                                    "after_batches": 1, "mode": "hang"}], log,
                        input=str(source), output=str(output), date=DAY, model_run=train_run.id, force=FORCE_TINY)
    wait_for(log, r"fault injection: hangs shard 1")
    run_id = wait_for(log, r"run-id (\d+)").group(1)
    tasks = run_processes(run_id)
    assert tasks, "the run's task processes"
    kill(stale.pid)  # the run's own process: its shard tasks are orphaned
    stale.wait(30)
    deadline = time.monotonic() + 60
    while run_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run_processes(run_id) == []  # the orphans noticed their runtime was gone and stopped by themselves

    rerun = score_flow(root, workspace, configs, input=str(source), output=str(output), date=DAY,
                       model_run=train_run.id, force=FORCE_TINY)
    assert rerun.status == "successful", logs(rerun)[-3000:]
    record("runtime SIGKILL mid-shard", "rerun", invariants(output, 6000))
    before = files(output)

    status, text, _ = resume(root, workspace, run_id)
    assert status == "failed"
    assert f"is now held by ScoreFlow/{rerun.run.id} (claim 2" in text and "Traceback" not in text
    assert files(output) == before  # the holder's partition, as the holder left it
    record("runtime SIGKILL mid-shard", "resume of the killed run after a rerun", invariants(output, 6000))


def test_an_earlier_run_racing_a_newer_one_of_the_same_date_stops_without_writing(
        root, workspace, config_paths, scratch, source, train_run):
    output, log = scratch / "out-race", scratch / "race.log"
    configs = _configs(config_paths, scratch)
    earlier = start_score(root, workspace, configs, [{"enabled": True, "shards": [0], "attempts": [0, 1],
                                                      "after_batches": 1, "mode": "hang"}], log,
                          input=str(source), output=str(output), date=DAY, model_run=train_run.id, force=FORCE_TINY)
    wait_for(log, r"fault injection: hangs shard 0")
    newer = score_flow(root, workspace, configs, input=str(source), output=str(output), date=DAY,
                       model_run=train_run.id, force=FORCE_TINY)
    assert newer.status == "successful", logs(newer)[-3000:]
    assert earlier.wait(120) != 0
    text = log.read_text()
    assert f"is now held by ScoreFlow/{newer.run.id} (claim 2" in text
    assert "This failed task will not be retried" in text
    assert not any("-c00000001" in name for name in files(output))  # nothing of the earlier run's claim is left
    record("concurrent run of the same date", "the earlier run stops", invariants(output, 6000))


def test_a_shard_task_killed_mid_write_is_redone_exactly(root, workspace, config_paths, scratch, source,
                                                         train_run):
    output, log = scratch / "out-shard", scratch / "shard.log"
    running = start_score(root, workspace, _configs(config_paths, scratch),
                          [{"enabled": True, "shards": [2], "attempts": [0], "after_batches": 2, "mode": "hang"}],
                          log, input=str(source), output=str(output), date=DAY, model_run=train_run.id,
                          force=FORCE_TINY)
    pid = int(wait_for(log, r"fault injection: hangs shard 2 attempt 0 .* \(pid (\d+)\)").group(1))
    kill(pid)  # one task, mid-write: its temporary part stays behind
    assert running.wait(240) == 0, log.read_text()[-3000:]
    manifest = read_manifest(str(output), DAY)
    assert {s["shard"]: s["attempt"] for s in manifest["shards"]} == {0: 0, 1: 0, 2: 1}
    record("shard task SIGKILL mid-write", "@retry", invariants(output, 6000))


def test_a_shard_that_dies_right_after_renaming_its_part_is_redone_exactly(root, workspace, config_paths, scratch,
                                                                           source, train_run):
    output = scratch / "out-commit"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_SCORE_FAULT", json.dumps({"enabled": True, "shards": [1], "attempts": [0],
                                                   "at": "commit", "mode": "exit"}))
        result = score_flow(root, workspace, _configs(config_paths, scratch), input=str(source), output=str(output),
                            date=DAY, model_run=train_run.id, force=FORCE_TINY)
    assert result.status == "successful", logs(result)[-3000:]
    assert "shard 1 attempt 0 after its part was moved into place (process exits with 75)" in logs(result)
    record("shard dies after renaming its part", "@retry", invariants(output, 6000))


@pytest.mark.parametrize("point, follow_up", [("manifest", "resume"), ("published", "rerun")])
def test_a_run_killed_in_join_before_or_after_the_manifest(root, workspace, config_paths, scratch, source, train_run,
                                                           point, follow_up):
    output, log = scratch / f"out-join-{point}", scratch / f"join-{point}.log"
    configs = _configs(config_paths, scratch)
    running = start_score(root, workspace, configs, [{"enabled": True, "attempts": [0], "at": point,
                                                      "mode": "hang"}], log,
                          input=str(source), output=str(output), date=DAY, model_run=train_run.id, force=FORCE_TINY)
    pid = int(wait_for(log, rf"fault injection: hangs join attempt 0 at {point} \(pid (\d+)\)").group(1))
    run_id = wait_for(log, r"run-id (\d+)").group(1)
    kill(running.pid)
    kill(pid)
    running.wait(30)
    assert (read_manifest(str(output), DAY) is None) == (point == "manifest")  # untrusted until published
    if follow_up == "resume":
        status, text, resumed = resume(root, workspace, run_id)
        assert status == "successful", text[-3000:]
        assert read_manifest(str(output), DAY)["flow_run"] == resumed.pathspec
    else:
        assert invariants(output, 6000) == []  # published: already whole before the rerun
        rerun = score_flow(root, workspace, configs, input=str(source), output=str(output), date=DAY,
                           model_run=train_run.id, force=FORCE_TINY)
        assert rerun.status == "successful", logs(rerun)[-3000:]
    record(f"runtime and join SIGKILL at {point}", follow_up, invariants(output, 6000))


# --------------------------------------------------------------------------------------------------- TrainFlow
BRANCH = "faults"


def held_end_task(run_id: str) -> int | None:
    """The pid of the run's ``end`` task once the registry's latest audit event names the run (the fault hook then
    holds the task before the tags move), else None.

    Not the hook's log line: Metaflow's runtime reads a task's stderr through a buffered reader, one line per poll
    event, so the last lines a task writes before it goes quiet can stay unread (a shuffled-order run waited 600 s for
    the hook's line while the task hung right after the line before it)."""
    events = Registry(branch=f"test.{BRANCH}").history()
    if not events or events[-1]["to"] != run_id:
        return None
    return next((pid for pid in run_processes(run_id) if " step end " in _cmdline(pid)), None)


def _registry_state() -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """(champion-tagged run ids, audit events, problems) of the faults branch."""
    registry = Registry(branch=f"test.{BRANCH}")
    return [r.id for r in registry.runs("champion")], registry.history(), registry.problems()


def test_a_train_flow_dying_between_its_audit_event_and_its_tags_ends_consistent(root, workspace, config_paths,
                                                                                 gates_datasets, scratch):
    configs = {**config_paths, "train": train_config(scratch, "good"),  # the model the gates tests promote
               "gates": root / "tests" / "flows" / "configs" / "gates-small.yaml"}
    log = scratch / "train-kill.log"
    args = [sys.executable, str(root / "flows" / "train_flow.py"), "--branch", BRANCH,
            *[item for name, path in configs.items() for item in ("--config", name, str(path))],
            "run", "--data", str(gates_datasets["normal"])]
    killed = subprocess.Popen(args, cwd=workspace, env={**os.environ, "MLOPS_REGISTRY_FAULT": "hang",
                                                        "PYTHONFAULTHANDLER": "1"},
                              stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    STARTED.append(killed)
    run_id = wait_for(log, r"run-id (\d+)").group(1)  # the runtime's own line
    pid = wait_until(lambda: held_end_task(run_id), f"run {run_id}'s end task held after its audit event", 600,
                     log, killed)
    kill(killed.pid)  # the run and its end task, between the promotion event and the tag moves
    kill(pid)
    killed.wait(30)
    champions, events, problems = _registry_state()
    assert events[-1]["to"] == run_id and champions != [run_id]  # the log says champion, the tags do not (yet)
    assert any(f"latest event makes run {run_id} champion but it does not carry the champion tag" in p
               for p in problems)  # `show` says so (and exits 2)

    wrong = Runner(str(root / "flows" / "train_flow.py"), show_output=False, cwd=str(root),
                   env={"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workspace), "MLOPS_REGISTRY_FAULT": ""})
    with wrong.resume(origin_run_id=run_id) as refused:  # no --branch: Metaflow would register on user.<name>
        assert refused.status == "failed"
        assert f"ran on branch test.{BRANCH}, this resume runs on user." in refused.stdout + refused.stderr
        assert not {"candidate", "champion"} & set(refused.run.user_tags)  # refused before it registered
    runner = Runner(str(root / "flows" / "train_flow.py"), show_output=False, cwd=str(root), branch=BRANCH,
                    env={"METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workspace), "MLOPS_REGISTRY_FAULT": ""})
    with runner.resume(origin_run_id=run_id) as resumed:
        status, text, run = resumed.status, resumed.stdout + resumed.stderr, resumed.run
    assert status == "successful", text[-3000:]
    champions, events, problems = _registry_state()
    if not champions == [events[-1]["to"]] == [run.id]:  # one champion, the last event's
        problems.append(f"champion tags {champions}, latest event to {events[-1]['to']}, resumed run {run.id}")
    record("TrainFlow killed in end, after the audit event, before the tags", "resume", problems)


def test_the_campaign_is_written_down(root):
    violations = sum(len(case["violations"]) for case in CAMPAIGN)
    out = root / "out" / "fault-campaign.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"cases": len(CAMPAIGN), "invariant_violations": violations, "runs": CAMPAIGN},
                              indent=2))
    assert len(CAMPAIGN) == 8 and violations == 0  # every case above ran (a failed one is recorded too)
