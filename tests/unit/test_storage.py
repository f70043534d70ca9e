"""steps.core.storage's conditional replace (a compare-and-swap) on local files; the S3 side is in tests/cloud."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from steps.core.storage import WriteConflict, read_version, replace_if


@pytest.mark.parametrize(("before", "given", "written"), [
    (b"old", "current", True),    # the version just read: replaced
    (b"old", "stale", False),     # another writer's version since: refused
    (b"old", None, False),        # "only while absent", but something is there
    (None, "stale", False),       # a version of a file since removed
    (None, None, True),           # absent and expected absent: created
])
def test_replace_if_writes_only_over_the_version_it_was_given(tmp_path, before, given, written) -> None:
    path = tmp_path / "state.json"
    if before is not None:
        path.write_bytes(before)
    version = {"current": read_version(str(path))[1] if before else None, "stale": "0" * 64, None: None}[given]
    if written:
        replace_if(str(path), b"new", version)
        assert read_version(str(path))[0] == b"new"
    else:
        with pytest.raises(WriteConflict, match="state.json changed since version"):
            replace_if(str(path), b"new", version)
        assert (path.read_bytes() if path.exists() else None) == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # no temporary file left


def _race(path: str, version: str, barrier: multiprocessing.synchronize.Barrier, wins: multiprocessing.Queue,
          me: int) -> None:
    barrier.wait()
    try:
        replace_if(path, f"writer {me}".encode(), version)
        wins.put(me)
    except WriteConflict:
        wins.put(None)


@pytest.mark.parametrize("round_", range(5))  # without the lock, two writers both replace in about a third of rounds
def test_of_writers_holding_the_same_version_exactly_one_replaces(tmp_path, round_) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"loaded by every writer")
    version = read_version(str(path))[1]
    ctx = multiprocessing.get_context("fork")
    barrier, wins = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(path), version, barrier, wins, i)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    winners = [w for w in (wins.get(timeout=5) for _ in procs) if w is not None]
    assert len(winners) == 1
    assert Path(path).read_bytes() == f"writer {winners[0]}".encode()
