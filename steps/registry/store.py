"""The registry's append-only audit log: one JSON object per event, locally or on S3."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from metaflow import Run

from steps.core import storage
from steps.core.errors import UserError

logger = logging.getLogger(__name__)


class RegistryError(UserError):
    """A registry operation was refused or cannot be carried out."""


def run_id_of(given: str, flow: str) -> str:
    """The run id in ``given`` (``123`` or ``<flow>/123``); RegistryError naming it for anything else (another
    flow's run, a step or task path, nothing)."""
    parts = given.strip().split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0]
    if len(parts) == 2 and parts[0] == flow and parts[1]:
        return parts[1]
    raise RegistryError(f"{given!r} is not a {flow} run: give its id (e.g. 1796226278058349) or {flow}/<id>")


class EventExists(RegistryError):
    """An audit event of that name (sequence number) already exists: another change landed first."""


_clock_lock = threading.Lock()


_last_ns = 0


def _now_ns() -> int:
    """Nanoseconds since the epoch, strictly increasing within this process."""
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def _stamps(ns: int) -> tuple[str, str]:
    """(file-name stamp that sorts chronologically, ISO-8601 UTC time) for ``ns``."""
    moment = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    stamp = f"{moment:%Y%m%dT%H%M%S}.{ns % 1_000_000_000:09d}Z"
    iso = moment.replace(microsecond=(ns % 1_000_000_000) // 1000).isoformat(timespec="microseconds")
    return stamp, iso


class EventStore:
    """The audit log of one registry: one JSON object per event under ``root`` (a folder or an ``s3://`` prefix).

    An event is created once (``storage.put_new``: a conditional create, so an existing event is never overwritten)
    and events are read back in name order: their sequence numbers, zero-padded.
    """

    def __init__(self, root: str | Path, endpoint: Any = storage.DEFAULT) -> None:
        self.location = str(root).rstrip("/") if storage.is_s3(str(root)) else str(Path(root))
        self.endpoint = endpoint

    def append(self, name: str, body: bytes) -> None:
        """Write event ``name`` once; RegistryError when an event of that name already exists."""
        try:
            storage.put_new(storage.join_uri(self.location, name), body, self.endpoint)
        except FileExistsError:
            raise EventExists(f"audit event {name} already exists in {self.location}; refusing to overwrite") \
                from None

    def read_all(self) -> list[bytes]:
        """Every ``*.json`` event in name order (temporary files, whose names start with '.', are skipped)."""
        names = [n for n in storage.list_files(self.location, self.endpoint)
                 if n.endswith(".json") and not n.startswith(".")]
        found = (storage.read_bytes(storage.join_uri(self.location, n), self.endpoint) for n in names)
        return [body for body in found if body is not None]


def local_datastore_root() -> Path:
    """The ``.metaflow`` directory the Client uses (found from the working directory upward, as Metaflow does)."""
    from metaflow.plugins.datastores.local_storage import LocalStorage

    root = LocalStorage.datastore_root or LocalStorage.get_datastore_root_from_config(
        lambda *args, **kwargs: None, create_on_absent=False)
    if root is None:
        raise RegistryError(f"no {LocalStorage.DATASTORE_DIR} directory in {os.getcwd()} or above: run from the "
                            "directory that holds the runs")
    return Path(root)


def _conf(name: str) -> str | None:
    """A Metaflow setting: the METAFLOW_<name> environment variable now, else Metaflow's configuration."""
    from metaflow import metaflow_config

    return os.environ.get(f"METAFLOW_{name}") or getattr(metaflow_config, name, None)


def event_store(project: str, branch: str, flow: str, datastore: str | None = None,
                root: str | None = None, dataset: str | None = None) -> EventStore:
    """The audit-log store of a project branch, flow and dataset on ``datastore`` at ``root`` (default: Metaflow's
    configuration): ``_registry/<project>/<branch>/<flow>/<dataset>/events`` (without ``<dataset>`` when None)."""
    suffix = "/".join(["_registry", project, branch, flow, *([dataset] if dataset else []), "events"])
    kind = datastore or _conf("DEFAULT_DATASTORE") or "local"
    if kind == "local":
        return EventStore(Path(root or local_datastore_root()) / suffix)
    if kind == "s3":
        sysroot = root or _conf("DATASTORE_SYSROOT_S3")
        if not sysroot:
            raise RegistryError("METAFLOW_DATASTORE_SYSROOT_S3 is not set; cannot locate the registry audit log")
        return EventStore(f"{sysroot.rstrip('/')}/{suffix}", _conf("S3_ENDPOINT_URL"))
    raise RegistryError(f"datastore '{kind}' is not supported by the registry (local or s3)")


def run_datastore(run: Run) -> tuple[str, str] | None:
    """(datastore type, datastore root) the run's tasks recorded (metadata ``ds-type``/``ds-root``), or None."""
    for step in run:
        task = step.task
        meta = task.metadata_dict if task is not None else {}
        if meta.get("ds-type") and meta.get("ds-root"):
            return meta["ds-type"], meta["ds-root"]
    return None


def current_user() -> str:
    """The user name Metaflow would record (METAFLOW_USER, SUDO_USER, USERNAME, USER), or 'unknown'."""
    from metaflow.util import get_username

    return get_username() or "unknown"


def actor(location: str) -> dict[str, Any]:
    """Who is acting, from the environment (never from a command-line flag): the user Metaflow would record and, for
    a registry on S3, the AWS caller identity of the credentials in use."""
    return {"who": current_user(), "aws_identity": aws_identity() if location.startswith("s3://") else None}


def aws_identity() -> str | None:
    """The ARN of the AWS credentials in use (STS ``GetCallerIdentity``), or None when it cannot be had quickly."""
    try:
        import boto3
        from botocore.config import Config

        sts = boto3.client("sts", config=Config(connect_timeout=3, read_timeout=3, retries={"max_attempts": 1}))
        return str(sts.get_caller_identity()["Arn"])
    except Exception as err:  # no credentials, no network: the user name alone is recorded
        logger.warning("AWS caller identity unavailable (%s: %s); recording the user name only",
                       type(err).__name__, err)
        return None


FAULT_ENV = "MLOPS_REGISTRY_FAULT"  # test hook: "exit" or "hang" right after an audit event landed, before the tags


def fault_after_event() -> None:
    """Die or hang between the audit event and the tag moves when ``MLOPS_REGISTRY_FAULT`` says so (tests)."""
    mode = os.environ.get(FAULT_ENV, "")
    if mode == "hang":
        logger.warning("fault injection: hanging after the audit event (pid %d)", os.getpid())
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        while True:
            time.sleep(0.2)
    if mode == "exit":
        logger.error("fault injection: exiting after the audit event, before the tags moved")
        os._exit(75)
