"""Benchmarks behind `make bench`: each ``bench_*`` module has ``run(quick: bool) -> Report``; see benchmarks.run."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]


class Report(TypedDict):
    """What a benchmark returns: a title, named tables (lists of flat rows) and notes (claims checked, caveats)."""

    title: str
    tables: dict[str, list[dict[str, Any]]]
    notes: list[str]


def peak_mib() -> float:
    """Peak resident set size of this process image so far, in MiB (VmHWM: a child started with exec does not
    inherit the parent's peak, which ru_maxrss would report)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
