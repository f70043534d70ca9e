"""A scored date's partition: the manifest (written last), stale-file sweep, trusted reads."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from steps.config.score import FaultInjection, ScoreConfig
from steps.core.errors import UserError
from steps.core.storage import delete, join_uri, list_files, put_bytes, read_bytes, sha256_uri
from steps.data.contract import ScoreInputError
from steps.scoring.claims import Claim, check_claim, prune
from steps.scoring.faults import plant, targets
from steps.scoring.plan import QUARANTINE, RunPlan, partition_uri, quarantine_uri
from steps.scoring.write import shadow_summary

if TYPE_CHECKING:  # annotations only: resolving a model imports scikit-learn, which join and end never need
    from steps.scoring.resolve import ResolvedModel

logger = logging.getLogger(__name__)


MANIFEST = "_manifest.json"


MANIFEST_VERSION = 1


class QuarantineLimitExceeded(UserError):
    """More rows failed validation than ``max_quarantine_rate`` allows; the partition gets no manifest."""


def retract_manifest(output_root: str, day: str, dataset: str | None = None) -> bool:
    """Delete the date's manifest before it is rewritten (readers stop trusting it); True when there was one.

    A partition holding another dataset's predictions is never replaced: ScoreInputError naming both (two datasets
    scored to one output root would otherwise overwrite each other's dates).
    """
    uri = join_uri(partition_uri(output_root, day), MANIFEST)
    body = read_bytes(uri)
    existed = body is not None
    owner = (json.loads(body).get("model") or {}).get("dataset") if body is not None else None
    if owner is not None and dataset is not None and owner != dataset:
        raise ScoreInputError(f"{partition_uri(output_root, day)} holds predictions of dataset {owner!r}; refusing to "
                              f"replace them with {dataset!r}'s: score it to another --output")
    if existed:
        delete(uri)
        logger.info("retracted %s: the partition is untrusted until this run writes a new manifest", uri)
    return existed


def read_manifest(output_root: str, day: str) -> dict[str, Any] | None:
    """The date's manifest, or None when the partition is not (yet) trusted."""
    body = read_bytes(join_uri(partition_uri(output_root, day), MANIFEST))
    return json.loads(body) if body is not None else None


def _sweep(directory: str, keep: set[str]) -> list[str]:
    """Delete the files directly under ``directory`` whose names are not in ``keep``; returns the deleted names."""
    stale = [name for name in list_files(directory) if name not in keep]
    for name in stale:
        delete(join_uri(directory, name))
    return stale


