"""The timing harness's two clocks: wall time counts waiting, CPU time counts only the process's own work."""

from __future__ import annotations

import time

import pytest

from steps.core.timing import best_seconds, call_seconds


def _sleep(_: object) -> None:
    time.sleep(0.02)


def _spin(_: object) -> None:
    end = time.process_time() + 0.02  # 20 ms of this process's own CPU work, however busy the machine
    while time.process_time() < end:
        pass


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_busy_work_counts_on_both_clocks(clock: str) -> None:
    assert call_seconds(_spin, [None] * 3, warmup=0, clock=clock).min() >= 0.015
    assert best_seconds(_spin, None, repeats=2, clock=clock) >= 0.015


def test_waiting_counts_on_the_wall_clock_only() -> None:
    assert call_seconds(_sleep, [None] * 3, warmup=0, clock="wall").min() >= 0.019
    assert call_seconds(_sleep, [None] * 3, warmup=0, clock="cpu").max() < 0.01
    assert best_seconds(_sleep, None, repeats=2, clock="cpu") < 0.01


def test_an_unknown_clock_is_refused() -> None:
    with pytest.raises(KeyError):
        call_seconds(_spin, [None], warmup=0, clock="sundial")
