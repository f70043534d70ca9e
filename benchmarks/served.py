"""The models the flows produce and serve, for the benchmarks that time them (``bench_score``, ``bench_distill``).

TrainFlow and DistillFlow run with ``metaflow.Runner`` on the default data and the default configs, in a throw-away
Metaflow workspace (its own ``.metaflow``, so a developer's runs are never touched): the TrainFlow champion is the
teacher, DistillFlow's students are fitted on its logits and the one it registers ``serving`` is what ScoreFlow
serves. A child process reads the runs back through the Metaflow Client and writes the model bytes to a folder
(the parent never imports the Client, so another benchmark's workspace in the same process is never confused with
this one). DistillFlow is given that TrainFlow run as its teacher (``--teacher-run``), champion or not: whether the
shipped gates made it champion is recorded (``teacher_champion``, ``teacher_gates_failed``).

    <folder>/served.json        runs, names, fingerprints, the decision, the DistillFlow run's own candidate table
    <folder>/teacher.pkl        the TrainFlow champion's model bytes (fingerprint-verified)
    <folder>/teacher.onnx       its ONNX graph as DistillFlow exported it (ScoreFlow exports the same for runtime onnx)
    <folder>/<student>.pkl, <student>.onnx, <student>.int8.onnx (when quantized)   every student of the run
    <folder>/holdout.parquet    the teacher's hold-out (the rows DistillFlow measured on)

Made once per process (``make bench`` runs every benchmark in one); ``BENCH_KEEP_WORKSPACE=1`` keeps the runs'
workspace (``<folder>/workspace``) for inspection. ``BENCH_MODELS=<folder>`` reuses a folder
made before (``python -m benchmarks.served <folder>`` makes one), e.g. to rerun one benchmark without the flows.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import ROOT

logger = logging.getLogger(__name__)

DATA = ROOT / "data" / "transactions.parquet"
CONFIGS = {"dataset": ROOT / "config" / "dataset.yaml", "train": ROOT / "config" / "train.yaml",
           "gates": ROOT / "config" / "gates.yaml", "profile": ROOT / "config" / "profiles" / "local.yaml"}
DISTILL_CONFIG = ROOT / "config" / "distill.yaml"
# what the models depend on: a change to any of these can change the served models (benchmarks.run records it)
COVERS = ("flows/base.py", "flows/train_flow.py", "flows/distill_flow.py", "steps/core", "steps/config",
          "steps/data", "steps/modeling", "steps/gates", "steps/registry", "steps/distill", "config/dataset.yaml",
          "config/train.yaml", "config/gates.yaml", "config/distill.yaml", "config/profiles/local.yaml",
          "benchmarks/served.py")

_made: Path | None = None


def ensure_data() -> Path:
    """The default data file, made with ``python -m steps.data.synth`` when missing (``make data`` makes it too)."""
    if not DATA.exists():
        logger.info("%s missing; generating it", DATA)
        subprocess.run([sys.executable, "-m", "steps.data.synth", "--out", str(DATA)], cwd=ROOT, check=True)
    return DATA


def models_dir() -> Path:
    """The folder of served models: ``BENCH_MODELS`` when set (made there when empty), else made once per process."""
    global _made
    given = os.environ.get("BENCH_MODELS")
    if given:
        folder = Path(given)
        if not (folder / "served.json").exists():
            make(folder)
        return folder
    if _made is None:
        folder = Path(tempfile.mkdtemp(prefix="bench-served-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        make(folder)
        _made = folder
    return _made


def info(folder: Path) -> dict[str, Any]:
    """``served.json`` of a models folder."""
    return json.loads((folder / "served.json").read_text())


def make(folder: Path) -> None:
    """Run TrainFlow then DistillFlow (teacher: that TrainFlow run) in a fresh workspace under ``folder`` and write
    their models to ``folder``."""
    from metaflow import Runner  # noqa: PLC0415 - the parent imports Metaflow only to start the runs

    data = ensure_data()
    ws = folder / "workspace"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / ".metaflow").mkdir(parents=True)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    teacher: dict[str, str] = {}
    with contextlib.chdir(ws):
        for flow, configs in (("train_flow.py", CONFIGS),
                              ("distill_flow.py", {**{k: v for k, v in CONFIGS.items() if k != "train"},
                                                   "distill": DISTILL_CONFIG})):
            params = {"data": str(data)} if flow == "train_flow.py" else teacher
            t0 = time.perf_counter()
            with Runner(str(ROOT / "flows" / flow), show_output=False, cwd=str(ws),
                        config=[(k, str(v)) for k, v in configs.items()]) as runner, runner.run(**params) as result:
                if result.status != "successful":
                    raise RuntimeError(f"{flow} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
                logger.info("%s: %s in %.0f s", flow, result.run.pathspec, time.perf_counter() - t0)
                seconds[flow] = round(time.perf_counter() - t0, 1)
                teacher = {"teacher_run": result.run.id}  # the model TrainFlow made, champion or not (recorded)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "benchmarks.served", "--extract", str(folder)], cwd=ws, env=env, check=True)
    doc = info(folder)
    doc["flow_seconds"] = {**seconds, "total": round(time.perf_counter() - started, 1)}
    (folder / "served.json").write_text(json.dumps(doc, indent=2, default=str))
    if not os.environ.get("BENCH_KEEP_WORKSPACE"):
        shutil.rmtree(ws, ignore_errors=True)


def extract(folder: Path) -> None:
    """Child side: read the newest DistillFlow run of this workspace and its teacher, write them to ``folder``."""
    from metaflow import Flow, namespace

    from steps.data.table import part_of
    from steps.modeling import models

    namespace(None)
    distill = Flow("DistillFlow").latest_successful_run
    data = distill["end"].task.data
    join = distill["join"].task.data
    train = Flow("TrainFlow")[join.teacher_run_id]
    judge = train.data  # gate_summary reaches the end step
    if models.fingerprint(join.teacher_blob) != train.data.model_fingerprint:
        raise RuntimeError("the DistillFlow teacher's bytes do not match its TrainFlow run")
    (folder / "teacher.pkl").write_bytes(join.teacher_blob)
    (folder / "teacher.onnx").write_bytes(join.teacher_onnx)
    holdout = part_of(join, "holdout")  # by reference (the teacher's stored table); older runs: their frame
    holdout.to_parquet(folder / "holdout.parquet")
    students = []
    for task in distill["train_student"]:
        s = task.data.student
        if models.fingerprint(task.data.student_blob) != s["fingerprint"]:
            raise RuntimeError(f"student {s['name']}: bytes do not match the recorded fingerprint")
        (folder / f"{s['name']}.pkl").write_bytes(task.data.student_blob)
        (folder / f"{s['name']}.onnx").write_bytes(task.data.student_onnx)
        if task.data.student_quantized is not None:
            (folder / f"{s['name']}.int8.onnx").write_bytes(task.data.student_quantized)
        students.append({"name": s["name"], "type": s["kind"], "fingerprint": s["fingerprint"],
                         "quantized": task.data.student_quantized is not None,
                         "quantization": s.get("quantization"),
                         "fit_seconds": (s.get("fit") or {}).get("fit_seconds")})
    summary = next(c for c in train.data.candidate_summaries if c["name"] == join.teacher_model_name)
    doc = {
        "train_run": train.pathspec, "distill_run": distill.pathspec,
        "teacher_champion": "champion" in train.user_tags, "teacher_gates_failed": judge.gate_summary["failed"],
        "teacher": {"name": join.teacher_model_name, "fingerprint": join.teacher_fingerprint,
                    "type": summary["type"], "params": summary["params"], "fit_seconds": summary["fit_seconds"],
                    "auc": join.teacher_eval["auc"], "runtimes": join.teacher_eval.get("runtimes")},
        "students": students,
        "served": data.model_name if data.gates_passed and "serving" in distill.user_tags else None,
        "selected": data.model_name, "gates_passed": data.gates_passed, "gate_failed": data.gate_summary["failed"],
        "decision": join.decision, "threshold": join.threshold, "holdout_rows": len(holdout),
        "train_rows": train["split"].task.data.split_summary["train"]["rows"],
        "candidates": [{"type": c["kind"]} | {k: c[k] for k in ("name", "auc", "auc_ratio", "cost_ratio",
                                                                "cost_runtime", "eligible", "reasons")}
                       for c in join.candidates],
    }
    (folder / "served.json").write_text(json.dumps(doc, indent=2, default=str))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if sys.argv[1:2] == ["--extract"]:
        extract(Path(sys.argv[2]))
    else:
        if os.environ.get("USER", "root") == "root":
            os.environ.setdefault("METAFLOW_USER", "bench")
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        make(Path(sys.argv[1]))
        print(json.dumps(info(Path(sys.argv[1])), indent=2))
