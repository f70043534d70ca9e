"""Progress lines: done / total, rate and ETA at a steady pace, never more often than asked."""

from __future__ import annotations

import logging

import pytest

from steps.core.progress import Progress, _duration, timed


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_the_configured_pace_with_rate_and_eta(caplog):
    clock = Clock()
    progress = Progress("shard 0", total=1_000_000, every_s=5, log=logging.getLogger("t"), clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(10):  # 100k rows a second, one batch a second
            clock.now += 1
            progress.advance(100_000)
        progress.done()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["shard 0: 500,000/1,000,000 rows (50%), 100,000 rows/s, ETA 5.0 s",
                     "shard 0: 1,000,000/1,000,000 rows (100%), 100,000 rows/s",
                     "shard 0: 1,000,000 rows in 10 s (100,000 rows/s)"]
    assert not any("\r" in line for line in lines)


def test_without_a_total_there_is_no_eta(caplog):
    clock = Clock()
    progress = Progress("reading", unit="batches", every_s=1, log=logging.getLogger("t"), clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        clock.now += 2
        progress.advance(4)
    assert [r.getMessage() for r in caplog.records] == ["reading: 4 batches, 2 batches/s"]


@pytest.mark.parametrize("seconds, text", [(0.25, "0.2 s"), (9.96, "10.0 s"), (42, "42 s"), (185, "3 min 05 s"),
                                           (3720, "1 h 02 min"), (-1, "0.0 s")])
def test_durations_read_naturally(seconds, text):
    assert _duration(seconds) == text


def test_timed_logs_start_and_duration(caplog):
    with caplog.at_level(logging.INFO, logger="t"), timed(logging.getLogger("t"), "gates: fairness"):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "gates: fairness: started" and messages[1].startswith("gates: fairness: done in ")
