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

    local: <.metaflow>/_registry/<project>/<branch>/<flow>/events/<seq, 8 digits>.json   (created with link())
    s3:    <METAFLOW_DATASTORE_SYSROOT_S3>/_registry/<project>/<branch>/<flow>/events/...   (PUT If-None-Match: *)

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

import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from metaflow import Flow, Run
from metaflow.exception import MetaflowNotFound

from steps.core.project import PROJECT
from steps.modeling import models
from steps.registry.artifacts import (  # re-exported: the registry's public reading API
    DATASET_TAG as DATASET_TAG,
    _artifact as _artifact,
    dataset_tag as dataset_tag,
    default_dataset as default_dataset,
    describe as describe,
    gates_passed as gates_passed,
    global_namespace as global_namespace,
    load_model as load_model,
    run_data as run_data,
    run_dataset as run_dataset,
    started_at as started_at,
    step_data as step_data,
    stored_artifact as stored_artifact,
    stored_model as stored_model,
    verified_model as verified_model,
)
from steps.registry.store import (
    FAULT_ENV as FAULT_ENV,
    EventExists,
    EventStore,
    RegistryError,
    _now_ns,
    _stamps,
    actor,
    current_user,
    event_store,
    fault_after_event,
    run_datastore,
    run_id_of,
)

logger = logging.getLogger(__name__)


CHAMPION, CANDIDATE, ARCHIVED = "champion", "candidate", "archived"


PROMOTIONS = ("promote", "forced_promote")


CHAMPION_EVENTS = (*PROMOTIONS, "rollback")  # the audit events that move the champion tag


_ROLE_TAGS = (CHAMPION, CANDIDATE, ARCHIVED)


COMMIT_ATTEMPTS = 50  # concurrent changes that may land before this one gives up


RECONCILE_ROUNDS = 20  # rounds of moving tags to match the log before giving up


def project_branch(branch: str | None = None, production: bool = False, user: str | None = None) -> str:
    """The branch Metaflow's ``@project`` records for these options (``user.X``, ``test.X``, ``prod``, ``prod.X``)."""
    if branch:
        return f"{'prod' if production else 'test'}.{branch}"
    if production:
        return "prod"
    return f"user.{os.environ.get('METAFLOW_OWNER') or user or current_user()}"


def check_resume_branch(flow: str, origin_run_id: str | None, branch: str) -> None:
    """RegistryError when this run resumes one made on another project branch: Metaflow takes the branch from the
    options given to ``resume`` (``--branch``, ``--production``), not from the run it resumes, so a resume without
    them would register the model on the user's own branch."""
    if not origin_run_id:
        return
    with global_namespace():
        try:
            origin = Run(f"{flow}/{origin_run_id}")
        except MetaflowNotFound:
            return
    was = next((t.split(":", 1)[1] for t in origin.system_tags if t.startswith("project_branch:")), None)
    if was and was != branch:
        raise RegistryError(f"run {origin_run_id} ran on branch {was}, this resume runs on {branch}: resume it with "
                            f"{branch_options(was)} (given before `resume`), so its model is registered where the "
                            "run was made")


def branch_options(branch: str) -> str:
    """The command-line options that put a run on ``branch`` (the inverse of :func:`project_branch`)."""
    kind, _, name = branch.partition(".")
    if kind == "prod":
        return f"--production --branch {name}" if name else "--production"
    if kind == "test":
        return f"--branch {name}"
    return "no --branch or --production option"


