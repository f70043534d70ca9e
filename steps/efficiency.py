"""Efficiency gates (latency, throughput, size and memory of a model on its serving runtime) and the review gate.

``predict`` is any callable from a raw DataFrame to one score per row (a scikit-learn pipeline wrapper, an ONNX
session wrapper); the numbers describe that callable, so measure the runtime that will serve. Limit threads once
around :func:`measure` (``threadpool_limits``) rather than inside ``predict``: entering the limit costs a few
milliseconds per call, which the single-row latency would count. Exceptions raised by ``predict`` propagate: a
model that cannot score is stopped earlier, by the robustness gates.
"""

from __future__ import annotations

import logging
import time
import tracemalloc
from typing import Any, Callable

import numpy as np
import pandas as pd

from steps.config import EfficiencyGates, ReviewGates, Threshold
from steps.gates import GateResult, check

logger = logging.getLogger(__name__)

SUITE = "efficiency"
WARMUP_CALLS = 5
BATCH_REPEATS = 3
Predict = Callable[[pd.DataFrame], np.ndarray]


def single_row_latency_ms(predict: Predict, rows: pd.DataFrame, n: int) -> np.ndarray:
    """Milliseconds of ``n`` one-row calls (rows reused in order when fewer), after a few warm-up calls."""
    singles = [rows.iloc[[i % len(rows)]] for i in range(n)]  # sliced before timing: only predict is measured
    for frame in singles[:WARMUP_CALLS]:
        predict(frame)
    out = np.empty(n)
    for i, frame in enumerate(singles):
        start = time.perf_counter()
        predict(frame)
        out[i] = (time.perf_counter() - start) * 1e3
    return out


def batch_seconds(predict: Predict, batch: pd.DataFrame, repeats: int = BATCH_REPEATS) -> float:
    """The best (shortest) wall time of ``repeats`` predictions of ``batch``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mb(predict: Predict, batch: pd.DataFrame) -> float:
    """Peak traced memory of one batch prediction, in MB.

    tracemalloc counts Python-level allocations: Python objects and the buffers of libraries that report to it
    (NumPy arrays, pandas frames), not memory a native library allocates on its own (e.g. LightGBM or ONNX
    Runtime internals). Treat it as a lower bound of the real peak.
    """
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        predict(batch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not already:
            tracemalloc.stop()
    return max(peak - baseline, 0) / 1e6


def measure(predict: Predict, rows: pd.DataFrame, model_bytes: bytes, cfg: EfficiencyGates) -> dict[str, Any]:
    """Latency, throughput, size and peak memory of ``predict``.

    Args:
        predict: raw rows in, one score per row out (the serving runtime).
        rows: representative raw rows (e.g. the hold-out); single-row calls reuse them in order when short.
        model_bytes: the serialized model as stored (its size is gated).
        cfg: how many rows to time and the bounds.

    Returns:
        ``p50_ms``, ``p99_ms``, ``rows_per_s``, ``size_mb``, ``peak_memory_mb`` and the row counts used.
    """
    if rows.empty:
        raise ValueError("efficiency needs at least one row")
    latency = single_row_latency_ms(predict, rows, cfg.latency_rows)
    batch = rows.iloc[:cfg.batch_rows]
    seconds = batch_seconds(predict, batch)
    out = {
        "p50_ms": float(np.percentile(latency, 50)),
        "p99_ms": float(np.percentile(latency, 99)),
        "rows_per_s": float(len(batch) / seconds) if seconds > 0 else float("inf"),
        "size_mb": len(model_bytes) / 1e6,
        "peak_memory_mb": peak_memory_mb(predict, batch),
        "latency_rows": int(cfg.latency_rows),
        "batch_rows": int(len(batch)),
    }
    logger.info("efficiency: p50 %.2f ms, p99 %.2f ms, %.0f rows/s, %.2f MB, peak %.1f MB", out["p50_ms"],
                out["p99_ms"], out["rows_per_s"], out["size_mb"], out["peak_memory_mb"])
    return out


def efficiency_gates(measured: dict[str, Any], cfg: EfficiencyGates) -> list[GateResult]:
    """Gate the numbers from :func:`measure` against ``cfg``."""
    single = f"{measured['latency_rows']} single-row calls after {WARMUP_CALLS} warm-up calls"
    batch = f"batch of {measured['batch_rows']} rows, best of {BATCH_REPEATS}"
    return [
        check(SUITE, "latency_p50_ms", "single-row latency p50 (ms)", Threshold(max=cfg.max_p50_ms),
              measured["p50_ms"], detail=single),
        check(SUITE, "latency_p99_ms", "single-row latency p99 (ms)", Threshold(max=cfg.max_p99_ms),
              measured["p99_ms"], detail=single),
        check(SUITE, "throughput_rows_per_s", "batch throughput (rows/s)", Threshold(min=cfg.min_rows_per_s),
              measured["rows_per_s"], detail=batch),
        check(SUITE, "serialized_size_mb", "serialized model size (MB)", Threshold(max=cfg.max_size_mb),
              measured["size_mb"], detail="bytes as stored / 1e6"),
        check(SUITE, "peak_memory_mb", "peak memory of one batch prediction (MB)",
              Threshold(max=cfg.max_peak_memory_mb), measured["peak_memory_mb"],
              detail=f"{measured['batch_rows']} rows; tracemalloc peak (Python-level allocations only)"),
    ]


# --------------------------------------------------------------------------------------------------- review
def in_band(proba: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Boolean mask of scores inside ``band`` (both ends inclusive); NaN is never in the band."""
    score = np.asarray(proba, dtype=float)
    return (score >= band[0]) & (score <= band[1])


def review_gates(proba: np.ndarray, cfg: ReviewGates) -> list[GateResult]:
    """The share of scores inside the review band (low confidence, sent to a human) must not exceed ``max_rate``."""
    flagged = in_band(proba, cfg.band)
    count, total = int(flagged.sum()), int(flagged.size)
    rate = count / total if total else 0.0
    low, high = cfg.band
    detail = f"{count} of {total} scores in [{low:g}, {high:g}]"
    logger.info("review: %s (%.2f%%)", detail, 100 * rate)
    return [check("review", "review_rate", f"share of scores in [{low:g}, {high:g}]", Threshold(max=cfg.max_rate),
                  rate, detail=detail)]
