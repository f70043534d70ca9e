"""Who may publish a date's partition: numbered claims, each created once, the newest holding the date.

Every ScoreFlow run claims its date before it retracts the old manifest: ``<root>/_claims/dt=<day>/<seq>.json`` is
created with a conditional create (``storage.put_new``: ``O_EXCL``-like locally, ``If-None-Match`` on S3), so two
runs never get the same number and the highest number holds the date. A run's shards write parts named after its
claim, stop between record batches when the claim is lost (or the run's own process died), and ``join`` publishes
only while it still holds the claim. So an older run's ``resume``, or an earlier run racing a newer one, fails with a
message naming the holder and leaves the partition as the holder left it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from steps.core.errors import UserError
from steps.core.storage import delete, join_uri, list_files, put_new, read_bytes

logger = logging.getLogger(__name__)

CLAIMS = "_claims"
ATTEMPTS = 100  # claims by other runs that may land first before this one gives up
KEEP = 20  # claims kept per date (older ones are pruned by the run that publishes)


class ClaimLost(UserError):
    """Another run claimed the date after this one: this run must not write or publish its partition."""


class RunnerGone(RuntimeError):
    """The process that started this shard (the run's runtime) died: the shard stops writing."""


@dataclass(frozen=True)
class Claim:
    """One run's claim on one date of one output root."""

    output_root: str
    day: str
    seq: int
    run: str

    @property
    def tag(self) -> str:
        """The suffix of the file names this claim's shards write: ``c<seq, 8 digits>``."""
        return f"c{self.seq:08d}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (artifact)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Claim:
        """Inverse of :meth:`to_dict`."""
        return cls(**value)


def claims_uri(output_root: str, day: str) -> str:
    """``<root>/_claims/dt=<day>``."""
    return join_uri(output_root, CLAIMS, f"dt={day}")


def _numbers(output_root: str, day: str) -> list[int]:
    """The claim numbers of the date, ascending."""
    return sorted(int(n.split(".")[0]) for n in list_files(claims_uri(output_root, day))
                  if n.endswith(".json") and n.split(".")[0].isdigit())


def claim_date(output_root: str, day: str, run: str) -> Claim:
    """Claim the date for ``run`` with the next number; the claim supersedes every earlier one."""
    for _ in range(ATTEMPTS):
        numbers = _numbers(output_root, day)
        seq = (numbers[-1] if numbers else 0) + 1
        body = {"seq": seq, "run": run, "claimed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "host": socket.gethostname(), "pid": os.getpid()}
        try:
            put_new(join_uri(claims_uri(output_root, day), f"{seq:08d}.json"), json.dumps(body).encode())
        except FileExistsError:
            continue
        if numbers:
            logger.info("claimed dt=%s (claim %d) for %s, superseding claim %d", day, seq, run, numbers[-1])
        return Claim(output_root, day, seq, run)
    raise ClaimLost(f"{ATTEMPTS} other runs claimed dt={day} of {output_root} while this one tried; try again")


def holder(output_root: str, day: str) -> dict[str, Any] | None:
    """The newest claim of the date (it holds the date), or None when the date was never claimed."""
    numbers = _numbers(output_root, day)
    if not numbers:
        return None
    body = read_bytes(join_uri(claims_uri(output_root, day), f"{numbers[-1]:08d}.json"))
    return json.loads(body) if body is not None else {"seq": numbers[-1], "run": "unknown"}


def check_claim(claim: Claim) -> None:
    """ClaimLost naming the run that now holds the date, unless ``claim`` still holds it."""
    newest = holder(claim.output_root, claim.day)
    if newest is None or newest["seq"] != claim.seq:
        who = f"{newest['run']} (claim {newest['seq']}, {newest.get('claimed_at', '?')})" if newest else "nobody"
        raise ClaimLost(f"dt={claim.day} of {claim.output_root} is now held by {who}; {claim.run} (claim "
                        f"{claim.seq}) stops without writing or publishing, leaving the partition to the holder")


def prune(claim: Claim, keep: int = KEEP) -> None:
    """Delete all but the newest ``keep`` claims of the date (never the holder's)."""
    for seq in _numbers(claim.output_root, claim.day)[:-keep]:
        delete(join_uri(claims_uri(claim.output_root, claim.day), f"{seq:08d}.json"))


@dataclass
class Watch:
    """Between-batch checks that the run may still write: its claim holds, and its runtime process is alive."""

    claim: Claim | None = None
    parent_pid: int | None = None  # the runtime that started this task locally (None: not watched, e.g. on Batch)
    every_s: float = 2.0
    _checked: float = float("-inf")

    def check(self, force: bool = False) -> None:
        """RunnerGone or ClaimLost when the run may no longer write (the claim is re-read every ``every_s``)."""
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            raise RunnerGone(f"the run's process (pid {self.parent_pid}) is gone: this shard stops writing")
        if self.claim is not None and (force or time.monotonic() - self._checked >= self.every_s):
            check_claim(self.claim)
            self._checked = time.monotonic()