class Registry:
    """Champion / candidate / archived runs of one flow on one ``@project`` branch for one dataset, with an audit log.

    A champion is per dataset: each run registered here is tagged ``dataset:<name>`` and the registry only sees runs
    with its dataset's tag, so two datasets trained on one branch never share or replace each other's champion.
    """

    def __init__(self, flow: str = "TrainFlow", branch: str | None = None, project: str = PROJECT,
                 store: EventStore | None = None, dataset: str | None = None) -> None:
        self.flow, self.project = flow, project
        self.branch = branch or project_branch()
        self.dataset = dataset or default_dataset()
        self._store = store

    def __repr__(self) -> str:
        """Flow, branch, project and dataset."""
        return (f"Registry(flow={self.flow!r}, branch={self.branch!r}, project={self.project!r}, "
                f"dataset={self.dataset!r})")

    @property
    def store(self) -> EventStore:
        """The audit-log store, resolved on first use: the datastore of the branch's newest run, else the config."""
        if self._store is None:
            newest = next(iter(self._tagged()), None)
            located = run_datastore(newest) if newest is not None else None
            datastore, root = located if located is not None else (None, None)
            self._store = event_store(self.project, self.branch, self.flow, datastore, root, dataset=self.dataset)
            logger.debug("audit log of %s: %s", self, self._store.location)
        return self._store

    @property
    def scope(self) -> tuple[str, str]:
        """The system tags every run of this registry carries."""
        return f"project:{self.project}", f"project_branch:{self.branch}"

    @property
    def tag(self) -> str:
        """The dataset tag every run of this registry carries."""
        return dataset_tag(self.dataset)

    # -- reading ---------------------------------------------------------------------------------------------

    def _tagged(self, *tags: str) -> list[Run]:
        """All runs of the flow on this branch carrying ``tags`` (finished or not), newest first."""
        with global_namespace():
            try:
                found = list(Flow(self.flow).runs(*self.scope, self.tag, *tags))
            except MetaflowNotFound:
                return []
        return sorted(found, key=started_at, reverse=True)

    def runs(self, tag: str | None = None) -> list[Run]:
        """Successful runs of the flow on this branch, newest first, optionally only those tagged ``tag``."""
        return [r for r in self._tagged(*([tag] if tag else [])) if r.successful]

    def run(self, run: Run | str, any_dataset: bool = False) -> Run:
        """A fresh ``Run`` for a run id, pathspec or Run, checked to belong to this project branch (and, unless
        ``any_dataset``, to this registry's dataset)."""
        run_id = run.id if isinstance(run, Run) else run_id_of(str(run), self.flow)
        with global_namespace():
            try:
                found = Run(f"{self.flow}/{run_id}")
            except MetaflowNotFound:
                raise RegistryError(f"run {self.flow}/{run_id} not found") from None
        if not set(self.scope) <= found.system_tags:
            branch = next((t.partition(":")[2] for t in found.system_tags if t.startswith("project_branch:")), None)
            raise RegistryError(f"run {found.pathspec} is on branch {branch!r}, not {self.branch!r} "
                                f"of project {self.project!r}")
        other = run_dataset(found)
        if other is not None and other != self.dataset and not any_dataset:
            raise RegistryError(f"run {found.pathspec} is a model of dataset {other!r}, not {self.dataset!r}")
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
            "flow": self.flow, "project": self.project, "branch": self.branch, "dataset": self.dataset,
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
        named = _holder(events, CHAMPION)
        if named is not None and named not in {r.id for r in champions}:
            found.append(f"the audit log's latest event makes run {named} champion but it does not carry the champion "
                         "tag (a process died between the two?): `python -m steps.registry reconcile` moves the tags")
        return found

    # -- writing ---------------------------------------------------------------------------------------------

    def tag_candidate(self, run: Run | str) -> Run:
        """Tag a successful run ``candidate`` (a run that is already champion is left alone)."""
        run = self._successful(run)
        if CHAMPION in run.user_tags:
            logger.info("run %s is the champion; not tagging it candidate", run.id)
            return run
        run.add_tags([CANDIDATE, self.tag])
        logger.info("tagged run %s candidate on %s", run.id, self.branch)
        return run

    def promote(self, run: Run | str, reason: str, force: bool = False, note: str | None = None,
                gate_summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make ``run`` the champion (its gates must pass, or ``force`` with a reason); returns the audit event."""
        run = self._successful(run)
        forced = _needs_force(run, force, reason, "promote")
        summary = gate_summary if gate_summary is not None else _artifact(run, "gate_summary")

        def build(events: list[dict[str, Any]]) -> dict[str, Any]:
            previous = _holder(events, CHAMPION)
            if previous == run.id:
                raise RegistryError(f"run {run.id} is already the champion")
            return self._event("forced_promote" if forced else "promote", CHAMPION, previous, run, reason, note,
                               summary, forced)

        return self._commit(build)

    def rollback(self, to: str | None = None, reason: str = "rollback", note: str | None = None,
                 force: bool = False) -> dict[str, Any]:
        """Restore the previous champion (or run ``to``, a former champion); returns the audit event.

        The run restored must have passed its gates, or ``force`` with a reason (the event then says forced).
        """
        def build(events: list[dict[str, Any]]) -> dict[str, Any]:
            moves = [e for e in events if e["kind"] in CHAMPION_EVENTS]
            current = _holder(events, CHAMPION)
            target_id = to
            if target_id is None:
                if current is None:
                    raise RegistryError(f"no champion for {self.flow} on branch {self.branch}: nothing to roll back")
                made = [e for e in moves if e["kind"] in PROMOTIONS and e["to"] == current]
                if not made or not made[-1]["from"]:
                    raise RegistryError(f"nothing to roll back to: the audit log records no champion before run "
                                        f"{current} on branch {self.branch}")
                target_id = made[-1]["from"]
            target = self._successful(target_id)
            if target.id == current:
                raise RegistryError(f"run {target.id} is already the champion")
            if target.id not in {e["to"] for e in moves} | {e["from"] for e in moves}:
                raise RegistryError(f"run {target.id} was never champion on branch {self.branch}; use promote")
            forced = _needs_force(target, force, reason if reason != "rollback" else "", "roll back to")
            return self._event("rollback", CHAMPION, current, target, reason, note,
                               _artifact(target, "gate_summary"), forced)

        return self._commit(build)

    def register(self, run_id: str, passed: bool, gate_summary: dict[str, Any] | None = None,
                 note: str | None = None) -> dict[str, Any] | None:
        """From inside a run: tag it candidate, and make it champion when ``passed``; returns the event or None."""
        # the run is still in progress: its success and its gates_passed artifact cannot be read yet
        run = self.run(run_id)
        run.add_tags([CANDIDATE, self.tag])
        logger.info("tagged run %s candidate on %s", run.id, self.branch)
        if not passed:
            return None
        events = self.history()
        if _holder(events, CHAMPION) == run.id:  # a retried or resumed end step: the promotion already landed
            logger.info("run %s is already champion by event %s: moving the tags only", run.id, events[-1]["seq"])
            self._reconcile(CHAMPION)
            return next(e for e in reversed(events) if e["to"] == run.id and e["kind"] in CHAMPION_EVENTS)
        return self._commit(lambda events: self._event("promote", CHAMPION, _holder(events, CHAMPION), run,
                                                       "every gate passed", note, gate_summary, False))

    def reconcile(self) -> dict[str, Any]:
        """Move the champion tag to the run the audit log's latest event names (after a process died between the
        event and the tags); returns ``show()``."""
        self._reconcile(CHAMPION)
        return self.show()

    def move_tag(self, run: Run | str, tag: str, kind: str, reason: str, note: str | None = None,
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
            note: a free-text note recorded with the actor (e.g. on whose behalf).
            gate_summary: the run's gate summary, recorded in the event.

        Returns:
            The appended event; its ``from`` is the run the tag was taken from, or None.
        """
        if tag in _ROLE_TAGS or kind in CHAMPION_EVENTS:
            raise RegistryError(f"tag '{tag}' / event '{kind}' belong to the champion: use promote, register or "
                                "rollback")
        run = self.run(run)
        return self._commit(lambda events: self._event(kind, tag, _holder(events, tag), run, reason, note,
                                                       gate_summary, False))

    def champion_for_comparison(self) -> tuple[str, Any, bytes] | None:
        """(run id, verified model, model bytes) of the champion, for challenger-versus-champion gates; or None."""
        champion = self.champion()
        if champion is None:
            return None
        blob, model = stored_model(champion)
        return champion.id, model, blob

    def _successful(self, run: Run | str) -> Run:
        """``run`` resolved on this branch; RegistryError unless it finished successfully."""
        found = self.run(run)
        if not found.successful:
            raise RegistryError(f"run {found.pathspec} did not finish successfully")
        return found

    def _commit(self, build: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> dict[str, Any]:
        """Append the event ``build`` makes from the log as it is, then move the tags to match the log.

        Events are numbered and each number is created once (``storage.put_new``), so of two changes decided on the
        same log only one lands; the other decides again on the new log. Returns the event that landed.
        """
        for attempt in range(COMMIT_ATTEMPTS):
            events = self.history()
            event = {**build(events), "seq": len(events) + 1}
            body = json.dumps(event, sort_keys=True, default=str).encode()
            try:
                self.store.append(f"{event['seq']:08d}.json", body)
            except EventExists:
                logger.info("another registry change landed first (event %d); deciding again", event["seq"])
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
                continue
            logger.info("%s %s -> %s recorded in %s", event["kind"], event["from"], event["to"], self.store.location)
            fault_after_event()
            self._reconcile(event["tag"])
            return event
        raise RegistryError(f"{COMMIT_ATTEMPTS} concurrent registry changes on branch {self.branch} landed before "
                            "this one; try again")

    def _reconcile(self, tag: str) -> None:
        """Move ``tag`` to the run the log's latest event for it names (champion: archive the others), until the
        tags and the log agree and no newer event arrived meanwhile; every writer ends with this check."""
        for _ in range(RECONCILE_ROUNDS):
            target = _holder(self.history(), tag)
            holders = {r.id for r in self._tagged(tag)}
            if target is None or holders == {target}:
                if _holder(self.history(), tag) == target:
                    return
                continue
            new = self.run(target)
            if tag == CHAMPION:
                new.replace_tags([ARCHIVED], [CHAMPION])  # a candidate tag stays: it records how the run entered
            else:
                new.add_tags([tag])
            for old in holders - {target}:
                old_run = self.run(old)
                if tag == CHAMPION:
                    old_run.replace_tags([CHAMPION], [ARCHIVED])
                else:
                    old_run.remove_tag(tag)
                logger.info("%s: moved from %s to %s", tag, old_run.pathspec, new.pathspec)
        raise RegistryError(f"the {tag} tags on branch {self.branch} kept changing under this process; run "
                            "`python -m steps.registry show` to check them")

    def _event(self, kind: str, tag: str, previous: str | None, run: Run, reason: str, note: str | None,
               gate_summary: Any, forced: bool) -> dict[str, Any]:
        """One audit event (without its sequence number): what moved, who did it, and why."""
        _, when = _stamps(_now_ns())
        return {
            "event_id": uuid.uuid4().hex, "kind": kind, "tag": tag, "when": when, **actor(self.store.location),
            "note": note or None, "flow": self.flow, "project": self.project, "branch": self.branch,
            "dataset": self.dataset, "from": previous, "to": run.id, "reason": reason,
            "gate_summary": gate_summary, "forced": forced,
        }


def _holder(events: list[dict[str, Any]], tag: str) -> str | None:
    """The run the latest event for ``tag`` moved it to (champion: promotions and rollbacks), or None."""
    moves = [e for e in events if e.get("tag", CHAMPION if e["kind"] in CHAMPION_EVENTS else None) == tag]
    return moves[-1]["to"] if moves else None


def _needs_force(run: Run, force: bool, reason: str, action: str) -> bool:
    """Whether moving the champion to ``run`` is forced; RegistryError when its gates failed and there is no
    ``force`` with a reason."""
    if gates_passed(run):
        return False
    if not force:
        raise RegistryError(f"run {run.pathspec} did not pass its gates (gates_passed="
                            f"{_artifact(run, 'gates_passed', 'missing')}); refusing to {action} it "
                            "(override with --force and a --reason)")
    if not (reason or "").strip():
        raise RegistryError(f"a forced {action} of run {run.pathspec} needs a non-empty reason")
    return True


def _champion_problems(run: Run, events: list[dict[str, Any]]) -> list[str]:
    """What is wrong with one champion-tagged run, given the audit log."""
    if not run.successful:
        return [f"champion {run.id} did not finish successfully"]
    found = []
    if ARCHIVED in run.user_tags:
        found.append(f"champion {run.id} is also tagged archived")
    blob, expected = stored_artifact(run, "model_blob"), stored_artifact(run, "model_fingerprint")
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
