"""``python -m steps.registry``: show, promote, rollback, history."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from steps.core.cli import console
from steps.core.project import PROJECT
from steps.modeling import models
from steps.registry.registry import Registry, RegistryError, project_branch


def _say(text: str) -> None:
    """One block of the CLI's output, on stdout."""
    console(__name__).info("%s", text)


def _line(summary: dict[str, Any] | None) -> str:
    """One readable line for a run summary."""
    if summary is None:
        return "(none)"
    fingerprint = (summary["model_fingerprint"] or "")[:12] or "-"
    gates = "gates passed" if summary["gates_passed"] else "gates NOT passed"
    model = summary["model_name"] or "-"
    return f"{summary['run_id']}  {model}  sha256 {fingerprint}  {gates}  started {summary['started_at']}"


def _print_show(state: dict[str, Any]) -> None:
    """Print ``show`` output for people."""
    _say(f"{state['flow']}  project {state['project']}  branch {state['branch']}  dataset {state['dataset']}")
    _say(f"champion:   {_line(state['champion'])}")
    for label in ("candidates", "archived"):
        runs = state[label]
        _say(f"{label + ':':<11} {_line(runs[0]) if runs else '(none)'}")
        for summary in runs[1:]:
            _say(f"{'':<11} {_line(summary)}")
    _say("problems:   " + ("none" if not state["problems"] else ""))
    for problem in state["problems"]:
        _say(f"  - {problem}")


def _event_line(event: dict[str, Any]) -> str:
    """One readable line for an audit event."""
    forced = " FORCED" if event.get("forced") else ""
    return (f"{event['when']}  {event['kind']:<14} {event['from'] or '-'} -> {event['to']}  by {event['who']}"
            f"{forced}  reason: {event['reason'] or '-'}")


def _parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser = argparse.ArgumentParser(prog="python -m steps.registry", parents=[common],
                                     description="Champion / candidate / archived runs and the audit log.")
    parser.add_argument("--flow", default="TrainFlow")
    parser.add_argument("--project", default=PROJECT)
    parser.add_argument("--branch", default=None,
                        help="as given to the flow's --branch (NAME -> test.NAME, with --production prod.NAME), "
                             "or a full project branch containing a dot (user.alice, test.x, prod.x)")
    parser.add_argument("--production", action="store_true", help="the production branch (prod)")
    parser.add_argument("--dataset", default=None, help="the dataset whose models to show or move (default: the "
                                                        "name in config/dataset.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("show", parents=[common], help="champion, candidates, archived, problems")
    promote = commands.add_parser("promote", parents=[common], help="make a run the champion")
    promote.add_argument("run_id")
    promote.add_argument("--force", action="store_true", help="promote although its gates failed (needs --reason)")
    promote.add_argument("--reason", default="")
    promote.add_argument("--who", default=None)
    rollback = commands.add_parser("rollback", parents=[common], help="restore the previous champion")
    rollback.add_argument("--to", default=None, help="a former champion's run id")
    rollback.add_argument("--reason", default="rollback")
    rollback.add_argument("--who", default=None)
    commands.add_parser("history", parents=[common], help="the audit log, oldest first")
    return parser


def _branch_from(args: argparse.Namespace) -> str:
    """The full project branch the command-line options name."""
    if args.branch and "." in args.branch:
        return args.branch
    return project_branch(args.branch, args.production)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    as_json = getattr(args, "json", False)
    registry = Registry(flow=args.flow, branch=_branch_from(args), project=args.project, dataset=args.dataset)
    try:
        if args.command == "show":
            result: Any = registry.show()
            if not as_json:
                _print_show(result)
        elif args.command == "history":
            result = registry.history()
            if not as_json:
                _say("\n".join(_event_line(e) for e in result) or f"no events for {registry.branch}")
        elif args.command == "promote":
            result = registry.promote(args.run_id, reason=args.reason, force=args.force, who=args.who)
            if not as_json:
                _say(_event_line(result))
        else:
            result = registry.rollback(to=args.to, reason=args.reason, who=args.who)
            if not as_json:
                _say(_event_line(result))
    except (RegistryError, models.FingerprintMismatch) as err:
        sys.stderr.write(f"error: {err}\n")  # one line, no traceback: the CLI contract
        return 1
    if as_json:
        _say(json.dumps(result, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
