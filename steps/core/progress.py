"""Progress of long work as plain INFO log lines at a steady pace (no carriage returns: logs stay readable on AWS).

    progress = Progress("shard 2", total=3_000_000, unit="rows")
    for batch in batches:
        ...
        progress.advance(len(batch))
    progress.done()

logs ``shard 2: 1,200,000/3,000,000 rows (40%), 240,000 rows/s, ETA 8 s`` at most every ``every_s`` seconds, and
one closing line with the total time. ``timed(logger, "fairness")`` logs how long a named piece of work took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

EVERY_S = 5.0  # seconds between two progress lines


def _duration(seconds: float) -> str:
    """``8 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Counts work done against an optional total and logs done / total, rate and ETA every ``every_s`` seconds."""

    def __init__(self, what: str, total: int | None = None, unit: str = "rows", every_s: float = EVERY_S,
                 log: logging.Logger | None = None, clock: object = time.monotonic) -> None:
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.log = log or logger
        self._clock = clock
        self.start = self.last = self._now()
        self.count = 0

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def line(self, now: float) -> str:
        """The progress line for the count so far."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        text = f"{self.what}: {self.count:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * self.count / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:,.0f} {self.unit}/s"
        if self.total and rate > 0 and self.count < self.total:
            text += f", ETA {_duration((self.total - self.count) / rate)}"
        return text

    def advance(self, n: int) -> None:
        """Add ``n`` units; log a line when ``every_s`` seconds passed since the last one."""
        self.count += n
        now = self._now()
        if now - self.last >= self.every_s:
            self.last = now
            self.log.info(self.line(now))

    def done(self) -> None:
        """Log the closing line: units done and the time they took."""
        now = self._now()
        self.log.info("%s: %s %s in %s (%s %s/s)", self.what, f"{self.count:,}", self.unit,
                      _duration(now - self.start), f"{self.count / max(now - self.start, 1e-9):,.0f}", self.unit)


@contextmanager
def timed(log: logging.Logger, what: str) -> Iterator[None]:
    """Log ``<what>: started`` and ``<what>: done in N s`` around a block."""
    log.info("%s: started", what)
    start = time.monotonic()
    yield
    log.info("%s: done in %s", what, _duration(time.monotonic() - start))
