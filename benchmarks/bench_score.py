"""Batch scoring: the streamed shard scorer (``steps.scoring``, what a ScoreFlow shard runs) against raw predict on
in-memory data and against the naive approach, for the models the flows produce, with peak RSS.

Models (``benchmarks.served``: TrainFlow and DistillFlow run on the default data and configs): heavy = the TrainFlow
champion (the teacher), light = the student DistillFlow registers ``serving`` (what ScoreFlow serves for that
champion, as ONNX; when the run selects none, its best student by AUC, labelled not selected in the table); each on
both runtimes (native pipeline, ONNX Runtime on the graph the flow exported). Inputs:
1M and 10M generated rows (quick: 200k and 1M), 100k-row row groups. Every measurement runs in a fresh interpreter
(``python -m benchmarks.bench_score MODE ...`` prints one JSON line), so each has its own peak RSS; seconds exclude
interpreter start-up, imports and model loading.

* streamed: ``plan_run`` + ``score_shard`` over the whole file as one shard (validation, scoring, atomic Parquet
  part), config/score.yaml as ScoreFlow runs it: ``overlap_io`` on (read + validate on a second thread), predict on
  one thread.
* raw predict: the same runtime's ``predict`` on one thread on the first 500k rows already in a DataFrame (as pandas
  reads them, and with categoricals dictionary-decoded; the faster counts).
* naive: what a careful user writes: ``pd.read_parquet`` of the id and feature columns only, the model's own runtime
  (the same scorer, one thread) on everything at once, the output frame, ``to_parquet``.

The contenders do not use the same number of threads (streamed overlaps its reads on a second thread, pyarrow reads
the naive approach's file on its pool), so every verdict compares rows per CPU-second (user + system time of all the
process's threads); rows per wall-clock second are reported beside them.
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

from benchmarks import ROOT, Report, peak_mib, served
from steps.scoring.plan import plan_run
from steps.scoring.runtime import build_scorer
from steps.scoring.shard import job_for, score_shard

logger = logging.getLogger(__name__)

FULL_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (200_000, 1_000_000)
RAW_ROWS = 500_000
MODELS = ("heavy", "light")
RUNTIMES = ("native", "onnx")
SERVED_RUNTIME = {"heavy": "native", "light": "onnx"}  # ScoreFlow: the champion as configured, its student as ONNX
TARGETS = {"heavy": 0.95, "light": 0.75}  # streamed over raw predict, rows per CPU-second, same model and runtime
NAIVE_TARGET, RSS_TARGET_MIB, FLAT_TOLERANCE = 3.0, 400, 0.10
COVERS = served.COVERS + ("steps/scoring", "config/score.yaml")
DAY = "2026-01-01"


# --------------------------------------------------------------------------------------------------- child side
def _spec() -> Any:
    from steps.config import DatasetConfig, load_file

    return load_file(DatasetConfig, ROOT / "config" / "dataset.yaml")


def _scorer(model_dir: Path, model: str, runtime: str) -> tuple[Any, Any, bytes]:
    """(scorer, pipeline, model bytes) loaded from the benchmark's model directory."""

    blob = (model_dir / f"{model}.pkl").read_bytes()
    pipeline = pickle.loads(blob)  # noqa: S301 - the flows' bytes, fingerprints verified by benchmarks.served
    onnx = (model_dir / f"{model}.onnx").read_bytes() if runtime == "onnx" else None
    return build_scorer(runtime, pipeline, _spec(), onnx, threads=1), pipeline, blob


def _batch_rows() -> int:
    """The configured ``batch_rows`` (config/score.yaml), which the streamed measurement uses."""
    from steps.config import ScoreConfig, load_file

    return load_file(ScoreConfig, ROOT / "config" / "score.yaml").batch_rows


