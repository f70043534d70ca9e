"""TrainFlow at scale: per-step wall time, peak RSS of every task, datastore bytes added per run, against the
issue's targets (gates and start + split + join each within a quarter of the LightGBM fit; no task above 2.5x the
Arrow size of the columns it uses; datastore bytes within 1.25x the data's Parquet size).

    python -m benchmarks.bench_train --rows 1000000 3000000          # sizes as arguments; results/train-<rows>.*
    python -m benchmarks.run train                                    # `make bench`: 1M (random forest too) and 3M

Each size runs ``flows/train_flow.py run`` through ``metaflow.Runner`` in a throw-away workspace (its own
``.metaflow``) on data from ``python -m steps.data.synth``, with the default configs except the candidates
(LightGBM and logistic regression; the random forest too at ``--forest-rows`` and below). Every task's peak RSS is
its VmHWM, written at exit by a ``sitecustomize`` hook put on the tasks' ``PYTHONPATH`` by this benchmark only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from benchmarks import ROOT, Report

logger = logging.getLogger(__name__)

SIZES = (1_000_000, 3_000_000)  # `make bench`; 10M: python -m benchmarks.bench_train --rows 10000000
QUICK_SIZES = (200_000,)
FOREST_ROWS = 1_000_000
GATES_RATIO, PLUMBING_RATIO, RSS_RATIO, DATASTORE_RATIO = 0.25, 0.25, 2.5, 1.25
SITECUSTOMIZE = '''
import atexit, json, os, sys

def _peak():
    out = os.environ.get("BENCH_RSS_DIR")
    argv = sys.argv
    if not out or "step" not in argv:
        return
    step = argv[argv.index("step") + 1]
    task = next((a.split("=", 1)[1] for a in argv if a.startswith("--task-id=")), None)
    if task is None and "--task-id" in argv:
        task = argv[argv.index("--task-id") + 1]
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            with open(os.path.join(out, f"{step}-{task}-{os.getpid()}.json"), "w") as fh:
                json.dump({"step": step, "task": task, "peak_mib": int(line.split()[1]) / 1024}, fh)

atexit.register(_peak)
'''


def make_data(rows: int, directory: Path) -> Path:
    """Generated transactions (``steps.data.synth``, default seed and months) written under ``directory``."""
    path = directory / f"transactions-{rows}.parquet"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "steps.data.synth", "--rows", str(rows), "--out", str(path)],
                       cwd=ROOT, check=True, capture_output=True)
    return path


def train_config(rows: int, directory: Path, forest_rows: int) -> Path:
    """config/train.yaml with LightGBM and logistic regression (and the random forest up to ``forest_rows``)."""
    cfg = yaml.safe_load((ROOT / "config" / "train.yaml").read_text())
    keep = {"logistic_regression", "lightgbm"} | ({"random_forest"} if rows <= forest_rows else set())
    cfg["candidates"] = [c for c in cfg["candidates"] if c["type"] in keep]
    path = directory / f"train-{rows}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def arrow_mib(data: Path, columns: list[str] | None, share: float) -> float:
    """In-memory Arrow size of ``columns`` of the data file (None: all), times the share of rows a task uses."""
    return pq.read_table(data, columns=columns).nbytes * share / 2**20


IMPORTS = ("import metaflow, numpy, pandas, pyarrow.parquet, sklearn.ensemble, sklearn.linear_model, lightgbm, "
           "scipy.stats; import steps.gates.assess, steps.modeling.training, steps.data.table")


def import_mib() -> float:
    """Peak RSS of a Python process that only imports what a task imports (what every task pays before data)."""
    code = f"{IMPORTS}; from benchmarks import peak_mib; print(peak_mib())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def directory_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _step_rows(run: Any) -> dict[str, dict[str, Any]]:
    """Per step: task count, first task created to last task finished, summed task seconds."""
    out = {}
    for step in run.steps():
        tasks = list(step.tasks())
        start, end = min(t.created_at for t in tasks), max(t.finished_at for t in tasks)
        out[step.id] = {"tasks": len(tasks), "seconds": (end - start).total_seconds(),
                        "task_seconds_sum": sum((t.finished_at - t.created_at).total_seconds() for t in tasks)}
    return out


def judge_with_champion(ws: str, env: dict[str, str], run: Any) -> float | None:
    """Seconds of the judge step when a champion exists, as in every run after a dataset's first: ``run`` (just
    promoted) resumed at ``judge``, so the same model is judged again and compared with itself as the champion
    (the comparison costs what it costs between two models of that size: both scored, both timed, DeLong's test,
    the paired bootstraps of the disparities). None when ``run`` was not promoted. The resume takes the configs of
    the run it resumes."""
    from metaflow import Runner

    if not run.data.gates_passed:
        return None
    runner = Runner(str(ROOT / "flows" / "train_flow.py"), show_output=False, cwd=ws, env=env)
    with runner, runner.resume(origin_run_id=run.id, step_to_rerun="judge") as resumed:
        if resumed.status != "successful":
            raise RuntimeError(f"resuming {run.id} at judge failed:\n{resumed.stdout[-4000:]}")
        judge = resumed.run["judge"].task
        if judge.data.champion_run_id != run.id:
            raise RuntimeError(f"the resumed judge compared with {judge.data.champion_run_id}, not {run.id}")
        return (judge.finished_at - judge.created_at).total_seconds()


def run_size(rows: int, work: Path, forest_rows: int) -> dict[str, Any]:
    """One TrainFlow run on ``rows`` generated rows: the measurements of every table."""
    from metaflow import Runner

    from steps.config import DatasetConfig, TrainConfig, load_file
    from steps.data.split import split_columns
    from steps.modeling.training import training_columns

    data = make_data(rows, work)
    spec = load_file(DatasetConfig, ROOT / "config" / "dataset.yaml")
    configs = {"dataset": ROOT / "config" / "dataset.yaml", "train": train_config(rows, work, forest_rows),
               "gates": ROOT / "config" / "gates.yaml", "profile": ROOT / "config" / "profiles" / "local.yaml"}
    with tempfile.TemporaryDirectory(prefix="bench-train-", dir=work) as ws, contextlib.chdir(ws):
        (Path(ws) / ".metaflow").mkdir()
        hooks, rss = Path(ws) / "hooks", Path(ws) / "rss"
        hooks.mkdir(), rss.mkdir()
        (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {"BENCH_RSS_DIR": str(rss), "OMP_WAIT_POLICY": "PASSIVE",
               "PYTHONPATH": os.pathsep.join([str(hooks), str(ROOT), os.environ.get("PYTHONPATH", "")])}
        before = directory_bytes(Path(ws) / ".metaflow")
        with Runner(str(ROOT / "flows" / "train_flow.py"), show_output=False, cwd=ws, env={**os.environ, **env},
                    config=[(k, str(v)) for k, v in configs.items()]) as runner:
            start = time.perf_counter()
            with runner.run(data=str(data)) as result:
                wall = time.perf_counter() - start
                if result.status != "successful":
                    raise RuntimeError(f"TrainFlow failed at {rows} rows:\n{result.stdout[-4000:]}\n"
                                       f"{result.stderr[-2000:]}")
                run = result.run
                steps = _step_rows(run)
                summaries = run.data.candidate_summaries
                split = run.data.split_summary
                tasks = {t.pathspec.split("/")[-1]: t.data.candidate["name"] for t in run["train_candidate"].tasks()}
                table_bytes = run.data.data_ref["size_bytes"]
            added = directory_bytes(Path(ws) / ".metaflow") - before
            peaks = [json.loads(p.read_text()) for p in rss.glob("*.json")]
        judged = judge_with_champion(ws, {**os.environ, **env}, run)
    total = sum(split[p]["rows"] for p in ("train", "validation", "holdout"))
    shares = {p: split[p]["rows"] / total for p in ("train", "validation", "holdout")}
    used = {"start": arrow_mib(data, None, 1.0),
            "split": arrow_mib(data, split_columns(spec, load_file(TrainConfig, ROOT / "config" / "train.yaml").split),
                               1.0),
            "train_candidate": arrow_mib(data, training_columns(spec), shares["train"] + shares["validation"]),
            "join": 0.0, "judge": arrow_mib(data, None, shares["holdout"]), "end": 0.0}
    return {"rows": rows, "wall": wall, "steps": steps, "judged": judged, "summaries": summaries, "peaks": peaks,
            "tasks": tasks,
            "used": used, "added": added, "parquet": data.stat().st_size, "table_bytes": table_bytes,
            "imports": import_mib()}


def _tables(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The report's tables from every size's measurements."""
    targets, steps, tasks, candidates = [], [], [], []
    for r in results:
        fits = {s["type"]: s["fit_seconds"] for s in r["summaries"]}
        lgbm = fits["lightgbm"]
        sec = {name: s["seconds"] for name, s in r["steps"].items()}
        plumbing = sec["start"] + sec["split"] + sec["join"]
        worst = max(r["peaks"], key=lambda p: p["peak_mib"] / max(r["used"].get(p["step"], 0) or 1e-9, 1e-9)
                    if r["used"].get(p["step"]) else 0)
        ratios = [p["peak_mib"] / r["used"][p["step"]] for p in r["peaks"] if r["used"].get(p["step"])]
        growth = [(p["peak_mib"] - r["imports"]) / r["used"][p["step"]] for p in r["peaks"] if r["used"].get(p["step"])]
        targets.append({
            "rows": r["rows"], "wall_s": round(r["wall"], 1), "lightgbm_fit_s": round(lgbm, 1),
            "judge_s": round(sec["judge"], 1), "judge_vs_fit": round(sec["judge"] / lgbm, 3),
            "judge_champion_s": round(r["judged"], 1) if r["judged"] is not None else "-",
            "judge_champion_vs_fit": round(r["judged"] / lgbm, 3) if r["judged"] is not None else "-",
            "start_split_join_s": round(plumbing, 1), "plumbing_vs_fit": round(plumbing / lgbm, 3),
            "max_rss_vs_arrow": round(max(ratios), 2), "at_step": worst["step"],
            "max_growth_vs_arrow": round(max(growth), 2), "imports_mib": round(r["imports"]),
            "datastore_mib": round(r["added"] / 2**20, 1), "parquet_mib": round(r["parquet"] / 2**20, 1),
            "datastore_vs_parquet": round(r["added"] / r["parquet"], 3)})
        for name, s in r["steps"].items():
            steps.append({"rows": r["rows"], "step": name, "tasks": s["tasks"], "seconds": round(s["seconds"], 1),
                          "task_seconds_sum": round(s["task_seconds_sum"], 1)})
        for p in sorted(r["peaks"], key=lambda p: (list(r["steps"]).index(p["step"]) if p["step"] in r["steps"]
                                                   else 99, p["task"] or "")):
            used = r["used"].get(p["step"], 0.0)
            label = r["tasks"].get(str(p["task"]), "") if p["step"] == "train_candidate" else ""
            tasks.append({"rows": r["rows"], "step": p["step"] + (f" ({label})" if label else ""),
                          "peak_rss_mib": round(p["peak_mib"]), "arrow_mib_used": round(used, 1),
                          "ratio": round(p["peak_mib"] / used, 2) if used else "-",
                          "growth_ratio": round((p["peak_mib"] - r["imports"]) / used, 2) if used else "-"})
        for s in r["summaries"]:
            candidates.append({"rows": r["rows"], "candidate": s["name"], "train_rows": s["train_rows"],
                               "fit_s": round(s["fit_seconds"], 1), "val_roc_auc": round(s["metrics"]["roc_auc"], 4),
                               "size_kib": round(s["size_bytes"] / 1024, 1)})
    return {"targets": targets, "steps": steps, "tasks": tasks, "candidates": candidates}


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _champion_judge(t: dict[str, Any]) -> str:
    """The judge with a champion against the target, or why it was not measured."""
    if t["judge_champion_s"] == "-":
        return "not measured (the run was not promoted)"
    ok = t["judge_champion_vs_fit"] <= GATES_RATIO
    return f"{t['judge_champion_s']} s = {t['judge_champion_vs_fit']}x ({_verdict(ok)})"


