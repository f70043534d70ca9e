"""``python -m steps.registry reproduce RUN``: train a model again from its lineage and compare the fingerprints.

The run's lineage names the code (git revision), the data (sha256, and the content object ``steps.data.content``
stored in the DVC remote) and the run keeps its configs as artifacts. The reproduction checks the code out in a
temporary git worktree, fetches the exact data bytes (checked against the sha256), and runs that revision's
TrainFlow with the run's dataset, train and gates configs (and the local profile, or ``--profile``) on the branch
``reproduce``; then it compares the chosen model's and every candidate's fingerprint with the original's.

The threads and device each candidate was fitted with (its record, from runs that keep them) are pinned on it in the
train config, so the profile of the reproduction does not change the model (a candidate's ``threads`` and ``device``
follow its step's resources otherwise). A model fitted on a GPU is reproduced on one only where there is one: on a
machine without, the fit falls back to the CPU and the comparison says so.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from metaflow import Run

from steps.core.project import PROJECT_ROOT
from steps.data import content
from steps.registry.registry import global_namespace, run_data
from steps.registry.store import RegistryError

logger = logging.getLogger(__name__)

CONFIGS = ("dataset", "train", "gates")  # what decides the model; the profile only says where steps run
BRANCH = "reproduce"


def _original(pathspec: str) -> Run:
    """The TrainFlow run to reproduce (global namespace), checked to have finished."""
    name = pathspec if "/" in pathspec else f"TrainFlow/{pathspec}"
    with global_namespace():
        try:
            run = Run(name)
        except Exception as err:  # MetaflowNotFound, bad pathspec
            raise RegistryError(f"run {name} not found: {err}") from None
        if not run.successful:
            raise RegistryError(f"run {name} did not finish successfully: nothing to reproduce")
        return run


def _checkout(revision: str, where: Path, repo: Path = PROJECT_ROOT) -> None:
    """The code at ``revision`` in a new detached worktree at ``where``."""
    done = subprocess.run(["git", "worktree", "add", "--detach", str(where), revision], cwd=repo,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RegistryError(f"cannot check out the run's code revision {revision}: {done.stderr.strip()}")


def _train(code: Path, configs: dict[str, Path], data: Path) -> str:
    """Run the checked-out TrainFlow on ``data`` from this directory's datastore; returns the new run's pathspec."""
    args = [sys.executable, str(code / "flows" / "train_flow.py"), "--branch", BRANCH,
            *[item for name, path in configs.items() for item in ("--config", name, str(path))],
            "run", "--data", str(data)]
    env = {**os.environ, "PYTHONPATH": str(code)}  # that revision's steps/, not the installed ones
    logger.info("reproducing: %s", " ".join(args))
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    found = re.search(r"run-id (\d+)", done.stdout + done.stderr)
    if done.returncode != 0 or not found:
        raise RegistryError(f"the reproduction run failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return f"TrainFlow/{found.group(1)}"


def pinned_train(train: dict[str, Any], candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """``train`` (a run's train config) with each candidate's recorded ``threads`` and ``device`` set on it; a run
    from before they were recorded keeps its config as it is (its code has no ``device`` key)."""
    recorded = {c["name"]: c for c in candidates if "device" in c and "threads" in c}
    out = copy.deepcopy(train)
    for candidate in out.get("candidates", []):
        if candidate.get("name") in recorded:
            record = recorded[candidate["name"]]
            candidate.update(threads=int(record["threads"]), device=str(record["device"]))
    return out


def compare(original: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """Fingerprints of the chosen model and of every candidate, before and now, and whether each is equal; a
    candidate fitted on another device than its original says so (``device``)."""
    before = {c["name"]: c for c in original["candidates"]}
    now = {c["name"]: c for c in again["candidates"]}
    candidates = {name: _compared(c, now.get(name, {})) for name, c in before.items()}
    model = {"name": original["model_name"], "original": original["model_fingerprint"],
             "reproduced": again["model_fingerprint"],
             "equal": original["model_fingerprint"] == again["model_fingerprint"]}
    return {"model": model, "candidates": candidates,
            "equal": model["equal"] and all(c["equal"] for c in candidates.values())}


def _compared(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One candidate's fingerprints, original and reproduced (None when it is missing now), and the device change."""
    return {"original": old["fingerprint"], "reproduced": new.get("fingerprint"),
            "equal": old["fingerprint"] == new.get("fingerprint"), **_device_change(old, new)}


def _device_change(old_record: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``{"device": "gpu -> cpu (why)"}`` when a candidate was fitted on another device this time, else {}."""
    old = old_record.get("device")
    if old is None or new.get("device") in (None, old):
        return {}
    why = f" ({new['device_fallback']})" if new.get("device_fallback") else ""
    hint = ": a model fitted on a GPU is reproduced only on one" if old == "gpu" else ""
    return {"device": f"{old} -> {new['device']}{why}{hint}"}


def _summary(run: Run) -> dict[str, Any]:
    """What :func:`compare` needs of a run."""
    data = run_data(run)
    return {"model_name": str(data.model_name), "model_fingerprint": str(data.model_fingerprint),
            "candidates": [dict(c) for c in data.candidate_summaries]}


def reproduce(pathspec: str, profile: str | None = None, allow_dirty: bool = False) -> dict[str, Any]:
    """Train ``pathspec`` again from its lineage; returns the comparison (``equal``: every fingerprint matched)."""
    run = _original(pathspec)
    data = run_data(run)
    lineage = dict(data.lineage)
    revision = lineage.get("git_revision")
    if not revision:
        raise RegistryError(f"run {run.pathspec} records no git revision: its code cannot be checked out")
    if lineage.get("git_dirty") and not allow_dirty:
        raise RegistryError(f"run {run.pathspec} was trained from a checkout with uncommitted changes at {revision}: "
                            "its code is not recorded (--allow-dirty reproduces with the committed code)")
    blob = content.fetch((lineage.get("extra") or {}).get("content"), lineage["sha256"])
    original = _summary(run)
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        work = Path(tmp)
        _checkout(revision, work / "code")
        try:
            suffix = "".join(Path(lineage["source"].split("@")[0]).suffixes) or ".parquet"
            (work / f"data{suffix}").write_bytes(blob)
            configs = {}
            for name in CONFIGS:
                configs[name] = work / f"{name}.yaml"
                config = dict(getattr(data, name))
                config = pinned_train(config, original["candidates"]) if name == "train" else config
                configs[name].write_text(yaml.safe_dump(config, sort_keys=False))
            configs["profile"] = Path(profile) if profile else work / "code" / "config" / "profiles" / "local.yaml"
            again = _train(work / "code", configs, work / f"data{suffix}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(work / "code")], cwd=PROJECT_ROOT,
                           capture_output=True)
    with global_namespace():
        result = compare(original, _summary(Run(again)))
    return {"run": run.pathspec, "reproduced_by": again, "git_revision": revision, "data_sha256": lineage["sha256"],
            "data_object": lineage["extra"]["content"]["object"], "profile": str(configs["profile"]), **result}
