"""The cards as a person sees them: each rendered by headless chromium at 1400 px, the width of a laptop window.

A card must fit that width (no sideways scrolling of the page or of any table), stay a sane length, and draw its
Vega-Lite charts (vega-embed ships in the card: nothing is fetched) within the card's column. The cards come from
runs other modules make anyway (session fixtures, no extra flow run): the gates and DistillFlow cards from the gates
branch, the training and MonitorFlow cards from the monitor's. Screenshots are kept under out/card-screenshots/.

Skipped when chromium is not installed (``apt-get install chromium``; .ci/run installs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import SCREENSHOTS, chromium, render_card

from steps.reporting.runs import card_html

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium): "
                                                           "the cards are not checked in a browser")

WIDTH = 1400
MAX_HEIGHT = 6000  # px: a card a person reads, not a log


def check_layout(measured: dict[str, Any], charts: int) -> None:
    """The page fits the window, no table scrolls sideways, the page is not endless, and its ``charts`` are drawn,
    with marks, within the card's column."""
    assert measured["viewport"] == WIDTH
    assert measured["scrollWidth"] <= measured["viewport"], "the page scrolls sideways"
    wide = [t for t in measured["tables"] if t["scrollWidth"] > t["clientWidth"] + 1]
    assert wide == [], f"tables wider than their container (they scroll sideways): {wide}"
    assert measured["scrollHeight"] < MAX_HEIGHT
    drawn = [c for c in measured["charts"] if c["width"] > 100 and c["height"] > 50 and c["marks"] > 0]
    assert len(drawn) == len(measured["charts"]) == charts, f"charts not drawn: {measured['charts']}"
    wide = [c for c in drawn if c["width"] > c["room"] + 1]
    assert wide == [], f"charts wider than the card's column: {wide}"
    assert measured["images"] == []  # every figure is a chart the browser draws


def shown(run: Any, step: str, name: str, tmp_path: Path) -> dict[str, Any]:
    """The card of ``run``'s ``step`` as the browser laid it out (and its screenshot, kept)."""
    measured = render_card(card_html(run, step=step), name, tmp_path, WIDTH)
    assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
    return measured


def verdict_line(run: Any) -> str:
    """The start of the banner the run's own verdict calls for (the judge step's artifacts)."""
    data = run["judge"].task.data
    if data.gates_passed:
        return "Will become champion: every gated check passed" + (
            f" ({sum(r['gated'] for r in data.gate_results)} of" if data.gate_results else "")
    return f"Stays a candidate, champion unchanged: {len(data.gate_summary['failed'])} of"


@pytest.mark.xdist_group("gates")  # gates_scenario's runs are made once, on one worker
def test_gates_card_of_a_promoted_run(gates_scenario, tmp_path) -> None:
    good = gates_scenario["good"]  # promoted, compared with the planted weak model (when that one was promoted)
    measured = shown(good, "judge", "gates-promoted", tmp_path)
    check_layout(measured, 1 + len(good["judge"].task.data.gate_report["fairness"]))  # curves, groups per attribute
    text, data = measured["text"], good["judge"].task.data
    assert verdict_line(good) in text
    if data.gates_passed:  # its latency gate can fail on a box busy enough (test_gates_flow.py then says so)
        champion = data.champion_run_id
        assert (f"it replaces run {champion}" if champion else "the first champion of its dataset") in text
    assert "Reported, not gated" in text  # the intersection slices too small to judge, apart from the gated ones


@pytest.mark.xdist_group("gates")
def test_gates_card_of_a_rejected_run(gates_scenario, tmp_path) -> None:
    unfair = gates_scenario["unfair"]
    measured = shown(unfair, "judge", "gates-rejected", tmp_path)
    check_layout(measured, 1 + len(unfair["judge"].task.data.gate_report["fairness"]))
    text = measured["text"]
    assert verdict_line(unfair) in text and "Stays a candidate, champion unchanged:" in text
    assert "Why it failed" in text and "fairness/equalized_odds_difference[region]" in text


@pytest.mark.xdist_group("gates")
def test_distill_card(distill_runs, tmp_path) -> None:
    runs, _ = distill_runs
    for name, run in runs.items():
        measured = shown(run, "join", f"distill-{name}", tmp_path)
        check_layout(measured, 1)  # quality against cost
        assert ("will serve:" if name == "passing" else "No student serves from this run:") in measured["text"]


@pytest.mark.xdist_group("monitor")  # the monitor's runs are made once, on one worker (train_run is its champion)
def test_training_card(train_run, tmp_path) -> None:
    measured = shown(train_run, "join", "training", tmp_path)
    check_layout(measured, 1)  # ROC and precision-recall
    assert f"Chosen model: {train_run.data.model_name}" in measured["text"]


@pytest.mark.xdist_group("monitor")
def test_monitor_card(monitor_drift, tmp_path) -> None:
    result, _ = monitor_drift
    measured = shown(result.run, "end", "monitor", tmp_path)
    check_layout(measured, 4)  # feature and prediction drift, the daily AUC, the AUC per group
    assert "active alert" in measured["text"] and "Realized performance on late labels" in measured["text"]
