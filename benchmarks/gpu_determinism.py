"""Run-to-run equality of LightGBM's GPU learner in single and double precision (``gpu_use_dp``), on a GPU machine.

    python -m benchmarks.gpu_determinism 1000000 3000000 > benchmarks/results/gpu/h200-determinism.json

For each size: TrainFlow's LightGBM candidate fitted once on the CPU (16 threads) and twice each on the GPU in single
and double precision, in one process; prints one JSON line per fit (seconds, validation ROC AUC, the largest
difference of a validation row's probability from the CPU model's and, for the second fit, from the first) and the
whole list last. Not part of ``make bench``; see README "GPU training".
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from benchmarks.gpu_lightgbm import _configs, _parts

FITS = (("cpu", "cpu", {}), ("gpu_sp_a", "gpu", {"gpu_use_dp": False}), ("gpu_sp_b", "gpu", {"gpu_use_dp": False}),
        ("gpu_dp_a", "gpu", {"gpu_use_dp": True}), ("gpu_dp_b", "gpu", {"gpu_use_dp": True}))


def measure(rows: int, threads: int = 16) -> list[dict[str, Any]]:
    """The five fits of :data:`FITS` at ``rows``; the first GPU fit of each precision logs its OpenCL device."""
    from steps.modeling import models
    from steps.modeling.metrics import scores

    spec, cfg = _configs()
    candidate = next(c for c in cfg.candidates if c.type == "lightgbm")
    train, validation = _parts(rows, 7)
    probas: dict[str, np.ndarray] = {}
    out = []
    for label, device, extra in FITS:
        verbose = {"verbose": 1} if device == "gpu" and label.endswith("_a") else {}
        fit = candidate.model_copy(update={"params": {**candidate.params, **extra, **verbose}})
        start = time.perf_counter()
        pipeline, seconds = models.fit(models.build_pipeline(fit, spec, cfg.seed, threads, device), train, spec,
                                       threads)
        probas[label] = models.predict_proba(pipeline, validation, spec, threads)
        row = {"rows": rows, "fit": label, "fit_s": round(seconds, 2), "wall_s": round(time.perf_counter() - start, 2),
               "auc": round(scores(validation[spec.target.name].to_numpy(), probas[label])["roc_auc"], 5),
               "max_abs_diff_vs_cpu": float(np.max(np.abs(probas[label] - probas["cpu"])))}
        if label.endswith("_b"):
            row["max_abs_diff_vs_a"] = float(np.max(np.abs(probas[label] - probas[label[:-1] + "a"])))
        print(json.dumps(row), file=sys.stderr, flush=True)
        out.append(row)
    return out


if __name__ == "__main__":
    print(json.dumps([row for rows in sys.argv[1:] for row in measure(int(rows))], indent=1))
