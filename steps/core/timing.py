"""One timing harness for every cost the project measures: per-call latency, best-of-N batch throughput and the
traced peak memory of one call.

``call`` is any callable (a pipeline's ``predict_proba``, an ONNX session's ``run``); its inputs are prepared before
timing, so only the call is measured. Limit native threads once around a whole measurement (``threadpool_limits``),
never inside ``call``: entering the limit costs a few milliseconds, which a single-row latency would count.

Two clocks: ``wall`` (what a caller waits: ``perf_counter``) and ``cpu`` (the CPU time of this process, every
thread: ``process_time``). CPU time is the model's own work, nearly unchanged when other processes compete for the
cores, so a gate measured on a shared training host or a busy laptop judges the model, not the moment's load.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

WARMUP_CALLS = 5
BATCH_REPEATS = 3
Call = Callable[[Any], Any]
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def call_seconds(call: Call, inputs: Sequence[Any], warmup: int = WARMUP_CALLS, clock: str = "wall") -> np.ndarray:
    """Seconds (on ``clock``) of one ``call`` per input, in order, after ``warmup`` untimed calls on the first
    inputs (:func:`paired_call_seconds` with one call)."""
    return paired_call_seconds([call], inputs, warmup, clock)[0]


def paired_call_seconds(calls: Sequence[Call], inputs: Sequence[Any], warmup: int = WARMUP_CALLS,
                        clock: str = "wall") -> list[np.ndarray]:
    """Seconds (on ``clock``) of each of ``calls`` per input, the calls taking turns input by input (a, b, a, b, ...)
    after ``warmup`` untimed turns: a host that slows down or speeds up does so for every call, so their percentiles
    compare (two measurements one after the other on a shared machine can differ by a third)."""
    now = CLOCKS[clock]
    for item in inputs[:warmup]:
        for call in calls:
            call(item)
    out = [np.empty(len(inputs)) for _ in calls]
    for i, item in enumerate(inputs):
        for seconds, call in zip(out, calls, strict=True):
            start = now()
            call(item)
            seconds[i] = now() - start
    return out


def best_seconds(call: Call, batch: Any, repeats: int = BATCH_REPEATS, warmup: bool = False,
                 clock: str = "wall") -> float:
    """The shortest time (on ``clock``) of ``repeats`` calls on ``batch`` (after one untimed call when ``warmup``)."""
    now = CLOCKS[clock]
    if warmup:
        call(batch)
    best = float("inf")
    for _ in range(repeats):
        start = now()
        call(batch)
        best = min(best, now() - start)
    return best


def peak_traced_mb(call: Call, batch: Any) -> float:
    """Peak traced memory of one call on ``batch``, in MB.

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
        call(batch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not already:
            tracemalloc.stop()
    return max(peak - baseline, 0) / 1e6


def percentiles(seconds: np.ndarray, scale: float, unit: str) -> dict[str, float]:
    """``{"p50_<unit>": ..., "p99_<unit>": ...}`` of ``seconds`` times ``scale`` (1e3: ms, 1e6: us)."""
    return {f"p50_{unit}": float(np.percentile(seconds, 50) * scale),
            f"p99_{unit}": float(np.percentile(seconds, 99) * scale)}