def child_stream(model_dir: Path, model: str, runtime: str, source: Path, out: Path) -> dict[str, Any]:
    """Score ``source`` as one shard through ``steps.scoring`` (the ScoreFlow shard code path)."""
    from steps.config import ScoreConfig, load_file
    from steps.modeling import models

    spec = _spec()
    cfg = load_file(ScoreConfig, ROOT / "config" / "score.yaml").model_copy(update={"runtime": runtime,
                                                                                   "overlap_io": True})
    scorer, _, blob = _scorer(model_dir, model, runtime)
    loaded = peak_mib()
    start, cpu = time.perf_counter(), time.process_time()
    plan = plan_run(str(source), str(out), DAY, spec, shard_rows=10**12)
    decision = {"threshold": 0.3, "review_band": [0.4, 0.6], "source": "bench"}
    job = job_for(plan.shards[0].to_dict(), plan.summary(), spec, cfg, decision,
                  {"run": f"bench/{model}", "fingerprint": models.fingerprint(blob)})
    record = score_shard(job, scorer, threads=1)
    return {"rows": record["rows_out"], "seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "rss_loaded_mib": loaded, "peak_rss_mib": peak_mib(), "timings": record["timings"]}


def child_raw(model_dir: Path, model: str, runtime: str, source: Path, dtypes: str) -> dict[str, Any]:
    """Predict throughput of the runtime on rows already in memory (best of two).

    ``dtypes`` "pandas": columns as ``pd.read_parquet`` gives them (strings as str); "dictionary": categoricals as
    pandas Categorical, the input type the streamed path feeds (the stricter baseline).
    """
    import pandas as pd
    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits

    spec = _spec()
    scorer, _, _ = _scorer(model_dir, model, runtime)
    pf = pq.ParquetFile(source, read_dictionary=list(spec.categorical) if dtypes == "dictionary" else None)
    groups = list(range(min(pf.num_row_groups, -(-RAW_ROWS // pf.metadata.row_group(0).num_rows))))
    frame = pd.DataFrame(pf.read_row_groups(groups, columns=spec.features).to_pandas().iloc[:RAW_ROWS])
    best, cpu_best = float("inf"), float("inf")
    with threadpool_limits(limits=1):
        scorer.predict(frame.iloc[:1000])  # warm-up
        for _ in range(2):
            start, cpu = time.perf_counter(), time.process_time()
            scorer.predict(frame)
            best, cpu_best = min(best, time.perf_counter() - start), min(cpu_best, time.process_time() - cpu)
    return {"rows": len(frame), "seconds": best, "cpu_s": cpu_best, "peak_rss_mib": peak_mib()}


def child_naive(model_dir: Path, model: str, runtime: str, source: Path, out: Path) -> dict[str, Any]:
    """A careful user: pandas reads the columns the model needs, the model's runtime scores them all, pandas writes;
    no streaming, no validation."""
    from datetime import datetime

    import pandas as pd
    from threadpoolctl import threadpool_limits

    spec = _spec()
    scorer, _, _ = _scorer(model_dir, model, runtime)
    loaded = peak_mib()
    start, cpu = time.perf_counter(), time.process_time()
    frame = pd.read_parquet(source, columns=[spec.id_column, *spec.features])
    with threadpool_limits(limits=1):
        proba = scorer.predict(frame)
    result = pd.DataFrame({spec.id_column: frame[spec.id_column], "score": proba, "decision": proba >= 0.3,
                           "review": (proba >= 0.4) & (proba <= 0.6), "model_run": f"bench/{model}",
                           "scored_at": datetime.now(UTC)})
    out.mkdir(parents=True, exist_ok=True)
    result.to_parquet(out / "naive.parquet", index=False)
    return {"rows": len(result), "seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "rss_loaded_mib": loaded, "peak_rss_mib": peak_mib()}


def child(argv: list[str]) -> dict[str, Any]:
    """Dispatch one child measurement."""
    mode, model_dir, model = argv[0], Path(argv[1]), argv[2]
    if mode == "stream":
        return child_stream(model_dir, model, argv[3], Path(argv[4]), Path(argv[5]))
    if mode == "raw":
        return child_raw(model_dir, model, argv[3], Path(argv[4]), argv[5])
    if mode == "naive":
        return child_naive(model_dir, model, argv[3], Path(argv[4]), Path(argv[5]))
    raise ValueError(f"unknown mode {mode}")


# --------------------------------------------------------------------------------------------------- parent side
def _measure(*args: str) -> dict[str, Any]:
    """Run one child in a fresh interpreter and parse its JSON line; a child the kernel killed (SIGKILL: the OOM
    killer, e.g. the naive approach holding 10M rows and the model's intermediates at once) is ``{"killed": ...}``."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_score", *args], cwd=ROOT, capture_output=True,
                          text=True)
    if proc.returncode == -9:
        return {"killed": "killed (SIGKILL: out of memory)"}
    if proc.returncode != 0:
        raise RuntimeError(f"bench_score {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _prepare(work: Path, sizes: tuple[int, ...]) -> tuple[Path, dict[int, Path], dict[str, Any]]:
    """The flows' models (heavy: the teacher, light: the served student) under one folder, and the inputs."""
    import shutil

    from steps.data import synth

    source = served.models_dir()
    doc = served.info(source)
    doc["light"], doc["light_what"] = light_student(doc)
    model_dir = work / "models"
    model_dir.mkdir()
    for name, stem in (("heavy", "teacher"), ("light", doc["light"])):
        for ext in ("pkl", "onnx"):
            shutil.copyfile(source / f"{stem}.{ext}", model_dir / f"{name}.{ext}")
    inputs = {}
    for rows in sizes:
        inputs[rows] = synth.write_parquet(synth.SynthSpec(rows=rows, seed=8), work / f"input-{rows}.parquet")
    return model_dir, inputs, doc


def light_student(doc: dict[str, Any]) -> tuple[str, str]:
    """The light model and how it was chosen: the student DistillFlow selected; when it selected none (no student
    met the cost ceiling, so ScoreFlow serves the teacher), the run's best student by hold-out AUC among those whose
    ONNX graph passed parity, labelled as not selected, with the run's reasons."""
    if doc["selected"]:
        return doc["selected"], "selected student"
    usable = [c for c in doc["candidates"] if not any("parity" in r for r in c["reasons"])] or doc["candidates"]
    best = max(usable, key=lambda c: c["auc"])
    return best["name"], f"best student by AUC, not selected ({'; '.join(best['reasons'])})"


def run(quick: bool = False) -> Report:
    """Measure streamed, raw and naive for both models, both runtimes and both sizes; check the targets."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rows_out: list[dict[str, Any]] = []
    raw: dict[tuple[str, str], dict[str, Any]] = {}  # the faster of the two input dtypes, per model and runtime
    raw_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        work = Path(tmp)
        model_dir, inputs, doc = _prepare(work, sizes)
        for model in MODELS:
            for runtime in RUNTIMES:
                for dtypes in ("pandas", "dictionary"):
                    r = _measure("raw", str(model_dir), model, runtime, str(inputs[sizes[-1]]), dtypes)
                    raw_rows.append({"model": model, "runtime": runtime, "input_dtypes": dtypes, "rows": r["rows"],
                                     "rows_per_s": round(r["rows"] / r["seconds"]),
                                     "rows_per_cpu_s": round(r["rows"] / r["cpu_s"]),
                                     "peak_rss_mib": round(r["peak_rss_mib"])})
                    best = raw.get((model, runtime))
                    if best is None or r["rows"] / r["cpu_s"] > best["rows"] / best["cpu_s"]:
                        raw[model, runtime] = r
                    logger.info("raw %s %s %s: %.0f rows/s", model, runtime, dtypes, r["rows"] / r["seconds"])
            for rows, source in inputs.items():
                for runtime in RUNTIMES:
                    naive: dict[str, Any] | None = _measure("naive", str(model_dir), model, runtime, str(source),
                                                            str(work / "out-naive"))
                    if naive and "killed" in naive:
                        rows_out.append(_killed_row(model, rows, "naive", runtime, naive["killed"]))
                        naive = None
                    else:
                        rows_out.append(_row(model, rows, "naive", runtime, naive, raw[model, runtime], None))
                    r = _measure("stream", str(model_dir), model, runtime, str(source), str(work / "out"))
                    rows_out.append(_row(model, rows, "streamed", runtime, r, raw[model, runtime], naive))
                    logger.info("%s %s %d rows %s: %s", model, runtime, rows, "streamed", rows_out[-1])
    return {"title": "Batch scoring: streamed shards vs raw predict vs naive",
            "tables": {"models": _model_rows(doc), "end_to_end": rows_out, "raw_predict": raw_rows},
            "notes": _notes(rows_out, sizes, doc)}


def _model_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Which models were measured, and where they came from."""
    teacher = doc["teacher"]
    student = next(c for c in doc["candidates"] if c["name"] == doc["light"])
    return [{"model": "heavy", "what": f"TrainFlow model {teacher['name']} (the teacher)", "run": doc["train_run"],
             "registered": "champion" if doc["teacher_champion"] else
             "not champion: failed " + ", ".join(doc["teacher_gates_failed"]),
             "hold_out_auc": round(teacher["auc"], 4), "served_runtime": "native"},
            {"model": "light", "what": f"{doc['light_what']}: {student['name']} ({student['type']})",
             "run": doc["distill_run"], "registered": "serving" if doc["served"] else
             "not serving: failed " + ", ".join(doc["gate_failed"]) if doc["selected"] else
             "not serving: the run selected no student (ScoreFlow serves the teacher on this data)",
             "hold_out_auc": round(student["auc"], 4), "served_runtime": "onnx"}]


def _row(model: str, rows: int, approach: str, runtime: str, r: dict[str, Any], raw: dict[str, Any],
         naive: dict[str, Any] | None) -> dict[str, Any]:
    """One table row: rates per wall-clock and per CPU-second; the ratios per CPU-second."""
    per_cpu = r["rows"] / r["cpu_s"]
    raw_per_cpu = raw["rows"] / raw["cpu_s"]
    out = {"model": model, "rows": rows, "approach": approach, "runtime": runtime, "seconds": round(r["seconds"], 1),
           "cpu_s": round(r["cpu_s"], 1), "rows_per_s": round(r["rows"] / r["seconds"]),
           "rows_per_cpu_s": round(per_cpu), "vs_raw_per_cpu": round(per_cpu / raw_per_cpu, 2),
           "vs_naive_per_cpu": round(per_cpu / (naive["rows"] / naive["cpu_s"]), 2) if naive else "-",
           "vs_naive_wall": round(naive["seconds"] / r["seconds"], 2) if naive else "-",
           "peak_rss_mib": round(r["peak_rss_mib"])}
    if "timings" in r:
        t = r["timings"]
        out["read_validate_s"], out["predict_s"] = round(t["read_validate_s"], 1), round(t["predict_s"], 1)
    else:
        out["read_validate_s"], out["predict_s"] = "-", "-"
    return out


def _killed_row(model: str, rows: int, approach: str, runtime: str, why: str) -> dict[str, Any]:
    """The table row of a measurement whose process was killed: every figure '-', the reason under seconds."""
    figures = ("cpu_s", "rows_per_s", "rows_per_cpu_s", "vs_raw_per_cpu", "vs_naive_per_cpu", "vs_naive_wall",
               "peak_rss_mib", "read_validate_s", "predict_s")
    return {"model": model, "rows": rows, "approach": approach, "runtime": runtime, "seconds": why,
            **dict.fromkeys(figures, "-")}


def _notes(rows: list[dict[str, Any]], sizes: tuple[int, ...], doc: dict[str, Any]) -> list[str]:
    """Each target, met or not, with the numbers."""
    notes = [f"Models from {doc['train_run']} (teacher {doc['teacher']['name']}, {doc['teacher']['params']}) and "
             f"{doc['distill_run']} (student {doc['light']}: {doc['light_what']}; "
             f"{'tagged serving' if doc['served'] else 'not tagged serving'}), made by "
             f"benchmarks.served in {doc.get('flow_seconds', {}).get('total', '?')} s. 'registered' says whether the "
             "shipped gates made the teacher champion and the student serving in that run (the latency gates are "
             "wall-clock single-row calls: on this shared box they fail under load)."]
    streamed = [r for r in rows if r["approach"] == "streamed"]
    largest = [r for r in streamed if r["rows"] == sizes[-1]]
    for r in largest:
        target = TARGETS[r["model"]]
        verdict = "met" if r["vs_raw_per_cpu"] >= target else "MISSED"
        notes.append(f"{r['model']} {r['runtime']} at {r['rows']:,} rows: streamed/raw per CPU-second "
                     f"{r['vs_raw_per_cpu']} (target >= {target}) {verdict}.")
    for r in largest:
        if r["runtime"] != SERVED_RUNTIME[r["model"]]:
            continue
        if r["vs_naive_per_cpu"] == "-":
            notes.append(f"{r['model']} on its served runtime ({r['runtime']}) at {r['rows']:,} rows: the naive "
                         "approach was killed (out of memory on this machine); the streamed path scored every row.")
            continue
        verdict = ("(no target)" if r["model"] != "light" else
                   f"(target >= {NAIVE_TARGET}) {'met' if r['vs_naive_per_cpu'] >= NAIVE_TARGET else 'MISSED'}")
        notes.append(f"{r['model']} on its served runtime ({r['runtime']}): x{r['vs_naive_per_cpu']} the naive "
                     f"approach's rows per CPU-second at {r['rows']:,} rows {verdict}; x{r['vs_naive_wall']} in "
                     "wall-clock.")
    for model in MODELS:
        for runtime in RUNTIMES:
            pair = [r for r in streamed if r["model"] == model and r["runtime"] == runtime]
            lo, hi = pair[0]["peak_rss_mib"], pair[-1]["peak_rss_mib"]
            flat, within = hi <= lo * (1 + FLAT_TOLERANCE), hi <= RSS_TARGET_MIB
            notes.append(f"{model} {runtime} peak RSS {lo} MiB at {pair[0]['rows']:,} rows, {hi} MiB at "
                         f"{pair[-1]['rows']:,} (target <= {RSS_TARGET_MIB}: {'met' if within else 'MISSED'}; "
                         f"flat within {FLAT_TOLERANCE:.0%}: {'yes' if flat else 'NO'}).")
    notes += [
        "streamed = steps.scoring plan_run + score_shard (validation, scoring, output columns, atomic part with "
        f"sha256), {_batch_rows():,}-row batches (config/score.yaml), read + validate overlapped on a second "
        "thread; predict on one thread (threadpool_limits(1), LightGBM n_jobs=1, ONNX Runtime "
        "intra_op_num_threads=1).",
        "Equal CPU: the verdicts divide rows by CPU-seconds (time.process_time: every thread of the process), "
        "because the streamed path reads on a second thread and pyarrow reads the naive file on its thread pool "
        "while raw predict runs on one; rows_per_s (wall-clock) is reported, not judged.",
        "vs_raw_per_cpu: streamed rows per CPU-second over raw predict's (same model and runtime; raw: first 500k "
        "rows in a DataFrame, one thread, best of two, the better of pandas' default dtypes and dictionary-decoded "
        "categoricals, which is what the streamed path feeds).",
        "vs_naive_per_cpu: streamed over the naive approach (read only the id and feature columns, the same model "
        "and runtime on everything at once, to_parquet) per CPU-second; vs_naive_wall: the naive approach's "
        "seconds over the streamed path's.",
        "Peak RSS is the child process's VmHWM and includes the ~230 MiB of imports (pandas, pyarrow, "
        "scikit-learn, LightGBM; ONNX Runtime adds ~20 MiB) and the model.",
        "The machine is a shared 2-core VM: the load average (header) says how busy it was; rates move with it.",
    ]
    return notes


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(child(sys.argv[1:]), default=str))
