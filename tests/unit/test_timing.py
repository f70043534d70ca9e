"""The timing harness's two clocks: wall time counts waiting, CPU time counts only the process's own work."""

from __future__ import annotations

import time

import numpy as np
import pytest

from steps.core import timing
from steps.core.timing import best_seconds, call_seconds, paired_call_seconds


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


def test_paired_calls_take_turns_after_their_warm_up() -> None:
    order: list[tuple[str, object]] = []
    seconds = paired_call_seconds([lambda x: order.append(("a", x)), lambda x: order.append(("b", x))], [1, 2, 3],
                                  warmup=1)
    assert order == [("a", 1), ("b", 1), ("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert [s.shape for s in seconds] == [(3,), (3,)]


def test_paired_calls_share_whatever_slows_the_host(monkeypatch) -> None:
    """A host three times slower half way through: timed in turn, the two models keep their true ratio (2);
    timed one after the other, the second takes the slow half alone and the ratio reads 2/3."""
    now, calls = [0.0], [0]
    monkeypatch.setitem(timing.CLOCKS, "fake", lambda: now[0])

    def model(cost: float):
        def call(_: object) -> None:
            calls[0] += 1
            now[0] += cost * (3.0 if calls[0] > 20 else 1.0)
        return call

    a, b = model(2.0), model(1.0)
    paired = paired_call_seconds([a, b], [None] * 20, warmup=0, clock="fake")
    assert np.median(paired[0]) / np.median(paired[1]) == pytest.approx(2.0)
    calls[0] = 0
    apart = [call_seconds(m, [None] * 20, warmup=0, clock="fake") for m in (a, b)]
    assert np.median(apart[0]) / np.median(apart[1]) == pytest.approx(2 / 3)
