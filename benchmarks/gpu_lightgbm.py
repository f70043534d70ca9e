"""TrainFlow's LightGBM candidate on CPU threads against LightGBM's OpenCL GPU learner, on a machine with a GPU.

    python -m benchmarks.gpu_lightgbm --rows 1000000 3000000 --threads 4 16 --out benchmarks/results/gpu/gpu_lightgbm

Not part of ``make bench`` (most machines have no GPU): run it by hand where a GPU is, e.g. on the image of
``gpu_image`` in ``config/profiles/aws.yaml``. The data is the sample generator's (``steps.data.synth``), split by
time (the oldest 70% of rows train, the next 15% validate: TrainFlow's fractions, cut at row positions rather
than its time quantiles); the candidate is ``config/train.yaml``'s ``lightgbm`` with its
parameters, fitted through the project's pipeline (``steps.modeling.models``) on every training row. For each size:
fit seconds and validation ROC AUC / average precision per device and thread count, and how far the GPU model's
validation scores are from the CPU model's. Writes ``<out>.json`` and ``<out>.md``; a size's row is written as soon
as it is measured, so a run cut short keeps what it measured.

The GPU fit logs the OpenCL device LightGBM opened (``Using GPU Device: ...``): read it. LightGBM opens the first
OpenCL platform unless ``gpu_platform_id`` names one, and a CPU OpenCL driver (pocl) installed beside NVIDIA's is a
platform too: keep only NVIDIA's ICD (``/etc/OpenCL/vendors/nvidia.icd`` naming ``libnvidia-opencl.so.1``) or pass
``--gpu-platform``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import ROOT

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _configs() -> tuple[Any, Any]:
    """The dataset and train configs as TrainFlow parses them (read once)."""
    from steps.config.base import load_file
    from steps.config.dataset import DatasetConfig
    from steps.config.train import TrainConfig

    return load_file(DatasetConfig, ROOT / "config/dataset.yaml"), load_file(TrainConfig, ROOT / "config/train.yaml")


def _parts(rows: int, seed: int) -> tuple[Any, Any]:
    """Training and validation rows of ``rows`` generated rows, split by time (70 / 15)."""
    from steps.data.synth import SynthSpec, generate

    frame = generate(SynthSpec(rows=rows, seed=seed)).sort_values("event_time", kind="stable", ignore_index=True)
    train_end, val_end = int(rows * 0.70), int(rows * 0.85)
    return frame.iloc[:train_end], frame.iloc[train_end:val_end]


def _fit(train: Any, validation: Any, device: str, threads: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the LightGBM candidate on ``device`` with ``threads`` (and ``extra`` LightGBM parameters); seconds,
    validation metrics and scores."""
    from steps.modeling import models
    from steps.modeling.metrics import scores

    spec, cfg = _configs()
    candidate = next(c for c in cfg.candidates if c.type == "lightgbm")
    candidate = candidate.model_copy(update={"params": {**candidate.params, **(extra or {})}})
    pipeline = models.build_pipeline(candidate, spec, cfg.seed, threads, device)
    try:
        pipeline, seconds = models.fit(pipeline, train, spec, threads)
    except Exception as err:  # noqa: BLE001 - e.g. "No OpenCL device found": reported, the other rows still run
        return {"device": device, "threads": threads, "error": f"{type(err).__name__}: {str(err).splitlines()[0]}"}
    proba = models.predict_proba(pipeline, validation, spec, threads)
    metrics = scores(validation[spec.target.name].to_numpy(), proba)
    return {"device": device, "threads": threads, "fit_s": round(seconds, 2),
            "val_roc_auc": round(metrics["roc_auc"], 5),
            "val_average_precision": round(metrics["average_precision"], 5), "proba": proba}


def measure(rows: int, threads: list[int], seed: int, gpu: dict[str, Any]) -> list[dict[str, Any]]:
    """Every CPU thread count, then the GPU learner (on the largest thread count for its host side), at ``rows``.
    ``gpu``: the OpenCL platform and device ids; LightGBM logs the device it opens (``verbose`` 1 for that fit)."""
    train, validation = _parts(rows, seed)
    out = [_fit(train, validation, "cpu", t) for t in threads]
    out.append(_fit(train, validation, "gpu", max(threads), {**gpu, "verbose": 1}))
    reference = out[0].get("proba")
    for row in out:
        proba = row.pop("proba", None)
        if proba is not None and reference is not None:
            row["max_abs_diff_vs_cpu"] = float(np.max(np.abs(proba - reference)))
        row["rows"], row["train_rows"] = rows, len(train)
        logger.info("%s", row)
    return out


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table with its header."""
    head = (f"{result['when']}, git {result['git']}, {result['cpus']} CPUs, {result['gpu']}, Python "
            f"{result['python']}, LightGBM {result['lightgbm']}")
    lines = [head, "", "| rows | train_rows | device | threads | fit_s | val_roc_auc | val_average_precision | "
             "max_abs_diff_vs_cpu | error |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['rows']:,} | {r['train_rows']:,} | {r['device']} | {r['threads']} | {r.get('fit_s', '-')} "
                     f"| {r.get('val_roc_auc', '-')} | {r.get('val_average_precision', '-')} | "
                     f"{r.get('max_abs_diff_vs_cpu', '-')} | {r.get('error', '')} |")
    return "\n".join(lines) + "\n"


def _gpu_name() -> str:
    """The GPU's name from nvidia-smi, or 'no GPU seen'."""
    import subprocess

    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip() or "no GPU seen"
    except (OSError, subprocess.SubprocessError):
        return "no GPU seen"


def main(argv: list[str] | None = None) -> None:
    """Measure every size in turn, writing the result after each."""
    import lightgbm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[4, os.cpu_count() or 1])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gpu-platform", type=int, default=-1, help="OpenCL platform id (-1: LightGBM's default)")
    parser.add_argument("--gpu-device", type=int, default=-1, help="OpenCL device id (-1: LightGBM's default)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu/gpu_lightgbm"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    git = os.environ.get("GIT_COMMIT") or _git()
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git, "cpus": os.cpu_count(),
                              "gpu": _gpu_name(), "python": platform.python_version(),
                              "lightgbm": lightgbm.__version__, "rows": []}
    for rows in args.rows:
        result["rows"] += measure(rows, sorted(set(args.threads)), args.seed,
                                  {"gpu_platform_id": args.gpu_platform, "gpu_device_id": args.gpu_device})
        Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))
        Path(f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))


def _git() -> str:
    """The checkout's short commit, or 'unknown'."""
    from benchmarks.run import _git as git

    return git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
