"""Where the lifecycle's results live: the champion's TrainFlow cards, the other flows' latest runs, their outputs,
and the notebook that reads each run.

The cards are written as HTML.

CLI: ``python -m steps.reporting.report --out out`` (the last step of ``make demo``): TrainFlow's cards come from the
registry's champion (of ``--branch``, default yours, and ``--dataset``, default config/dataset.yaml's), or from the
latest successful run when there is none; every line names the run a card is from.
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


# flow -> (step, card) of each card it renders
CARDS = {"TrainFlow": (("join", "training"), ("judge", "gates")), "DistillFlow": (("join", "distill"),),
         "ScoreFlow": (("join", "scoring"),), "MonitorFlow": (("end", "monitor"),)}
# flow -> the notebook that reads one of its runs, and the variable that names the run (`make notebooks` opens them)
NOTEBOOKS = {"TrainFlow": ("01-inspect-training-run.ipynb", "TRAIN_RUN_ID"),
             "ScoreFlow": ("03-audit-scored-partition.ipynb", "SCORE_RUN_ID"),
             "MonitorFlow": ("04-review-monitoring.ipynb", "MONITOR_RUN_ID")}


def _cards_of(run: Any, cards: tuple[tuple[str, str], ...], out: Path) -> list[str]:
    """Write each card of ``run`` under ``out``; returns one line per card: its path and the run it is from."""
    written = []
    for step, card in cards:
        try:
            html = card_html(run, step=step)
        except (LookupError, KeyError, CardNotPresentException):
            logger.warning("no card on %s/%s", run.pathspec, step)
            continue
        path = out / f"{run.parent.id.lower()}_{step}_card.html"
        path.write_text(html, encoding="utf-8")
        written.append(f"{card} card: {path.resolve()} (from {run.pathspec}, step {step})")
    return written


def _outputs(run: Any) -> list[str]:
    """The non-Metaflow outputs a run points at (partitions, monitor state)."""
    data, found = run_data(run), []
    if "plan" in data:
        found.append(f"predictions: {data.plan['output_root']}/dt={data.plan['date']}/")
    if "state_uri" in data:
        found.append(f"monitor state: {data.state_uri}; events: {len(data.event_uris)} under {data.roots['state']}")
    if "retraining" in data and data.retraining:
        started = data.retraining.get("run")
        found.append(f"retraining started: {started} ({data.retraining.get('status')})" if started
                     else f"retraining: {data.retraining.get('status')}")
    return found


def _run_to_show(flow: str, champion: Any) -> tuple[Any, str]:
    """TrainFlow: the registry's champion (else its latest successful run); any other flow: its latest run."""
    if flow == "TrainFlow" and champion is not None:
        return champion, "champion"
    run = latest_run(flow)
    return run, ("latest successful run (no champion)" if flow == "TrainFlow" else "latest successful run")


def report(out: Path, branch: str | None = None, dataset: str | None = None) -> list[str]:
    """One block of lines per flow: the run shown (TrainFlow: the champion), the cards written, its outputs."""
    from steps.registry.registry import Registry, project_branch, started_at

    out.mkdir(parents=True, exist_ok=True)
    registry = Registry("TrainFlow", branch or project_branch(), PROJECT, dataset=dataset)
    champion = registry.champion()
    lines = [f"champion (TrainFlow, branch {registry.branch}, dataset {registry.dataset}): "
             f"{champion.pathspec if champion else 'none'}"]
    for flow, cards in CARDS.items():
        try:
            run, which = _run_to_show(flow, champion)
        except RunNotFound:
            lines.append(f"{flow}: no successful run yet")
            continue
        lines.append(f"{flow}: {which} {run.pathspec} (started {started_at(run):%Y-%m-%d %H:%M})")
        lines += [f"  {line}" for line in _cards_of(run, cards, out)]
        lines += [f"  {line}" for line in _outputs(run)]
        if flow in NOTEBOOKS:
            notebook, variable = NOTEBOOKS[flow]
            lines.append(f"  notebook: notebooks/{notebook} ({variable}={run.id})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m steps.reporting.report", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"), help="folder the cards' HTML is written to "
                        "(default: %(default)s)")
    parser.add_argument("--branch", default=None, help="the full @project branch whose champion's cards are written: "
                        "user.<name>, test.<name>, prod (default: your user branch)")
    parser.add_argument("--dataset", default=None, help="the dataset whose champion it is (default: the name in "
                        "config/dataset.yaml)")
    parser.add_argument("--retrained-run", action="store_true", help="only print the id of the TrainFlow run the "
                        "latest MonitorFlow run started (default: off)")
    args = parser.parse_args(argv)
    if not args.retrained_run and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder (the cards are written into it)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    say = console(__name__)
    if args.retrained_run:
        retraining = run_data(latest_run("MonitorFlow")).retraining
        if not retraining or not retraining.get("run"):
            logger.error("the latest MonitorFlow run started no retraining")
            return 1
        say.info("%s", retraining["run"].split("/")[-1])
        return 0
    for line in report(args.out, args.branch, args.dataset):
        say.info("%s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
