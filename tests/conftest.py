"""Session-wide test setup: an isolated Metaflow workspace and the environment every flow run needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("USER", "ci")
os.environ.setdefault("USERNAME", os.environ["USER"])
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


@pytest.fixture(scope="session")
def root() -> Path:
    """The project root."""
    return ROOT


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh directory holding this session's local Metaflow datastore (``.metaflow``).

    The test process works from it too, so the Metaflow Client (which finds ``.metaflow`` from the working
    directory) sees exactly the runs the tests made, and a developer's own runs are never touched.
    """
    ws = tmp_path_factory.mktemp("mf-workspace")
    (ws / ".metaflow").mkdir()
    previous = Path.cwd()
    os.chdir(ws)
    yield ws
    os.chdir(previous)


@pytest.fixture(scope="session")
def config_paths(root: Path) -> dict[str, Path]:
    """Absolute paths of the default configs (defaults resolve against the working directory)."""
    return {
        "dataset": root / "config" / "dataset.yaml",
        "train": root / "config" / "train.yaml",
        "profile": root / "config" / "profiles" / "local.yaml",
    }
