"""Model registry: champion / candidate / archived as Metaflow run tags on a ``@project`` branch, plus an audit log.

The registry is Metaflow itself. A run of the flow is

* ``candidate`` once it is offered for promotion (``tag_candidate``, or ``register`` from inside the run); the tag
  stays, so ``candidates()`` are the candidate runs that are neither champion nor archived,
* ``champion`` while it is the model consumers must use (exactly one per project branch),
* ``archived`` once it has been replaced.

Runs are scoped by the system tags Metaflow's ``@project`` adds: ``project:<project>`` and
``project_branch:<branch>``, where the branch is ``user.<user>`` for a plain run, ``test.<name>`` for
``--branch <name>``, ``prod`` for ``--production`` and ``prod.<name>`` for both.

Every promotion, rollback and ``move_tag`` (e.g. DistillFlow's ``serving`` tag) appends one JSON event to an append-only
log in the datastore::

    local: <.metaflow>/_registry/<project>/<branch>/<flow>/events/<UTC stamp>-<uuid>.json   (tmp + rename)
    s3:    <METAFLOW_DATASTORE_SYSROOT_S3>/_registry/<project>/<branch>/<flow>/events/...   (one PUT)

The datastore is the one the branch's newest run recorded (task metadata ``ds-type``/``ds-root``), else Metaflow's
configuration; so a flow run with ``--datastore=s3`` and the CLI on a laptop write the same log.

Command line (run it where the Client finds the runs, e.g. the project root)::

    python -m steps.registry [--flow TrainFlow] [--branch NAME | --production] [--json] show
    python -m steps.registry promote RUN_ID [--force --reason TEXT]
    python -m steps.registry rollback [--to RUN_ID] [--reason TEXT]
    python -m steps.registry history

``--branch NAME`` means what it means to the flow (``test.NAME``); a full branch with a dot (``user.alice``,
``test.x``, ``prod.x``) is taken as is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from metaflow import Flow, Run, get_namespace, namespace
from metaflow.exception import MetaflowNotFound

from steps import models
from steps.cli import console

logger = logging.getLogger(__name__)

CHAMPION, CANDIDATE, ARCHIVED = "champion", "candidate", "archived"
PROMOTIONS = ("promote", "forced_promote")
CHAMPION_EVENTS = (*PROMOTIONS, "rollback")  # the audit events that move the champion tag
_ROLE_TAGS = (CHAMPION, CANDIDATE, ARCHIVED)


class RegistryError(RuntimeError):
    """A registry operation was refused or cannot be carried out."""


# ---------------------------------------------------------------------------------------------------------------
# Names, users, clocks


def project_branch(branch: str | None = None, production: bool = False, user: str | None = None) -> str:
    """The branch Metaflow's ``@project`` records for these options (``user.X``, ``test.X``, ``prod``, ``prod.X``)."""
    if branch:
        return f"{'prod' if production else 'test'}.{branch}"
    if production:
        return "prod"
    return f"user.{os.environ.get('METAFLOW_OWNER') or user or current_user()}"


