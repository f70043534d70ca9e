"""The sample data under DVC: reproducible byte for byte on a fresh clone, and readable at any git revision."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from support import run_flow

from steps.data import synth
from steps.data.load import read_source

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
DVC = str(Path(sys.executable).with_name("dvc"))
MAKE_DATA = "-m steps.data.synth --out data/transactions.parquet"


def sh(*cmd: str, cwd: Path) -> str:
    """Run a command, fail the test with its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_make_data_on_a_fresh_clone_matches_data_dvc(root, tmp_path):
    assert MAKE_DATA in (root / "Makefile").read_text()  # the command below is the one `make data` runs
    clone = tmp_path / "clone"
    sh("git", "clone", "--quiet", str(root), str(clone), cwd=tmp_path)
    assert not (clone / "data").exists()
    # `make data` itself, minus `setup` (this venv is already installed)
    sh("make", "-o", "setup", "data", f"PY={sys.executable}", f"DVC={DVC}", cwd=clone)
    status = sh(DVC, "status", "data.dvc", cwd=clone)
    assert "up to date" in status, status
    assert sh("git", "status", "--porcelain", cwd=clone) == ""  # data.dvc untouched: the bytes are identical
    recorded = yaml.safe_load((clone / "data.dvc").read_text())["outs"][0]
    assert recorded["size"] == (clone / "data" / "transactions.parquet").stat().st_size


def _commit_version(repo: Path, spec: synth.SynthSpec, tag: str) -> bytes:
    synth.write_parquet(spec, repo / "data" / "transactions.parquet")
    sh(DVC, "add", "--quiet", "data", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "--quiet", "-m", tag, cwd=repo)
    sh("git", "tag", tag, cwd=repo)
    sh(DVC, "push", "--quiet", cwd=repo)  # each version is pushed when it is committed
    return (repo / "data" / "transactions.parquet").read_bytes()


def test_train_flow_loads_an_old_data_version_from_the_remote(root, workspace, quick_configs, tmp_path):
    repo, remote = tmp_path / "datarepo", tmp_path / "remote"
    repo.mkdir()
    sh("git", "init", "--quiet", cwd=repo)
    sh(DVC, "init", "--quiet", cwd=repo)
    sh(DVC, "remote", "add", "-d", "store", str(remote), cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "--quiet", "-m", "dvc remote", cwd=repo)  # remote config committed before the data
    v1 = _commit_version(repo, synth.SynthSpec(rows=6000, seed=11, row_group_rows=2000), "v1")
    v2 = _commit_version(repo, synth.SynthSpec(rows=4000, seed=12, row_group_rows=2000), "v2")
    shutil.rmtree(repo / ".dvc" / "cache")  # only the remote holds the data now
    shutil.rmtree(repo / "data")

    assert read_source("data/transactions.parquet", "v2", repo) == v2
    result = run_flow(root, workspace, "train_flow.py", quick_configs, data_rev="v1", data_repo=str(repo))
    assert result.status == "successful", result.stdout[-3000:]
    lineage = result.run.data.lineage
    v1_md5 = yaml.safe_load(sh("git", "show", "v1:data.dvc", cwd=repo))["outs"][0]["md5"]
    assert lineage["dvc_md5"] == v1_md5
    assert lineage["sha256"] == hashlib.sha256(v1).hexdigest() and lineage["rows"] == 6000
    assert lineage["data_rev"] == "v1" and lineage["source"] == "data/transactions.parquet@v1"
