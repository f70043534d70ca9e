"""Where the lifecycle's results live: the latest run of each flow, its cards (written as HTML), and its outputs.

CLI: ``python -m steps.reporting.report --out out`` (the last step of ``make demo``);
``python -m steps.reporting.report --retrained-run`` prints the id of the TrainFlow run the latest MonitorFlow run
started.

"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from metaflow.plugins.cards.exception import CardNotPresentException

from steps.core.cli import console
from steps.core.project import PROJECT
from steps.registry.registry import run_data
from steps.reporting.runs import RunNotFound, card_html, latest_run

logger = logging.getLogger(__name__)


CARDS = {"TrainFlow": ("join", "judge"), "DistillFlow": ("join",), "ScoreFlow": (), "MonitorFlow": ("end",)}


def _cards_of(run: Any, steps: tuple[str, ...], out: Path) -> list[str]:
    """Write each step's card of ``run`` under ``out``; returns the paths (a missing card is skipped)."""
    written = []
    for step in steps:
        try:
            html = card_html(run, step=step)
        except (LookupError, KeyError, CardNotPresentException):
            logger.warning("no card on %s/%s", run.pathspec, step)
            continue
        path = out / f"{run.parent.id.lower()}_{step}_card.html"
        path.write_text(html, encoding="utf-8")
        written.append(str(path.resolve()))
    return written


def _outputs(run: Any) -> list[str]:
    """The non-Metaflow outputs a run points at (partitions, monitor state)."""
    data, found = run_data(run), []
    if "plan" in data:
        found.append(f"predictions: {data.plan['output_root']}/dt={data.plan['date']}/")
    if "state_uri" in data:
        found.append(f"monitor state: {data.state_uri}; events: {len(data.event_uris)} under {data.roots['state']}")
    if "retraining" in data and data.retraining:
        found.append(f"retraining started: {data.retraining.get('run')} ({data.retraining.get('status')})")
    return found


def report(out: Path) -> list[str]:
    """One block of lines per flow: its latest successful run, the cards written, its outputs."""
    from steps.registry.registry import Registry, project_branch

    out.mkdir(parents=True, exist_ok=True)
    champion = Registry("TrainFlow", project_branch(), PROJECT).champion()
    lines = [f"champion (TrainFlow, branch {project_branch()}): {champion.pathspec if champion else 'none'}"]
    for flow, steps in CARDS.items():
        try:
            run = latest_run(flow)
        except RunNotFound:
            lines.append(f"{flow}: no successful run yet")
            continue
        lines.append(f"{flow}: {run.pathspec} ({run.created_at:%Y-%m-%d %H:%M})")
        lines += [f"  card: {path}" for path in _cards_of(run, steps, out)]
        lines += [f"  {line}" for line in _outputs(run)]
    return lines


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m steps.reporting.report", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"), help="where the cards' HTML goes")
    parser.add_argument("--retrained-run", action="store_true", help="print the id of the run MonitorFlow started")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    say = console(__name__)
    if args.retrained_run:
        retraining = run_data(latest_run("MonitorFlow")).retraining
        if not retraining or not retraining.get("run"):
            logger.error("the latest MonitorFlow run started no retraining")
            return 1
        say.info("%s", retraining["run"].split("/")[-1])
        return 0
    for line in report(args.out):
        say.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
