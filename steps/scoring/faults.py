"""Planted faults for the fault-injection tests (off in production): a shard or ``join`` dies, raises, hangs, or sees
a spot notice at a chosen point, so retries, resume and the partition's commit protocol can be proven end to end.

The score config's ``fault_injection`` plants one; ``MLOPS_SCORE_FAULT`` (a JSON object merged over it, ``1``, or a
JSON list of objects) plants one or several, e.g. one shard dies while another gets a spot notice mid-shard.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from steps.config.score import FaultInjection

logger = logging.getLogger(__name__)

FAULT_ENV = "MLOPS_SCORE_FAULT"
FAULT_EXIT_CODE = 75


class InjectedFault(RuntimeError):
    """A failure planted by fault injection."""


def fault_settings(configured: FaultInjection, env: str | None = None) -> FaultInjection:
    """The config's fault injection, with ``MLOPS_SCORE_FAULT`` (JSON object, or '1') merged over it."""
    raw = os.environ.get(FAULT_ENV, "") if env is None else env
    if not raw.strip():
        return configured
    override = {"enabled": True} if raw.strip().lower() in ("1", "true", "yes") else json.loads(raw)
    return FaultInjection.model_validate({**configured.model_dump(), **override})


def fault_plan(configured: FaultInjection, env: str | None = None) -> list[FaultInjection]:
    """The faults to plant: :func:`fault_settings`, or one per object when ``MLOPS_SCORE_FAULT`` is a JSON list."""
    raw = os.environ.get(FAULT_ENV, "") if env is None else env
    if raw.strip().startswith("["):
        return [fault_settings(configured, json.dumps(item)) for item in json.loads(raw)]
    return [fault_settings(configured, raw)]


def targets(f: FaultInjection, at: str, attempt: int, shard: int | None = None, batches: int = 0) -> bool:
    """Whether ``f`` fires at point ``at`` of this attempt (and shard, after ``batches`` record batches)."""
    return (f.enabled and f.at == at and attempt in f.attempts and (shard is None or shard in f.shards)
            and (at != "batch" or batches >= f.after_batches))


def plant(f: FaultInjection, where: str, notice_path: str | None = None,
          still_allowed: Callable[[], None] | None = None) -> None:
    """Do what ``f`` says at ``where``: die (exit), raise, raise a spot notice, or hang until ``still_allowed``
    raises (the run lost its claim, or its runtime died) or the process is killed."""
    if f.mode == "raise":
        raise InjectedFault(f"fault injection: {where}")
    if f.mode == "notice":  # what the spot-monitor sidecar does when the instance is reclaimed
        if notice_path and not os.path.exists(notice_path):
            logger.warning("fault injection: spot termination notice at %s %s", notice_path, where)
            Path(notice_path).touch()
        return
    if f.mode == "hang":
        logger.warning("fault injection: hangs %s (pid %d)", where, os.getpid())
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        while True:
            time.sleep(0.2)
            if still_allowed is not None:
                still_allowed()
    logger.error("fault injection: %s (process exits with %d)", where, FAULT_EXIT_CODE)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(FAULT_EXIT_CODE)  # like a reclaimed instance: no cleanup, temporary files stay
