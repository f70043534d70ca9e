"""The benchmark results the README quotes describe the code at HEAD, or the README says which are older and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import run

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted(p.stem for p in (ROOT / "benchmarks" / "results").glob("*.json") if not p.stem.endswith("-quick"))


@pytest.mark.parametrize("name", RESULTS)
def test_result_is_current_or_listed_as_older(name: str) -> None:
    reasons = run.stale_reasons(name, json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
                                ["meta"])
    older = run.readme_older((ROOT / "README.md").read_text())
    if reasons:
        assert older.get(name), (f"benchmarks/results/{name}.json is older than its code ({'; '.join(reasons)}): "
                                 f"rerun `python -m benchmarks.run {name}` on a clean tree, or list `bench_{name}` "
                                 "with the reason between the README's bench:older markers")
    else:
        assert name not in older, f"the README lists bench_{name} as older, but its result describes HEAD"


def test_every_listed_older_table_has_a_result() -> None:
    assert set(run.readme_older((ROOT / "README.md").read_text())) <= set(RESULTS)


@pytest.mark.parametrize("name", run.discover())
def test_every_benchmark_covers_existing_paths(name: str) -> None:
    paths = run.covers(name)
    assert f"benchmarks/bench_{name}.py" in paths
    assert len(paths) > 2, f"bench_{name} declares no COVERS and has no fallback in benchmarks/run.py"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, missing


def test_stale_reasons_name_changes_and_dirty_trees() -> None:
    head = run.git_state(run.covers("synth"))
    clean = {**head, "dirty_paths": []}
    assert run.stale_reasons("synth", clean) == []
    assert run.stale_reasons("synth", {**clean, "dirty_paths": ["steps/data/synth.py"]}) == [
        "measured with uncommitted changes to steps/data/synth.py"]
    assert "without a dirty flag" in run.stale_reasons("synth", {"git": head["git"]})[0]
    assert "does not have" in run.stale_reasons("synth", {**clean, "commit": "0" * 40})[-1]
    first = run._git("rev-list", "--max-parents=0", "HEAD").stdout.split()[0]  # synth.py changed since then
    assert "steps/data/synth.py" in run.stale_reasons("synth", {**clean, "commit": first})[-1]


def test_drop_current_removes_only_results_that_describe_head(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{run.OLDER_START}\n- `bench_train`: a\n- `bench_score`: b\n- `bench_nothing`: c\n"
                      f"{run.OLDER_END}\ny\n")
    monkeypatch.setattr(run, "stale_reasons", lambda name, meta: [] if name == "train" else ["changed"])
    assert run.drop_current(readme) == ["train"]
    assert run.readme_older(readme.read_text()) == {"score": "b", "nothing": "c"}  # stale, or no result at all


def test_readme_older_parses_and_drop_removes_one_line(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{run.OLDER_START}\n- `bench_train`: measured before issue 14\n- `bench_score`: because\n"
                      f"{run.OLDER_END}\ny\n")
    assert run.readme_older(readme.read_text()) == {"train": "measured before issue 14", "score": "because"}
    run.drop_older("train", readme)
    assert run.readme_older(readme.read_text()) == {"score": "because"}
    assert readme.read_text() == f"x\n{run.OLDER_START}\n- `bench_score`: because\n{run.OLDER_END}\ny\n"
    run.drop_older("score", readme)  # the last line: the markers stay, each on its own line
    assert readme.read_text() == f"x\n{run.OLDER_START}\n{run.OLDER_END}\ny\n"
