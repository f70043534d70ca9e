"""Efficiency gates: latency, throughput, size and memory of a model on its serving runtime.

``predict`` is any callable from a raw DataFrame to one score per row (a scikit-learn pipeline wrapper, an ONNX
session wrapper); the numbers describe that callable, so measure the runtime that will serve. Limit threads once
around :func:`measure` (``threadpool_limits``) rather than inside ``predict``: entering the limit costs a few
milliseconds per call, which the single-row latency would count. A model that cannot score a batch is stopped
before (the hold-out scoring gate); one that fails on a single row gets NaN latencies whose gates fail and say why.

"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from steps.config.gates import EfficiencyGates, Threshold
from steps.core.timing import (
    BATCH_REPEATS,
    WARMUP_CALLS,
    best_seconds,
    call_seconds,
    paired_call_seconds,
    peak_traced_mb,
    percentiles,
)
from steps.gates.result import GateResult, check

logger = logging.getLogger(__name__)


SUITE = "efficiency"


Predict = Callable[[pd.DataFrame], np.ndarray]


def measure(predict: Predict, rows: pd.DataFrame, model_bytes: bytes, cfg: EfficiencyGates,
            latency: dict[str, float] | None = None) -> dict[str, Any]:
    """Latency, throughput, size and peak memory of ``predict``.

    Args:
        predict: raw rows in, one score per row out (the serving runtime).
        rows: representative raw rows (e.g. the hold-out); single-row calls reuse them in order when short.
        model_bytes: the serialized model as stored (its size is gated).
        cfg: how many rows to time and the bounds.
        latency: ``p50_ms`` and ``p99_ms`` already measured (:func:`paired_latency`; ``latency_in_turn`` says so),
            or NaN when they could not be (a model that fails on one row): no single-row calls are made.

    Returns:
        ``p50_ms``, ``p99_ms``, ``rows_per_s``, ``size_mb``, ``peak_memory_mb``, the row counts used, how the
        latency was timed and the clock.
    """
    if rows.empty:
        raise ValueError("efficiency needs at least one row")
    batch = rows.iloc[:cfg.batch_rows]
    seconds = best_seconds(predict, batch, clock=cfg.clock)
    out = {
        **(latency or _single_row_latency(predict, rows, cfg)),
        "rows_per_s": float(len(batch) / seconds) if seconds > 0 else float("inf"),
        "size_mb": len(model_bytes) / 1e6,
        "peak_memory_mb": peak_traced_mb(predict, batch),
        "latency_rows": int(cfg.latency_rows),
        "latency_in_turn": latency is not None and bool(np.isfinite(latency["p50_ms"])),
        "batch_rows": int(len(batch)),
        "clock": cfg.clock,
    }
    logger.info("efficiency: p50 %.2f ms, p99 %.2f ms, %.0f rows/s, %.2f MB, peak %.1f MB", out["p50_ms"],
                out["p99_ms"], out["rows_per_s"], out["size_mb"], out["peak_memory_mb"])
    return out


def _single_row_latency(predict: Predict, rows: pd.DataFrame, cfg: EfficiencyGates) -> dict[str, Any]:
    """``p50_ms`` and ``p99_ms`` of ``cfg.latency_rows`` single-row calls; NaN and the ``error`` when a call fails."""
    try:
        return percentiles(call_seconds(predict, single_rows(rows, cfg.latency_rows), clock=cfg.clock), 1e3, "ms")
    except Exception as err:  # noqa: BLE001 - a model that fails on one row fails its latency gates, saying why
        return unmeasured(f"{type(err).__name__}: {err}")


def unmeasured(error: str | None = None) -> dict[str, Any]:
    """Single-row latencies that were not measured: NaN ``p50_ms`` and ``p99_ms``, and the ``error`` when known."""
    return {"p50_ms": float("nan"), "p99_ms": float("nan"), **({"error": error[:300]} if error else {})}


def single_rows(rows: pd.DataFrame, count: int) -> list[pd.DataFrame]:
    """``count`` one-row frames of ``rows``' first rows (in turn when fewer), sliced before any timing."""
    pool = rows.iloc[:count]  # one slice of a large frame, then cheap one-row slices of it
    return [pool.iloc[[i % len(pool)]] for i in range(count)]


def paired_latency(predicts: list[Predict], rows: pd.DataFrame, cfg: EfficiencyGates) -> list[dict[str, float]]:
    """Single-row ``p50_ms`` and ``p99_ms`` of each of ``predicts``, called in turn on the same rows
    (:func:`~steps.core.timing.paired_call_seconds`): what a comparison of two models' latencies reads."""
    seconds = paired_call_seconds(predicts, single_rows(rows, cfg.latency_rows), clock=cfg.clock)
    return [percentiles(s, 1e3, "ms") for s in seconds]


def efficiency_gates(measured: dict[str, Any], cfg: EfficiencyGates) -> list[GateResult]:
    """Gate the numbers from :func:`measure` against ``cfg``."""
    clock = {"cpu": "CPU time", "wall": "wall time"}[measured.get("clock", "wall")]
    turns = ", in turn with the model compared" if measured.get("latency_in_turn") else ""
    single = f"{measured['latency_rows']} single-row calls after {WARMUP_CALLS} warm-up calls{turns}, {clock}"
    if measured.get("error"):
        single = f"not measured: a single-row call failed ({measured['error']})"
    batch = f"batch of {measured['batch_rows']} rows, best of {BATCH_REPEATS}, {clock}"
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
