"""Benchmarks behind `make bench`: each ``bench_*`` module has ``run(quick: bool) -> Report``; see benchmarks.run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]


class Report(TypedDict):
    """What a benchmark returns: a title, named tables (lists of flat rows) and notes (claims checked, caveats)."""

    title: str
    tables: dict[str, list[dict[str, Any]]]
    notes: list[str]
