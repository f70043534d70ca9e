"""One shard's work: stream, validate, score, write; the spot notice, the run's claim and planted faults between
batches."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from steps.config.dataset import DatasetConfig
from steps.config.score import FaultInjection, ScoreConfig
from steps.core.progress import Progress
from steps.core.storage import delete
from steps.data.contract import ScoreInputError, reason_labels
from steps.scoring.claims import Claim, ClaimLost, Watch, claim_date
from steps.scoring.faults import fault_plan, plant, targets
from steps.scoring.partition import finish_partition, manifest_header, retract_manifest
from steps.scoring.plan import ShardJob, job_for, plan_run
from steps.scoring.read import Batch, prefetch, read_shard, use_lean_arrow_pool
from steps.scoring.resolve import ResolvedModel
from steps.scoring.runtime import Scorer, check_explainable, prepare_runtime, scorers_for, top_contributions
from steps.scoring.write import (
    PartWriter,
    QuarantineWriter,
    accumulate_agreement,
    agreement_record,
    dictionary_columns,
    output_batch,
    output_schema,
    relative_record,
)

logger = logging.getLogger(__name__)


SPOT_NOTICE_ENV = "MLOPS_SPOT_NOTICE_PATH"


class SpotTermination(RuntimeError):
    """A spot termination notice arrived: the shard stops, discards its temporary part and lets @retry redo it."""


def spot_notice_path(current_notice: str | None, shard: int, attempt: int) -> str | None:
    """Where the spot termination notice appears: MLOPS_SPOT_NOTICE_PATH, else Metaflow's.

    ``{shard}`` and ``{attempt}`` in the override are filled in: a test hook, since on AWS Batch every attempt runs
    on its own instance and a notice never outlives the attempt it was meant for.
    """
    override = os.environ.get(SPOT_NOTICE_ENV)
    if not override:
        return current_notice
    return override.replace("{shard}", str(shard)).replace("{attempt}", str(attempt))


@dataclass
class Guard:
    """Checks between record batches: the spot termination notice, and planted faults."""

    shard: int = 0
    attempt: int = 0
    notice_path: str | None = None
    fault: FaultInjection = field(default_factory=FaultInjection)
    more_faults: tuple[FaultInjection, ...] = ()  # further planted faults (``fault_plan``)
    watch: Watch = field(default_factory=Watch)  # the run's claim on the date, and its runtime process

    def before_batch(self) -> None:
        """Raise :class:`SpotTermination` when the notice file exists; ClaimLost / RunnerGone when the run may no
        longer write."""
        if self.notice_path and os.path.exists(self.notice_path):
            raise SpotTermination(f"spot termination notice at {self.notice_path}: shard {self.shard} attempt "
                                  f"{self.attempt} stops; its temporary part is discarded and @retry redoes it")
        self.watch.check()

    def after_batch(self, batches: int, writer: PartWriter) -> None:
        """Plant the faults that target this shard and attempt once ``batches`` were written."""
        for f in (self.fault, *self.more_faults):
            if targets(f, "batch", self.attempt, self.shard, batches):
                plant(f, f"shard {self.shard} attempt {self.attempt} after {batches} batch(es) written to "
                         f"{writer.tmp}", self.notice_path, self.watch.check)

    def after_commit(self) -> None:
        """Plant the faults that target this shard and attempt right after its files moved into place."""
        for f in (self.fault, *self.more_faults):
            if targets(f, "commit", self.attempt, self.shard):
                plant(f, f"shard {self.shard} attempt {self.attempt} after its part was moved into place",
                      self.notice_path, self.watch.check)


def score_shard(job: ShardJob, model: Scorer, shadow: Scorer | None = None, explain: Any = None,
                guard: Guard | None = None, threads: int = 1) -> dict[str, Any]:
    """Stream one shard: validate, score, write its part (and quarantine part) atomically; returns its record.

    Args:
        job: the shard and how to score it.
        model: the serving runtime.
        shadow: a challenger scored into ``shadow_*`` columns, with agreement counts in the record.
        explain: the native pipeline, for ``job.top_k`` LightGBM contributions per row.
        guard: spot-notice and fault-injection checks between batches.
        threads: thread limit for native libraries (BLAS/OpenMP) while scoring.
    """
    guard = guard or Guard(shard=job.shard.index)
    use_lean_arrow_pool()
    started = time.perf_counter()
    scored_at = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "us")
    schema = output_schema(pa.type_for_alias(job.id_type), job.spec.id_column, job.top_k, shadow is not None)
    clock = {"read_validate_s": 0.0, "predict_s": 0.0, "write_s": 0.0}
    counts = {"rows_in": 0, "rows_out": 0, "rows_quarantined": 0, "batches": 0}
    reasons: Counter[str] = Counter()
    agreement = {"rows": 0, "agree": 0, "to_positive": 0, "to_negative": 0, "sum_abs_diff": 0.0, "max_abs_diff": 0.0}
    stream = read_shard(job, clock)
    batches = prefetch(stream) if job.overlap_io else stream
    quarantine = QuarantineWriter(job.quarantine_part_uri, job.compression, job.tmp_dir)
    progress = Progress(f"shard {job.shard.index}", total=job.shard.rows, log=logger)
    try:
        with threadpool_limits(limits=threads), PartWriter(job.part_uri, schema, job.compression,
                                                           dictionary_columns(schema), job.tmp_dir) as part:
            for batch in iter_guarded(batches, guard):
                t0 = time.perf_counter()
                frame = batch.frame if batch.valid.all() else batch.frame[batch.valid]
                scores = model.predict(frame)
                contributions = top_contributions(explain, frame, job.spec.features, job.top_k) if job.top_k else None
                shadow_scores = shadow.predict(frame) if shadow is not None else None
                t1 = time.perf_counter()
                part.write(output_batch(job, schema, batch, scores, scored_at, contributions, shadow_scores))
                if not batch.valid.all():
                    quarantine.write(batch, job.spec)
                    reasons.update(label for r in batch.reasons.dropna() for label in reason_labels(r))
                clock["predict_s"] += t1 - t0
                clock["write_s"] += time.perf_counter() - t1
                if shadow_scores is not None:
                    accumulate_agreement(scores, shadow_scores, job.threshold, agreement)
                counts["rows_in"] += len(batch.valid)
                counts["rows_out"] += len(scores)
                counts["rows_quarantined"] += int((~batch.valid).sum())
                counts["batches"] += 1
                progress.advance(len(batch.valid))
                guard.after_batch(counts["batches"], part)
            if counts["rows_in"] != job.shard.rows:  # checked before anything is moved into place
                raise ScoreInputError(f"shard {job.shard.index}: read {counts['rows_in']} rows, planned "
                                      f"{job.shard.rows} (did an input file change after start?)")
            t1 = time.perf_counter()
            guard.watch.check(force=True)  # the last check before anything is moved into place
            written = part.commit()
            quarantined = quarantine.commit()
            clock["write_s"] += time.perf_counter() - t1
            _withdraw_if_lost(guard.watch, [written, quarantined])
            guard.after_commit()
            progress.done()
    except BaseException:
        quarantine.abort()
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    record = {
        "shard": job.shard.index, "count": job.shard.count, "sources": job.shard.to_dict()["pieces"],
        **counts, "part": relative_record(job, written),
        "quarantine_part": relative_record(job, quarantined) if quarantined else None,
        "reasons": dict(reasons.most_common()), "attempt": guard.attempt,
        "shadow": agreement_record(agreement) if shadow is not None else None,
        "timings": {**{k: round(v, 4) for k, v in clock.items()}, "total_s": round(time.perf_counter() - started, 4)},
    }
    logger.info("shard %d/%d: %d rows in, %d scored, %d quarantined in %.2fs", job.shard.index, job.shard.count,
                counts["rows_in"], counts["rows_out"], counts["rows_quarantined"], record["timings"]["total_s"])
    return record


def _withdraw_if_lost(watch: Watch, published: list[dict[str, Any] | None]) -> None:
    """After the shard's files moved into place: if the claim was lost meanwhile, delete them (they carry this run's
    claim in their names, so they are this run's own) and raise ClaimLost."""
    try:
        watch.check(force=True)
    except ClaimLost:
        for record in published:
            if record is not None:
                delete(record["uri"])
        raise