def current_user() -> str:
    """The user name Metaflow would record (METAFLOW_USER, SUDO_USER, USERNAME, USER), or 'unknown'."""
    from metaflow.util import get_username

    return get_username() or "unknown"


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
    moment = datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc)
    stamp = f"{moment:%Y%m%dT%H%M%S}.{ns % 1_000_000_000:09d}Z"
    iso = moment.replace(microsecond=(ns % 1_000_000_000) // 1000).isoformat(timespec="microseconds")
    return stamp, iso


# ---------------------------------------------------------------------------------------------------------------
# The audit log


class EventStore(Protocol):
    """Where events live: append one named object, read all of them in name order."""

    location: str

    def append(self, name: str, body: bytes) -> None:
        """Write one new event object; never overwrite."""

    def read_all(self) -> list[bytes]:
        """Every event object, sorted by name (oldest first)."""


class LocalEventStore:
    """Events as files in a directory, each written to a temporary name and renamed into place."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.location = str(self.directory)

    def append(self, name: str, body: bytes) -> None:
        """Write ``name`` atomically (tmp file in the same directory, fsync, rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final, tmp = self.directory / name, self.directory / f".{name}.{uuid.uuid4().hex}.tmp"
        if final.exists():
            raise RegistryError(f"audit event {final} already exists; refusing to overwrite")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)

    def read_all(self) -> list[bytes]:
        """Every ``*.json`` event in name order (temporary files are skipped)."""
        if not self.directory.is_dir():
            return []
        return [p.read_bytes() for p in sorted(self.directory.glob("*.json")) if not p.name.startswith(".")]


class S3EventStore:
    """Events as S3 objects under one prefix, each written with a single PUT."""

    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        if not url.startswith("s3://"):
            raise RegistryError(f"not an s3:// URL: {url}")
        self.bucket, _, prefix = url[len("s3://"):].partition("/")
        self.prefix = prefix.strip("/")
        self.location = f"s3://{self.bucket}/{self.prefix}"
        self.endpoint_url = endpoint_url

    def _client(self) -> Any:
        """A boto3 S3 client pointed at ``endpoint_url`` (None: AWS)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def append(self, name: str, body: bytes) -> None:
        """PUT ``<prefix>/<name>`` once."""
        self._client().put_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}", Body=body,
                                  ContentType="application/json")

    def read_all(self) -> list[bytes]:
        """GET every ``*.json`` object under the prefix, in key order."""
        client = self._client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/"):
            keys.extend(o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json"))
        return [client.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in sorted(keys)]


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
                root: str | None = None) -> EventStore:
    """The audit-log store of a project branch and flow on ``datastore`` at ``root`` (default: Metaflow's config)."""
    suffix = f"_registry/{project}/{branch}/{flow}/events"
    kind = datastore or _conf("DEFAULT_DATASTORE") or "local"
    if kind == "local":
        return LocalEventStore(Path(root or local_datastore_root()) / suffix)
    if kind == "s3":
        sysroot = root or _conf("DATASTORE_SYSROOT_S3")
        if not sysroot:
            raise RegistryError("METAFLOW_DATASTORE_SYSROOT_S3 is not set; cannot locate the registry audit log")
        return S3EventStore(f"{sysroot.rstrip('/')}/{suffix}", _conf("S3_ENDPOINT_URL"))
    raise RegistryError(f"datastore '{kind}' is not supported by the registry (local or s3)")


def run_datastore(run: Run) -> tuple[str, str] | None:
    """(datastore type, datastore root) the run's tasks recorded (metadata ``ds-type``/``ds-root``), or None."""
    for step in run:
        task = step.task
        meta = task.metadata_dict if task is not None else {}
        if meta.get("ds-type") and meta.get("ds-root"):
            return meta["ds-type"], meta["ds-root"]
    return None


# ---------------------------------------------------------------------------------------------------------------
# Runs and models


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


def load_model(run: Run) -> Any:
    """The run's model, loaded only when ``model_blob`` hashes to the recorded ``model_fingerprint``."""
    blob, expected = _artifact(run, "model_blob"), _artifact(run, "model_fingerprint")
    if blob is None or not expected:
        raise RegistryError(f"run {run.pathspec} has no model_blob/model_fingerprint artifacts")
    return verified_model(blob, expected, where=f"run {run.pathspec}")


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


# ---------------------------------------------------------------------------------------------------------------
# The registry


class Registry:
    """Champion / candidate / archived runs of one flow on one ``@project`` branch, with an audit log."""

    def __init__(self, flow: str = "TrainFlow", branch: str | None = None, project: str = "tabular_mlops",
                 store: EventStore | None = None) -> None:
        self.flow, self.project = flow, project
        self.branch = branch or project_branch()
        self._store = store

    def __repr__(self) -> str:
        """Flow, branch and project."""
        return f"Registry(flow={self.flow!r}, branch={self.branch!r}, project={self.project!r})"

    @property
    def store(self) -> EventStore:
        """The audit-log store, resolved on first use: the datastore of the branch's newest run, else the config."""
        if self._store is None:
            newest = next(iter(self._tagged()), None)
            located = run_datastore(newest) if newest is not None else None
            self._store = event_store(self.project, self.branch, self.flow, *(located or ()))
            logger.debug("audit log of %s: %s", self, self._store.location)
        return self._store

    @property
    def scope(self) -> tuple[str, str]:
        """The system tags every run of this registry carries."""
        return f"project:{self.project}", f"project_branch:{self.branch}"

    # -- reading ---------------------------------------------------------------------------------------------

    def _tagged(self, *tags: str) -> list[Run]:
        """All runs of the flow on this branch carrying ``tags`` (finished or not), newest first."""
        with global_namespace():
            try:
                found = list(Flow(self.flow).runs(*self.scope, *tags))
            except MetaflowNotFound:
                return []
        return sorted(found, key=started_at, reverse=True)

    def runs(self, tag: str | None = None) -> list[Run]:
        """Successful runs of the flow on this branch, newest first, optionally only those tagged ``tag``."""
        return [r for r in self._tagged(*([tag] if tag else [])) if r.successful]

    def run(self, run: Run | str) -> Run:
        """A fresh ``Run`` for a run id, pathspec or Run, checked to belong to this project branch."""
        run_id = run.id if isinstance(run, Run) else str(run).split("/")[-1]
        with global_namespace():
            try:
                found = Run(f"{self.flow}/{run_id}")
            except MetaflowNotFound:
                raise RegistryError(f"run {self.flow}/{run_id} not found") from None
        if not set(self.scope) <= found.system_tags:
            branch = next((t.partition(":")[2] for t in found.system_tags if t.startswith("project_branch:")), None)
            raise RegistryError(f"run {found.pathspec} is on branch {branch!r}, not {self.branch!r} "
                                f"of project {self.project!r}")
        return found

    def champion(self) -> Run | None:
        """The newest successful run tagged ``champion`` on this branch, or None."""
        champions = self.runs(CHAMPION)
        if len(champions) > 1:
            logger.warning("%d runs carry the champion tag on %s: %s", len(champions), self.branch,
                           ", ".join(r.id for r in champions))
        return champions[0] if champions else None

    def candidates(self) -> list[Run]:
        """Successful runs tagged ``candidate`` that are neither champion nor archived, newest first."""
        return [r for r in self.runs(CANDIDATE) if not {CHAMPION, ARCHIVED} & r.user_tags]

    def archived(self) -> list[Run]:
        """Successful runs tagged ``archived``, newest first."""
        return self.runs(ARCHIVED)

    def history(self) -> list[dict[str, Any]]:
        """Every audit event of this flow and branch, oldest first."""
        return [json.loads(body) for body in self.store.read_all()]

    def _champion_events(self) -> list[dict[str, Any]]:
        """The audit events that moved the champion tag (not ``move_tag`` events), oldest first."""
        return [e for e in self.history() if e["kind"] in CHAMPION_EVENTS]

    def load_model(self, run: Run | str) -> Any:
        """The model of ``run`` (id or Run on this branch), verified against its fingerprint."""
        return load_model(self.run(run))

    def load_champion_model(self) -> Any:
        """The champion's model, verified against its fingerprint; RegistryError when there is no champion."""
        champion = self.champion()
        if champion is None:
            raise RegistryError(f"no champion for {self.flow} on branch {self.branch}")
        return load_model(champion)

    def show(self) -> dict[str, Any]:
        """Champion, candidates, archived runs and the inconsistencies found (``problems``)."""
        champion = self.champion()
        return {
            "flow": self.flow, "project": self.project, "branch": self.branch,
            "champion": describe(champion) if champion else None,
            "candidates": [describe(r) for r in self.candidates()],
            "archived": [describe(r) for r in self.archived()],
            "problems": self.problems(),
        }

    def problems(self) -> list[str]:
        """Inconsistencies between the champion tag(s), the runs' artifacts and the audit log."""
        champions, events = self._tagged(CHAMPION), self._champion_events()
        found = []
        if len(champions) > 1:
            found.append(f"{len(champions)} runs carry the champion tag: {', '.join(r.id for r in champions)}")
        for run in champions:
            found.extend(_champion_problems(run, events))
        return found

    # -- writing ---------------------------------------------------------------------------------------------

    def tag_candidate(self, run: Run | str) -> Run:
        """Tag a successful run ``candidate`` (a run that is already champion is left alone)."""
        run = self._successful(run)
        if CHAMPION in run.user_tags:
            logger.info("run %s is the champion; not tagging it candidate", run.id)
            return run
        run.add_tag(CANDIDATE)
        logger.info("tagged run %s candidate on %s", run.id, self.branch)
        return run

    def promote(self, run: Run | str, reason: str, force: bool = False, who: str | None = None,
                gate_summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``run`` the champion (gates must pass, or ``force`` with a reason); returns the audit event."""
        run = self._successful(run)
        passed = gates_passed(run)
        if not passed and not force:
            raise RegistryError(f"run {run.pathspec} did not pass its gates (gates_passed="
                                f"{_artifact(run, 'gates_passed', 'missing')}); refusing to promote it "
                                "(override with force and a reason)")
        if not passed and not (reason or "").strip():
            raise RegistryError(f"a forced promotion of run {run.pathspec} needs a non-empty reason")
        forced = not passed
        previous = self._move_champion(run)
        summary = gate_summary if gate_summary is not None else _artifact(run, "gate_summary")
        return self._record("forced_promote" if forced else "promote", previous, run, reason, who, summary, forced)

    def rollback(self, to: str | None = None, reason: str = "rollback", who: str | None = None) -> dict[str, Any]:
        """Restore the previous champion (or run ``to``, a former champion); returns the audit event."""
        events, current = self._champion_events(), self.champion()
        if to is None:
            if current is None:
                raise RegistryError(f"no champion for {self.flow} on branch {self.branch}: nothing to roll back")
            made = [e for e in events if e["kind"] in PROMOTIONS and e["to"] == current.id]
            if not made or not made[-1]["from"]:
                raise RegistryError(f"nothing to roll back to: the audit log records no champion before run "
                                    f"{current.id} on branch {self.branch}")
            to = made[-1]["from"]
        target = self._successful(to)
        if current is not None and target.id == current.id:
            raise RegistryError(f"run {target.id} is already the champion")
        if target.id not in {e["to"] for e in events} | {e["from"] for e in events}:
            raise RegistryError(f"run {target.id} was never champion on branch {self.branch}; use promote")
        previous = self._move_champion(target)
        return self._record("rollback", previous, target, reason, who, _artifact(target, "gate_summary"), False)

    def register(self, run_id: str, passed: bool, gate_summary: dict[str, Any] | None = None,
                 who: str | None = None) -> dict[str, Any] | None:
        """From inside a run: tag it candidate, and make it champion when ``passed``; returns the event or None."""
        # the run is still in progress: its success and its gates_passed artifact cannot be read yet
        run = self.run(run_id)
        run.add_tag(CANDIDATE)
        logger.info("tagged run %s candidate on %s", run.id, self.branch)
        if not passed:
            return None
        previous = self._move_champion(run)
        return self._record("promote", previous, run, "every gate passed", who, gate_summary, False)

    def move_tag(self, run: Run | str, tag: str, kind: str, reason: str, who: str | None = None,
                 gate_summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Move a single-holder ``tag`` to ``run`` from every other run of the branch; returns the audit event.

        For exclusive tags outside the registry's roles, such as DistillFlow's ``serving``. The run may still be in
        progress (called from its own ``end`` step), so neither its success nor its gates are checked here. The
        role tags and the champion's event kinds are refused: the champion moves only through ``promote``,
        ``register`` and ``rollback`` (which, like ``show``'s problems, ignore ``move_tag`` events).

        Args:
            run: run id, pathspec or Run on this branch.
            tag: the tag to move, e.g. ``serving``.
            kind: the audit event's kind, e.g. ``serve``.
            reason: why, recorded in the event.
            who: recorded in the event (default: the current user).
            gate_summary: the run's gate summary, recorded in the event.

        Returns:
            The appended event; its ``from`` is the newest run the tag was taken from, or None.
        """
        if tag in _ROLE_TAGS or kind in CHAMPION_EVENTS:
            raise RegistryError(f"tag '{tag}' / event '{kind}' belong to the champion: use promote, register or "
                                "rollback")
        run = self.run(run)
        olds = [r for r in self._tagged(tag) if r.id != run.id]
        run.add_tag(tag)
        for old in olds:
            old.remove_tag(tag)
            logger.info("removed tag %s from %s", tag, old.pathspec)
        return self._record(kind, olds[0].id if olds else None, run, reason, who, gate_summary, False)

    def champion_for_comparison(self) -> tuple[str, Any, bytes] | None:
        """(run id, verified model, model bytes) of the champion, for challenger-versus-champion gates; or None."""
        champion = self.champion()
        if champion is None:
            return None
        return champion.id, load_model(champion), _artifact(champion, "model_blob")

    def _successful(self, run: Run | str) -> Run:
        """``run`` resolved on this branch; RegistryError unless it finished successfully."""
        found = self.run(run)
        if not found.successful:
            raise RegistryError(f"run {found.pathspec} did not finish successfully")
        return found

    def _move_champion(self, new: Run) -> str | None:
        """Tag ``new`` champion, then archive every other champion; returns the id of the newest one replaced."""
        olds = [r for r in self._tagged(CHAMPION) if r.id != new.id]
        if CHAMPION in new.user_tags and not olds:
            raise RegistryError(f"run {new.id} is already the champion")
        new.replace_tags([ARCHIVED], [CHAMPION])  # a candidate tag stays: it records how the run entered
        for old in olds:
            old.replace_tags([CHAMPION], [ARCHIVED])
            logger.info("archived former champion %s", old.pathspec)
        logger.info("champion of %s on %s is now %s", self.flow, self.branch, new.pathspec)
        return olds[0].id if olds else None

    def _record(self, kind: str, previous: str | None, run: Run, reason: str, who: str | None,
                gate_summary: Any, forced: bool) -> dict[str, Any]:
        """Append one event to the audit log and return it."""
        event_id = uuid.uuid4().hex
        stamp, when = _stamps(_now_ns())
        event = {
            "event_id": event_id, "kind": kind, "who": who or current_user(), "when": when,
            "flow": self.flow, "project": self.project, "branch": self.branch,
            "from": previous, "to": run.id, "reason": reason, "gate_summary": gate_summary, "forced": forced,
        }
        body = json.dumps(event, sort_keys=True, default=str).encode()
        try:
            self.store.append(f"{stamp}-{event_id}.json", body)
        except Exception:
            logger.error("tags moved but the audit event could not be written: %s", body.decode())
            raise
        logger.info("%s %s -> %s recorded in %s", kind, previous, run.id, self.store.location)
        return event


def _champion_problems(run: Run, events: list[dict[str, Any]]) -> list[str]:
    """What is wrong with one champion-tagged run, given the audit log."""
    if not run.successful:
        return [f"champion {run.id} did not finish successfully"]
    found = []
    if ARCHIVED in run.user_tags:
        found.append(f"champion {run.id} is also tagged archived")
    blob, expected = _artifact(run, "model_blob"), _artifact(run, "model_fingerprint")
    if blob is None or not expected:
        found.append(f"champion {run.id} has no model_blob/model_fingerprint")
    elif models.fingerprint(blob) != expected:
        found.append(f"champion {run.id}: model_blob does not hash to model_fingerprint {expected[:12]}")
    if not gates_passed(run) and not any(e["to"] == run.id and e.get("forced") for e in events):
        found.append(f"champion {run.id} failed its gates and has no forced promotion event")
    made = [e for e in events if e["to"] == run.id]
    if not made:
        found.append(f"champion {run.id} has no promotion event in the audit log (tagged by hand?)")
    elif events[-1]["to"] != run.id:
        found.append(f"champion {run.id} is not the run the latest audit event made champion "
                     f"({events[-1]['to']})")
    return found


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _say(text: str) -> None:
    """One block of the CLI's output, on stdout."""
    console(__name__).info("%s", text)


def _line(summary: dict[str, Any] | None) -> str:
    """One readable line for a run summary."""
    if summary is None:
        return "(none)"
    fingerprint = (summary["model_fingerprint"] or "")[:12] or "-"
    gates = "gates passed" if summary["gates_passed"] else "gates NOT passed"
    model = summary["model_name"] or "-"
    return f"{summary['run_id']}  {model}  sha256 {fingerprint}  {gates}  started {summary['started_at']}"


def _print_show(state: dict[str, Any]) -> None:
    """Print ``show`` output for people."""
    _say(f"{state['flow']}  project {state['project']}  branch {state['branch']}")
    _say(f"champion:   {_line(state['champion'])}")
    for label in ("candidates", "archived"):
        runs = state[label]
        _say(f"{label + ':':<11} {_line(runs[0]) if runs else '(none)'}")
        for summary in runs[1:]:
            _say(f"{'':<11} {_line(summary)}")
    _say("problems:   " + ("none" if not state["problems"] else ""))
    for problem in state["problems"]:
        _say(f"  - {problem}")


def _event_line(event: dict[str, Any]) -> str:
    """One readable line for an audit event."""
    forced = " FORCED" if event.get("forced") else ""
    return (f"{event['when']}  {event['kind']:<14} {event['from'] or '-'} -> {event['to']}  by {event['who']}"
            f"{forced}  reason: {event['reason'] or '-'}")


def _parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser = argparse.ArgumentParser(prog="python -m steps.registry", parents=[common],
                                     description="Champion / candidate / archived runs and the audit log.")
    parser.add_argument("--flow", default="TrainFlow")
    parser.add_argument("--project", default="tabular_mlops")
    parser.add_argument("--branch", default=None,
                        help="as given to the flow's --branch (NAME -> test.NAME, with --production prod.NAME), "
                             "or a full project branch containing a dot (user.alice, test.x, prod.x)")
    parser.add_argument("--production", action="store_true", help="the production branch (prod)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", parents=[common], help="champion, candidates, archived, problems")
    promote = commands.add_parser("promote", parents=[common], help="make a run the champion")
    promote.add_argument("run_id")
    promote.add_argument("--force", action="store_true", help="promote although its gates failed (needs --reason)")
    promote.add_argument("--reason", default="")
    promote.add_argument("--who", default=None)
    rollback = commands.add_parser("rollback", parents=[common], help="restore the previous champion")
    rollback.add_argument("--to", default=None, help="a former champion's run id")
    rollback.add_argument("--reason", default="rollback")
    rollback.add_argument("--who", default=None)
    commands.add_parser("history", parents=[common], help="the audit log, oldest first")
    return parser


def _branch_from(args: argparse.Namespace) -> str:
    """The full project branch the command-line options name."""
    if args.branch and "." in args.branch:
        return args.branch
    return project_branch(args.branch, args.production)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    as_json = getattr(args, "json", False)
    registry = Registry(flow=args.flow, branch=_branch_from(args), project=args.project)
    try:
        if args.command == "show":
            result: Any = registry.show()
            if not as_json:
                _print_show(result)
        elif args.command == "history":
            result = registry.history()
            if not as_json:
                _say("\n".join(_event_line(e) for e in result) or f"no events for {registry.branch}")
        elif args.command == "promote":
            result = registry.promote(args.run_id, reason=args.reason, force=args.force, who=args.who)
            if not as_json:
                _say(_event_line(result))
        else:
            result = registry.rollback(to=args.to, reason=args.reason, who=args.who)
            if not as_json:
                _say(_event_line(result))
    except (RegistryError, models.FingerprintMismatch) as err:
        sys.stderr.write(f"error: {err}\n")  # one line, no traceback: the CLI contract
        return 1
    if as_json:
        _say(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