def finish_partition(output_root: str, day: str, records: list[dict[str, Any]], header: dict[str, Any],
                     max_quarantine_rate: float, flow_run: str | None = None,
                     claim: Claim | None = None, faults: tuple[FaultInjection, ...] = (),
                     attempt: int = 0) -> dict[str, Any]:
    """Check the shards' records, re-read every part from storage, remove stale files, write ``_manifest.json``
    last; returns the manifest. Only while ``claim`` holds the date (the run's claim; None: unclaimed, tests).

    ``flow_run`` (the run writing the manifest; after a resume not the one that planned it) overrides the header's.
    ``faults``: planted faults (tests) at ``manifest`` (before it is written) and ``published`` (after).

    Raises:
        ClaimLost: another run claimed the date since (nothing is written; the holder's partition is left alone).
        QuarantineLimitExceeded: too many rows failed validation (no manifest is written).
        RuntimeError: counts do not add up, a shard or a part is missing, or a part's bytes changed.
    """
    records = sorted(records, key=lambda r: r["shard"])
    totals = _totals(records)
    rate = totals["quarantine_rate"]
    where = partition_uri(output_root, day)
    if rate > max_quarantine_rate:
        raise QuarantineLimitExceeded(
            f"{totals['rows_quarantined']} of {totals['rows_in']} rows failed validation (rate {rate:.4f} > "
            f"max_quarantine_rate {max_quarantine_rate}); {where} gets no manifest and stays untrusted; rows and "
            f"reasons in {quarantine_uri(output_root, day)}; top reasons: {dict(quarantine_reasons(records)[:5])}")
    if claim is not None:
        check_claim(claim)
    parts = [r["part"] for r in records]
    quarantined = [r["quarantine_part"] for r in records if r["quarantine_part"]]
    verify_parts(output_root, [*parts, *quarantined])
    retract_manifest(output_root, day)  # a stale run's manifest that slipped in: untrusted while stale files go
    removed = [f"dt={day}/{n}" for n in _sweep(where, {p["path"].rsplit("/", 1)[-1] for p in parts})]
    removed += [f"{QUARANTINE}/dt={day}/{n}" for n in _sweep(quarantine_uri(output_root, day),
                                                              {q["path"].rsplit("/", 1)[-1] for q in quarantined})]
    if removed:
        logger.info("removed stale or temporary files: %s", removed)
    manifest = {
        "version": MANIFEST_VERSION, **header, "flow_run": flow_run or header.get("flow_run"), "date": day,
        "partition": f"dt={day}", "claim": claim.seq if claim else None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "totals": totals, "parts": parts, "quarantine_parts": quarantined,
        "shadow": {**header.get("shadow", {}), **(shadow_summary(records) or {})} if header.get("shadow") else None,
        "shards": records, "removed": removed,
    }
    _plant(faults, "manifest", attempt, claim)
    if claim is not None:
        check_claim(claim)  # the last check before publishing
    put_bytes(join_uri(where, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    _plant(faults, "published", attempt, claim)
    logger.info("wrote %s: %d rows scored, %d quarantined (%.2f%%), %d part(s)", join_uri(where, MANIFEST),
                totals["rows_out"], totals["rows_quarantined"], 100 * rate, len(parts))
    if claim is not None:
        prune(claim)
    return manifest


def _plant(faults: tuple[FaultInjection, ...], at: str, attempt: int, claim: Claim | None) -> None:
    """Plant the faults of ``join`` at point ``at`` (fault-injection tests)."""
    for f in faults:
        if targets(f, at, attempt):
            plant(f, f"join attempt {attempt} at {at}", still_allowed=lambda: check_claim(claim) if claim else None)


def quarantine_reasons(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Quarantined rows per reason over every shard's record, most first (a row breaking several rules counts for
    each)."""
    counts: Counter[str] = Counter()
    for record in records:
        counts.update({reason: int(rows) for reason, rows in record.get("reasons", {}).items()})
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def untrusted(output_root: str, day: str) -> str:
    """Why a date's predictions are not read: its partition has no manifest (missing, being rewritten, or failed)."""
    return f"{partition_uri(output_root, day)} has no {MANIFEST}"


def _totals(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows in, out and quarantined over every shard, and the quarantine rate; RuntimeError when a shard is missing
    or its counts do not add up."""
    count = records[0]["count"] if records else 0
    if [r["shard"] for r in records] != list(range(count)):
        raise RuntimeError(f"expected shards 0..{count - 1}, got {[r['shard'] for r in records]}")
    for r in records:
        if r["rows_in"] != r["rows_out"] + r["rows_quarantined"]:
            raise RuntimeError(f"shard {r['shard']}: rows in {r['rows_in']} != out {r['rows_out']} + quarantined "
                               f"{r['rows_quarantined']}")
    totals: dict[str, Any] = {k: sum(r[k] for r in records) for k in ("rows_in", "rows_out", "rows_quarantined")}
    totals["quarantine_rate"] = totals["rows_quarantined"] / totals["rows_in"] if totals["rows_in"] else 0.0
    return totals


def verify_parts(output_root: str, parts: list[dict[str, Any]]) -> None:
    """RuntimeError unless every part is on storage with the size and sha256 its shard recorded (re-read now)."""
    for part in parts:
        uri = join_uri(output_root, part["path"])
        found = sha256_uri(uri)
        if found is None:
            raise RuntimeError(f"{uri} is listed by its shard but missing from storage")
        if found != (part["sha256"], part["bytes"]):
            raise RuntimeError(f"{uri} changed after its shard wrote it: sha256 {found[0][:12]}.. and {found[1]} "
                               f"bytes on storage, {part['sha256'][:12]}.. and {part['bytes']} bytes recorded")


def read_partition(output_root: str, day: str, verify: bool = False) -> pa.Table:
    """The date's predictions from the parts its manifest lists (``verify``: check sizes and sha256 first).

    Raises:
        ScoreInputError: no manifest (the partition is missing, being rewritten, or failed), or a checksum mismatch.
    """
    manifest = read_manifest(output_root, day)
    if manifest is None:
        raise ScoreInputError(f"{untrusted(output_root, day)}: not a trusted partition")
    tables = []
    for part in manifest["parts"]:
        uri = join_uri(output_root, part["path"])
        body = read_bytes(uri)
        if body is None:
            raise ScoreInputError(f"{uri} is listed in the manifest but missing")
        if verify and hashlib.sha256(body).hexdigest() != part["sha256"]:
            raise ScoreInputError(f"{uri}: sha256 does not match the manifest")
        tables.append(pq.read_table(pa.BufferReader(body)))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)


def manifest_header(run_pathspec: str, plan: RunPlan, model: ResolvedModel, shadow: ResolvedModel | None,
                    cfg: ScoreConfig, decision: dict[str, Any], parity: dict[str, Any] | None,
                    force: str = "") -> dict[str, Any]:
    """The run-level part of the manifest (the shards' records are added by ``finish_partition``); ``forced`` says
    which rules a forced --model-run/--shadow-run broke, why, and who forced it."""
    broken = {role: list(m.overrides) for role, m in (("model", model), ("shadow", shadow)) if m and m.overrides}
    forced = {"reason": force, "by": current_user(), "overrides": broken} if broken else None
    return {"forced": forced,
        "flow_run": run_pathspec, "input": plan.summary(), "model": model.describe(),
        "shadow": shadow.describe() if shadow else None, "runtime": cfg.runtime, "onnx_parity": parity,
        "decision_threshold": decision["threshold"], "decision_source": decision["source"],
        "review_band": list(decision["review_band"]), "top_k": cfg.top_k,
        "max_quarantine_rate": cfg.max_quarantine_rate,
    }


def current_user() -> str:
    """The user Metaflow records for this process (METAFLOW_USER, USER, ...), or 'unknown'."""
    from metaflow.util import get_username

    return get_username() or "unknown"


def summary_lines(manifest: dict[str, Any], output_root: str) -> list[str]:
    """What a finished run says: where the partition is, its counts, the model, and the shadow's agreement."""
    t, model, shadow = manifest["totals"], manifest["model"], manifest.get("shadow")
    lines = [f"{partition_uri(output_root, manifest['date'])}: {t['rows_out']} rows scored, {t['rows_quarantined']} "
             f"quarantined ({100 * t['quarantine_rate']:.2f}%) by {model['name']} ({model['run']}, sha256 "
             f"{model['fingerprint'][:12]})"]
    if shadow and "agreement_rate" in shadow:
        lines.append(f"shadow {shadow['run']}: decisions agree on {100 * shadow['agreement_rate']:.2f}% of rows, "
                     f"mean |score diff| {shadow['mean_abs_diff']:.4f}")
    return lines
