"""Every training data set, content-addressed in the DVC remote, so the data of any model can be fetched again.

TrainFlow stores the exact bytes it trained on as ``<remote>/files/md5/<md5[:2]>/<md5[2:]>``, the layout DVC itself
uses for a file it pushes: the object a ``.dvc`` file with that md5 pulls, and nothing is copied twice. Data already
tracked and pushed by DVC (``make data``, ``--data-rev``) lands on its own object; a retraining's data set, written
by MonitorFlow to an output folder, becomes versioned this way. The remote is ``MLOPS_DATA_REMOTE``, else the
profile's ``data_remote``, else the project's default DVC remote (``.dvc/config``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from steps.core import storage
from steps.core.errors import UserError
from steps.core.project import PROJECT_ROOT

logger = logging.getLogger(__name__)

REMOTE_ENV = "MLOPS_DATA_REMOTE"


def dvc_default_remote(repo: Path = PROJECT_ROOT) -> str | None:
    """The URL of the repository's default DVC remote (made absolute by DVC), or None without one."""
    try:
        from dvc.repo import Repo

        config = Repo(str(repo)).config
        return str(config["remote"][config["core"]["remote"]]["url"])
    except Exception as err:  # no DVC repository here (e.g. a task on AWS Batch without .dvc/): none
        logger.info("no default DVC remote in %s (%s)", repo, type(err).__name__)
        return None


def data_remote(configured: str | None) -> str | None:
    """Where training data is stored: ``MLOPS_DATA_REMOTE``, else ``configured`` (the profile's), else DVC's."""
    return os.environ.get(REMOTE_ENV) or configured or dvc_default_remote()


def object_uri(remote: str, md5: str) -> str:
    """DVC's content-addressed location of a file with this md5 in ``remote``."""
    return storage.join_uri(remote, "files", "md5", md5[:2], md5[2:])


def store(blob: bytes | Path, remote: str | None) -> dict[str, Any] | None:
    """Put ``blob`` (bytes, or a local file streamed) in the remote under its md5 (once: an object already there is
    left alone); returns where, or None (logged) when no remote is configured."""
    if not remote:
        logger.warning("no data remote (set %s, the profile's data_remote, or a DVC default remote): this run's data "
                       "is recorded by its sha256 only and cannot be fetched for a reproduction", REMOTE_ENV)
        return None
    if isinstance(blob, bytes):
        md5, size = hashlib.md5(blob).hexdigest(), len(blob)  # noqa: S324 - DVC's content address
    else:
        with open(blob, "rb") as fh:
            md5, size = hashlib.file_digest(fh, "md5").hexdigest(), blob.stat().st_size
    uri = object_uri(remote, md5)
    if storage.exists(uri):
        logger.info("training data already in %s", uri)
    else:
        try:
            storage.put_new(uri, blob)
            logger.info("stored the training data (%s bytes) in %s", f"{size:,}", uri)
        except FileExistsError:  # another run stored the same bytes meanwhile
            pass
    return {"md5": md5, "remote": remote, "object": uri, "size": size}


def fetch(content: dict[str, Any] | None, sha256: str) -> bytes:
    """The bytes a run trained on, from its recorded content object, checked against its recorded sha256."""
    if not content:
        raise UserError("the run's lineage records no content object for its data (no data remote was configured)")
    body = storage.read_bytes(content["object"])
    if body is None:
        raise UserError(f"the run's data object {content['object']} is missing")
    found = hashlib.sha256(body).hexdigest()
    if found != sha256:
        raise UserError(f"{content['object']}: sha256 {found} differs from the recorded {sha256}")
    return body