def _notes(tables: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per target and size, then how the numbers were taken."""
    notes = []
    for t in tables["targets"]:
        notes.append(
            f"{t['rows']:,} rows: judge (the gates) {t['judge_s']} s = {t['judge_vs_fit']}x the LightGBM fit "
            f"(target <= {GATES_RATIO}: {_verdict(t['judge_vs_fit'] <= GATES_RATIO)}), with a champion "
            f"{_champion_judge(t)}; start + split + join "
            f"{t['start_split_join_s']} s = {t['plumbing_vs_fit']}x (target <= {PLUMBING_RATIO}: "
            f"{_verdict(t['plumbing_vs_fit'] <= PLUMBING_RATIO)}); largest peak RSS / Arrow size of the columns used "
            f"{t['max_rss_vs_arrow']} at {t['at_step']} (target <= {RSS_RATIO}: "
            f"{_verdict(t['max_rss_vs_arrow'] <= RSS_RATIO)}; above the {t['imports_mib']} MiB every process pays "
            f"for its imports: {t['max_growth_vs_arrow']}x, {_verdict(t['max_growth_vs_arrow'] <= RSS_RATIO)}); "
            f"datastore {t['datastore_mib']} MiB = "
            f"{t['datastore_vs_parquet']}x the Parquet (target <= {DATASTORE_RATIO}: "
            f"{_verdict(t['datastore_vs_parquet'] <= DATASTORE_RATIO)}).")
    notes += [
        "judge is the step that runs every gate suite (the issue's `gates`), the reference profile and the card; "
        "step seconds: first task created to last task finished (Metaflow Client); foreach tasks overlap. "
        "judge_champion_s: the judge task when a champion exists, as in every run after a dataset's first (the run, "
        "promoted, resumed at judge: its model judged again and compared with itself as the champion, which costs "
        "what a comparison of two models of that size costs: both score the hold-out, both are timed, DeLong's test "
        "of the AUCs, the paired bootstraps of the disparities); the other columns are the first run's (no champion).",
        "Peak RSS: each task process's VmHWM at exit (includes ~250-300 MiB of imports: pandas, pyarrow, "
        "scikit-learn, LightGBM, Metaflow: imports_mib, a process that only imports them); growth_ratio: "
        "(peak - imports_mib) / arrow_mib_used. arrow_mib_used: the in-memory Arrow size of the columns the step reads "
        "(start: all; split: target and time (steps.data.split.split_columns); train_candidate: features + target of "
        "the train and validation rows; "
        "judge: every column of the hold-out rows); join and end read no data.",
        "Datastore bytes: every file the run added under its workspace's .metaflow (artifacts, models, cards, "
        "metadata, and the validated table stored once under _tables/ by content); a second run on the same data "
        "adds no table.",
        "Candidates: config/train.yaml's LightGBM and logistic regression (threads: 1 each, in parallel), plus its "
        f"random forest up to {FOREST_ROWS:,} rows; default gates (200 bootstrap resamples; the champion "
        "comparison's primary metric by DeLong's test, champion.method: auto).",
    ]
    return notes


def measure(sizes: tuple[int, ...], forest_rows: int = FOREST_ROWS) -> Report:
    """Run every size; the report of all of them."""
    with tempfile.TemporaryDirectory(prefix="bench-train-data-") as tmp:
        results = []
        for rows in sizes:
            logger.info("TrainFlow at %d rows", rows)
            results.append(run_size(rows, Path(tmp), forest_rows))
            logger.info("%d rows: %.0f s wall", rows, results[-1]["wall"])
    tables = _tables(results)
    return {"title": "TrainFlow at scale: step time, peak RSS per task, datastore bytes", "tables": tables,
            "notes": _notes(tables)}


def run(quick: bool = False) -> Report:
    """`make bench`: 1M and 3M rows (quick: 200k)."""
    return measure(QUICK_SIZES if quick else SIZES)


def main(argv: list[str] | None = None) -> None:
    """Sizes as arguments; results/train-<rows>.md and .json per invocation (README tables: benchmarks.run)."""
    from benchmarks.run import RESULTS, covers, git_state, machine, to_markdown

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--forest-rows", type=int, default=FOREST_ROWS, help="train the random forest up to this size")
    p.add_argument("--name", default=None, help="results name (default: train-<rows>-...)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("METAFLOW_USER", "bench")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    meta = {**machine(), **git_state(covers("train")), "quick": False,
            "load_before": [round(x, 2) for x in os.getloadavg()]}
    began = time.perf_counter()
    report = measure(tuple(a.rows), a.forest_rows)
    meta.update(seconds=time.perf_counter() - began, load_after=[round(x, 2) for x in os.getloadavg()])
    name = a.name or "train-" + "-".join(str(r) for r in a.rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, **report}, indent=2, default=str) + "\n")
    md = to_markdown(name.removeprefix("train-") and "train", report, meta)
    (RESULTS / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