def iter_guarded(batches: Iterator[Batch], guard: Guard) -> Iterator[Batch]:
    """``batches`` with the spot-notice check before each one (and before the first read finishes)."""
    guard.before_batch()
    for batch in batches:
        guard.before_batch()
        yield batch


def guard_for(shard_index: int, attempt: int, current_notice: str | None, cfg: ScoreConfig,
              claim: dict[str, Any] | None = None, watch_parent: bool = True) -> Guard:
    """The between-batch checks of one shard attempt: spot notice, planted faults, the run's claim and its runtime
    (``watch_parent``: the process that started this one must stay alive)."""
    watch = Watch(Claim.from_dict(claim) if claim else None, os.getppid() if watch_parent else None,
                  cfg.claim_check_s)
    first, *more = fault_plan(cfg.fault_injection)
    return Guard(shard=shard_index, attempt=attempt, fault=first, more_faults=tuple(more),
                 notice_path=spot_notice_path(current_notice, shard_index, attempt), watch=watch)


def score_in_process(source: str, output_root: str, day: str, model: ResolvedModel, spec: DatasetConfig,
                     cfg: ScoreConfig, decision: dict[str, Any], flow_run: str = "in-process") -> dict[str, Any]:
    """Score one date's input in this process with the functions ScoreFlow's steps call, in the same order.

    ``decision``: threshold and review band (``core.decision.decision_in_use``). For backfills, notebooks and tests;
    the partition and its manifest are the same as ScoreFlow's (no retries, no shadow model). Returns the manifest.
    """
    plan = plan_run(source, output_root, day, spec, cfg.shard_rows)
    onnx_bytes, parity = prepare_runtime(model, cfg, spec, plan.files, decision["threshold"])
    header = manifest_header(flow_run, plan, model, None, cfg, decision, parity)
    claim = claim_date(plan.output_root, plan.day, flow_run)
    retract_manifest(plan.output_root, plan.day, spec.name)
    features = check_explainable(model.pipeline, cfg.top_k) if cfg.top_k else []
    summary = {**plan.summary(), "claim": claim.to_dict()}
    records = []
    for shard in plan.shards:
        scorer, _, explain = scorers_for(cfg, spec, model.blob, model.fingerprint, onnx_bytes)
        job = job_for(shard.to_dict(), summary, spec, cfg, decision, model.describe(), features)
        guard = guard_for(shard.index, 0, None, cfg, claim.to_dict(), watch_parent=False)
        records.append(score_shard(job, scorer, None, explain, guard, cfg.threads))
    return finish_partition(plan.output_root, plan.day, records, header, cfg.max_quarantine_rate, flow_run, claim)
