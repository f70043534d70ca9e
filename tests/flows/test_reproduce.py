"""Every model reproducible: a TrainFlow run of a committed checkout, trained again by ``python -m steps.registry
reproduce`` from its lineage alone (code at its git revision in a temporary worktree, its configs, the data bytes
fetched from the content-addressed DVC remote), gives the same fingerprint for every model type of
config/train.yaml."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from steps.data.content import REMOTE_ENV, object_uri


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def project_copy(root: Path, tmp_path_factory) -> Path:
    """This project's files as they are now (tracked and new), committed in a fresh git repository: a clean checkout
    whatever state the developer's tree is in."""
    dest = tmp_path_factory.mktemp("project") / "repo"
    for name in _git("ls-files", "-co", "--exclude-standard", cwd=root).splitlines():
        source = root / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    _git("init", "-q", cwd=dest)
    _git("-c", "user.name=ci", "-c", "user.email=ci@example.com", "add", "-A", cwd=dest)
    _git("-c", "user.name=ci", "-c", "user.email=ci@example.com", "commit", "-qm", "snapshot", cwd=dest)
    return dest


@pytest.fixture(scope="module")
def original(project_copy: Path, workspace: Path, tiny_data: Path) -> dict:
    """TrainFlow of the committed copy, with its own config/train.yaml (every model type), on the tiny data."""
    env = {**os.environ, "PYTHONPATH": str(project_copy)}
    done = subprocess.run([sys.executable, str(project_copy / "flows" / "train_flow.py"), "--branch", "repro_src",
                           "run", "--data", str(tiny_data)], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    run_id = re.search(r"run-id (\d+)", done.stdout + done.stderr).group(1)
    from metaflow import Run, namespace

    namespace(None)
    return {"run": Run(f"TrainFlow/{run_id}"), "env": env}


def test_the_lineage_says_how_to_fetch_the_exact_data(original, project_copy, tiny_data):
    lineage = original["run"].data.lineage
    blob = tiny_data.read_bytes()
    assert lineage["git_revision"] == _git("rev-parse", "HEAD", cwd=project_copy) and lineage["git_dirty"] is False
    stored = lineage["extra"]["content"]
    md5 = hashlib.md5(blob).hexdigest()
    assert stored["md5"] == md5 and stored["object"] == object_uri(os.environ[REMOTE_ENV], md5)
    assert Path(stored["object"]).read_bytes() == blob  # in DVC's layout: files/md5/<2>/<30>
    assert hashlib.sha256(blob).hexdigest() == lineage["sha256"]


def test_reproduce_trains_every_model_type_again_to_the_same_fingerprint(original, project_copy, workspace):
    run = original["run"]
    done = subprocess.run([sys.executable, "-m", "steps.registry", "--json", "reproduce", run.pathspec],
                          cwd=workspace, env=original["env"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = json.loads(done.stdout)
    types = {c["name"]: c["type"] for c in run.data.candidate_summaries}
    assert set(types.values()) == {"logistic_regression", "lightgbm", "random_forest"}  # config/train.yaml's
    assert set(result["candidates"]) == set(types)
    assert all(c["equal"] and c["original"] == c["reproduced"] for c in result["candidates"].values()), result
    assert result["model"]["equal"] and result["model"]["original"] == run.data.model_fingerprint
    assert result["reproduced_by"] != run.pathspec and result["equal"] is True
    assert _git("worktree", "list", cwd=project_copy).count("\n") == 0  # the temporary worktree is gone


def test_what_cannot_be_reproduced_is_refused_and_a_difference_is_reported(monkeypatch):
    from types import SimpleNamespace

    from steps.registry import reproduce as rep
    from steps.registry.store import RegistryError

    def fake(**lineage):
        return SimpleNamespace(pathspec="TrainFlow/1", data=SimpleNamespace(lineage={"sha256": "0" * 64, **lineage}))

    for lineage, message in (({"git_revision": None}, "records no git revision"),
                             ({"git_revision": "abc", "git_dirty": True}, "uncommitted changes"),
                             ({"git_revision": "abc", "git_dirty": False, "extra": {}}, "no content object")):
        monkeypatch.setattr(rep, "_original", lambda pathspec, lineage=lineage: fake(**lineage))
        with pytest.raises((RegistryError, ValueError), match=message):
            rep.reproduce("TrainFlow/1")
    before = {"model_name": "m", "model_fingerprint": "a", "candidates": [{"name": "m", "fingerprint": "a"}]}
    after = {"model_name": "m", "model_fingerprint": "b", "candidates": [{"name": "m", "fingerprint": "b"}]}
    assert rep.compare(before, after)["equal"] is False and rep.compare(before, before)["equal"] is True


def test_the_reproduction_pins_each_candidates_recorded_threads_and_device():
    from steps.config import TrainConfig
    from steps.registry import reproduce as rep

    train = {"threads": None, "candidates": [{"name": "lgbm", "type": "lightgbm"},
                                             {"name": "lr", "type": "logistic_regression", "threads": 4}]}
    recorded = [{"name": "lgbm", "fingerprint": "a", "threads": 4, "device": "gpu", "device_fallback": None},
                {"name": "lr", "fingerprint": "b", "threads": 4, "device": "cpu", "device_fallback": None}]
    pinned = rep.pinned_train(train, recorded)
    assert [(c["threads"], c["device"]) for c in pinned["candidates"]] == [(4, "gpu"), (4, "cpu")]
    assert train["candidates"][0] == {"name": "lgbm", "type": "lightgbm"}  # the run's own config is not changed
    TrainConfig.model_validate(pinned)  # still a valid train config
    older = [{"name": "lgbm", "fingerprint": "a"}]  # a run from before devices were recorded: its config as it was
    assert rep.pinned_train(train, older) == train


def test_a_gpu_model_reproduced_on_a_cpu_says_why_it_differs():
    from steps.registry import reproduce as rep

    before = {"model_name": "lgbm", "model_fingerprint": "a",
              "candidates": [{"name": "lgbm", "fingerprint": "a", "device": "gpu"}]}
    after = {"model_name": "lgbm", "model_fingerprint": "b",
             "candidates": [{"name": "lgbm", "fingerprint": "b", "device": "cpu",
                             "device_fallback": "LightGBMError: No OpenCL device found"}]}
    result = rep.compare(before, after)
    assert result["equal"] is False
    assert result["candidates"]["lgbm"]["device"] == (
        "gpu -> cpu (LightGBMError: No OpenCL device found): a model fitted on a GPU is reproduced only on one")
    assert "device" not in rep.compare(before, before)["candidates"]["lgbm"]
