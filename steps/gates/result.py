"""Gate results and the verdict: a model's promotion decision as plain data (imports no suite)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from steps.config.gates import Threshold


@dataclass(frozen=True)
class GateResult:
    """One check: what was measured, against which threshold, and whether it passed."""

    suite: str  # performance | fairness | robustness | efficiency | review | champion
    name: str
    metric: str
    threshold: str  # human-readable, e.g. ">= 0.75 (lower 95% bound)"
    actual: float | None
    passed: bool
    interval: tuple[float, float] | None = None
    detail: str = ""
    gated: bool = True  # False: reported only (e.g. a slice below the minimum size)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for artifacts and JSON."""
        out = asdict(self)
        out["interval"] = list(self.interval) if self.interval is not None else None
        return out


def judge(threshold: Threshold, point: float, interval: tuple[float, float] | None = None) -> tuple[bool, float]:
    """Apply ``threshold`` to the bound it names; returns (passed, the value judged)."""
    value = point
    if interval is not None and threshold.bound != "point":
        value = interval[0] if threshold.bound == "lower" else interval[1]
    passed = (threshold.min is None or value >= threshold.min) and (threshold.max is None or value <= threshold.max)
    return bool(passed), float(value)


def describe(threshold: Threshold, confidence: float | None = None) -> str:
    """``threshold`` as text, e.g. '>= 0.75 (lower 95% bound)'."""
    op, limit = (">=", threshold.min) if threshold.min is not None else ("<=", threshold.max)
    if threshold.bound == "point" or confidence is None:
        return f"{op} {limit:g}"
    return f"{op} {limit:g} ({threshold.bound} {confidence:.0%} bound)"


def check(suite: str, name: str, metric: str, threshold: Threshold, point: float,
          interval: tuple[float, float] | None = None, confidence: float | None = None,
          detail: str = "", gated: bool = True) -> GateResult:
    """Build the GateResult of ``point`` (with its interval) against ``threshold``."""
    passed, _ = judge(threshold, point, interval)
    return GateResult(suite=suite, name=name, metric=metric, threshold=describe(threshold, confidence),
                      actual=float(point), passed=passed, interval=interval, detail=detail,
                      gated=gated)


@dataclass(frozen=True)
class Verdict:
    """All gate results and the decision they imply."""

    results: list[GateResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every gated check passed."""
        return all(r.passed for r in self.results if r.gated)

    @property
    def failed(self) -> list[GateResult]:
        """The gated checks that failed."""
        return [r for r in self.results if r.gated and not r.passed]

    def summary(self) -> dict[str, Any]:
        """Counts per suite and the failed checks' names, for the audit log and the card."""
        suites: dict[str, dict[str, int]] = {}
        for r in self.results:
            s = suites.setdefault(r.suite, {"checks": 0, "failed": 0})
            s["checks"] += 1
            s["failed"] += int(r.gated and not r.passed)
        return {"passed": self.passed, "suites": suites, "failed": [f"{r.suite}/{r.name}" for r in self.failed]}

    def to_json(self) -> str:
        """The verdict as JSON: summary plus every result."""
        return json.dumps({**self.summary(), "results": [r.to_dict() for r in self.results]}, indent=2)
