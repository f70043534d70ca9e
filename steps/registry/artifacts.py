"""Reading a registered run: its artifacts, its model verified against its fingerprint, its dataset and summary.

Metaflow Client reads shared by the registry and every stage that consumes a run (scoring, distillation,
monitoring, reports). Model bytes are read from the datastore itself, never from the Client's shared local cache.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from metaflow import Run, get_namespace, namespace

from steps.config import DatasetConfig, load_file
from steps.core.project import CONFIG_DIR
from steps.modeling import models
from steps.registry.store import RegistryError

DATASET_TAG = "dataset:"


@contextmanager
def global_namespace() -> Iterator[None]:
    """Switch to the global namespace for the block, then restore the caller's namespace."""
    previous = get_namespace()
    namespace(None)
    try:
        yield
    finally:
        namespace(previous)


def _artifact(run: Run, name: str, default: Any = None) -> Any:
    """Artifact ``name`` of the run's end step, or ``default`` when the run has no such artifact."""
    data = run.data
    return getattr(data, name) if data is not None and name in data else default


def run_data(run: Run) -> Any:
    """The artifacts of the run's end step (``run.data``); RegistryError when it has none (it never got there)."""
    data = run.data
    if data is None:
        raise RegistryError(f"run {run.pathspec} has no artifacts: it did not reach its end step")
    return data


def step_data(run: Run, step: str) -> Any:
    """The artifacts of the run's step ``step`` (its only task); RegistryError when that step never ran."""
    try:
        task = run[step].task
    except KeyError:
        task = None
    if task is None:
        raise RegistryError(f"run {run.pathspec} has no {step} step (an older run, or unfinished)")
    return task.data


def started_at(run: Run) -> datetime:
    """When the run started: its start step's creation time."""
    try:  # not run.created_at: the local metadata provider resets it whenever the run's tags change
        return run["start"].created_at
    except KeyError:
        return run.created_at


def gates_passed(run: Run) -> bool:
    """The run's ``gates_passed`` artifact; a run without one (an older run) counts as not passed."""
    return bool(_artifact(run, "gates_passed", False))


def verified_model(blob: bytes, expected_sha256: str, where: str = "model") -> Any:
    """Deserialize ``blob`` through ``models.deserialize``; a fingerprint mismatch names ``where``."""
    try:
        return models.deserialize(blob, expected_sha256)
    except models.FingerprintMismatch as err:
        raise models.FingerprintMismatch(f"{where}: {err}") from err


def stored_artifact(run: Run, name: str, default: Any = None) -> Any:
    """Artifact ``name`` of the run's end step read from the datastore itself, never from the Client's local cache
    (which is shared by every process of the user and would keep serving bytes the datastore no longer holds)."""
    from metaflow.client import core
    from metaflow.client.filecache import FileCache

    data = run.data
    if data is None or name not in data:
        return default
    artifact = run.end_task[name]  # type: ignore[index]  # a run with data has an end task
    saved = core.filecache
    with tempfile.TemporaryDirectory(prefix="mf-verify-") as cache_dir:
        core.filecache = FileCache(cache_dir=cache_dir)  # the Client reads through this module-level cache
        try:
            return artifact.data
        finally:
            core.filecache = saved


def stored_model(run: Run) -> tuple[bytes, Any]:
    """(model bytes, model) of the run, read from the datastore and loaded only when the bytes hash to the recorded
    ``model_fingerprint``."""
    blob, expected = stored_artifact(run, "model_blob"), stored_artifact(run, "model_fingerprint")
    if blob is None or not expected:
        raise RegistryError(f"run {run.pathspec} has no model_blob/model_fingerprint artifacts")
    return blob, verified_model(blob, expected, where=f"run {run.pathspec}")


def load_model(run: Run) -> Any:
    """The run's model, read from the datastore and loaded only when its bytes hash to ``model_fingerprint``."""
    return stored_model(run)[1]


def describe(run: Run) -> dict[str, Any]:
    """A JSON-ready summary of a run for ``show``."""
    return {
        "run_id": run.id,
        "pathspec": run.pathspec,
        "started_at": started_at(run).isoformat(),
        "successful": run.successful,
        "model_name": _artifact(run, "model_name"),
        "model_fingerprint": _artifact(run, "model_fingerprint"),
        "gates_passed": gates_passed(run),
        "tags": sorted(run.user_tags),
    }


def default_dataset() -> str:
    """The name in ``config/dataset.yaml``: the dataset a registry serves when none is named."""
    return load_file(DatasetConfig, CONFIG_DIR / "dataset.yaml").name


def dataset_tag(dataset: str) -> str:
    """The run tag that says which dataset a model was trained for: ``dataset:<name>``."""
    return f"{DATASET_TAG}{dataset}"


def run_dataset(run: Run) -> str | None:
    """The dataset a run's tags name, or None for a run without one (made before models knew their dataset)."""
    return next((t[len(DATASET_TAG):] for t in run.user_tags if t.startswith(DATASET_TAG)), None)
