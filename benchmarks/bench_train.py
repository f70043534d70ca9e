"""TrainFlow wall time on the default data, per-step durations and per-candidate fit time and validation metrics.

Runs ``flows/train_flow.py run`` through ``metaflow.Runner`` in a throw-away Metaflow workspace (its own
``.metaflow``), so a developer's runs are never touched. Target stated in the project: under a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from metaflow import Runner

from benchmarks import ROOT, Report

logger = logging.getLogger(__name__)

DATA = ROOT / "data" / "transactions.parquet"
CONFIGS = {"dataset": ROOT / "config" / "dataset.yaml", "train": ROOT / "config" / "train.yaml",
           "gates": ROOT / "config" / "gates.yaml",
           "profile": ROOT / "config" / "profiles" / "local.yaml"}
TARGET_SECONDS = 60.0


def ensure_data() -> Path:
    """The default data file, made with ``python -m steps.data.synth`` when missing (``make data`` makes it too)."""
    if not DATA.exists():
        logger.info("%s missing; generating it", DATA)
        subprocess.run([sys.executable, "-m", "steps.data.synth", "--out", str(DATA)], cwd=ROOT, check=True)
    return DATA


def _step_rows(run: Any) -> list[dict[str, Any]]:
    """One row per step: task count, first task created to last task finished, and the summed task seconds."""
    rows = []
    for step in run.steps():
        tasks = list(step.tasks())
        start, end = min(t.created_at for t in tasks), max(t.finished_at for t in tasks)
        rows.append({"step": step.id, "tasks": len(tasks), "start": start,
                     "seconds": round((end - start).total_seconds(), 2),
                     "task_seconds_sum": round(sum((t.finished_at - t.created_at).total_seconds() for t in tasks), 2)})
    rows.sort(key=lambda r: r["start"])
    t0 = rows[0]["start"]
    for r in rows:
        r["start"] = f"+{(r['start'] - t0).total_seconds():.1f}s"
    return rows


def _candidate_rows(run: Any) -> list[dict[str, Any]]:
    """One row per candidate: fit seconds, its whole task's seconds, validation ROC AUC and PR AUC, model size."""
    task_seconds = {t.data.candidate["name"]: (t.finished_at - t.created_at).total_seconds()
                    for t in run["train_candidate"].tasks()}
    chosen = run.data.model_name
    return [{"candidate": s["name"] + (" (selected)" if s["name"] == chosen else ""), "type": s["type"],
             "train_rows": s["train_rows"], "fit_s": round(s["fit_seconds"], 2),
             "task_s": round(task_seconds[s["name"]], 2), "val_roc_auc": round(s["metrics"]["roc_auc"], 4),
             "val_pr_auc": round(s["metrics"]["average_precision"], 4),
             "size_kib": round(s["size_bytes"] / 1024, 1)} for s in run.data.candidate_summaries]


def run(quick: bool = False) -> Report:
    """One TrainFlow run on the default data with the default configs (``quick`` changes nothing: it is one run)."""
    data = ensure_data()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as ws, contextlib.chdir(ws):
        (Path(ws) / ".metaflow").mkdir()  # the Client below reads this workspace's datastore (found from cwd)
        config = [(k, str(v)) for k, v in CONFIGS.items()]
        with Runner(str(ROOT / "flows" / "train_flow.py"), show_output=False, cwd=ws, config=config) as runner:
            start = time.perf_counter()
            with runner.run(data=str(data)) as result:
                wall = time.perf_counter() - start
                if result.status != "successful":
                    raise RuntimeError(f"TrainFlow failed:\n{result.stderr[-4000:]}")
                run_ = result.run
                steps, candidates = _step_rows(run_), _candidate_rows(run_)
                tasks = [t for step in run_ for t in step]  # run.created_at moves when the registry tags the run
                span = (max(t.finished_at for t in tasks) - min(t.created_at for t in tasks)).total_seconds()
                rows = run_["start"].task.data.lineage.get("rows")
    verdict = "met" if wall < TARGET_SECONDS else "NOT met"
    logger.info("TrainFlow: %.1f s wall", wall)
    return {
        "title": "TrainFlow wall time on the default data",
        "tables": {"total": [{"data_rows": rows, "wall_s": round(wall, 1), "run_span_s": round(span, 1),
                              "target_s": TARGET_SECONDS, "target": verdict}],
                   "steps": steps, "candidates": candidates},
        "notes": [
            f"Target 'TrainFlow under a minute on 2 cores on the default data' {verdict}: {wall:.1f} s wall.",
            "wall_s: Runner start to finish (includes Metaflow start-up, packaging and artifact I/O); run_span_s: "
            "first task created to last task finished in the Client; step seconds: first task created to last task "
            "finished (foreach tasks overlap, so task_seconds_sum can exceed seconds).",
            "fit_s is the estimator's fit alone (CandidateResult.fit_seconds); task_s is the whole "
            "train_candidate task (load artifacts, fit, score validation, serialize).",
        ],
    }
