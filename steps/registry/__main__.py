"""``python -m steps.registry``: show, promote, rollback, history."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from metaflow.exception import MetaflowException

from steps.core.cli import console, quiet_broken_pipe
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


def _print_reproduction(result: dict[str, Any]) -> None:
    """Print ``reproduce`` output for people."""
    _say(f"{result['run']} reproduced by {result['reproduced_by']} (code {result['git_revision'][:12]}, data sha256 "
         f"{result['data_sha256'][:12]} from {result['data_object']})")
    rows = [(f"model {result['model']['name']}", result["model"]),
            *[(f"candidate {name}", c) for name, c in result["candidates"].items()]]
    for label, row in rows:
        verdict = "equal" if row["equal"] else f"DIFFERS (now {str(row['reproduced'])[:12]})"
        _say(f"  {label:<28} sha256 {row['original'][:12]}  {verdict}" + (f"; device {row['device']}"
                                                                            if row.get("device") else ""))
    _say("reproduced exactly" if result["equal"] else "NOT reproduced exactly")


def _event_line(event: dict[str, Any]) -> str:
    """One readable line for an audit event."""
    forced = " FORCED" if event.get("forced") else ""
    who = event["who"] + (f" ({event['aws_identity']})" if event.get("aws_identity") else "")
    note = f"  note: {event['note']}" if event.get("note") else ""
    return (f"{event['when']}  {event['kind']:<14} {event['from'] or '-'} -> {event['to']}  by {who}"
            f"{forced}  reason: {event['reason'] or '-'}{note}")


def _parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of text (default: text)")
    parser = argparse.ArgumentParser(
        prog="python -m steps.registry", parents=[common],
        description="Champion / candidate / archived runs and the audit log of one flow, project branch and dataset. "
                    "Run it where the Metaflow Client finds the runs (e.g. the project root).",
        epilog="Exit status: 0 done; 1 refused or failed (the reason on stderr); 2 `show` found problems; 3 "
               "`reproduce` found a different fingerprint.")
    parser.add_argument("--flow", default="TrainFlow", help="the flow whose runs are registered (default: TrainFlow; "
                                                            "DistillFlow for served students)")
    parser.add_argument("--project", default=PROJECT, help=f"the @project name (default: {PROJECT})")
    parser.add_argument("--branch", default=None,
                        help="as given to the flow's --branch: NAME means test.NAME, with --production prod.NAME; a "
                             "full branch with a dot (user.alice, test.x, prod.x) is taken as is "
                             "(default: user.<you>). For production use --production, not --branch prod")
    parser.add_argument("--production", action="store_true", help="the production branch (prod; default: off)")
    parser.add_argument("--dataset", default=None, help="the dataset whose models to show or move (default: the "
                                                        "name in config/dataset.yaml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("show", parents=[common], help="champion, candidates, archived runs and problems (exit 2 "
                                                       "when there are problems)")
    promote = commands.add_parser("promote", parents=[common], help="make a run the champion")
    promote.add_argument("run_id", help="the run to promote: its id or pathspec (TrainFlow/123)")
    _moves(promote, "promote it although its gates failed (needs --reason)", "")
    rollback = commands.add_parser("rollback", parents=[common], help="restore the previous champion")
    rollback.add_argument("--to", default=None, help="a former champion's run id (default: the champion before the "
                                                     "current one)")
    _moves(rollback, "restore a run that failed its gates (needs --reason)", "rollback")
    commands.add_parser("history", parents=[common], help="the audit log, oldest first")
    again = commands.add_parser("reproduce", parents=[common], help="train a run again from its lineage (code at its "
                                "git revision, its configs, the same data bytes) and compare fingerprints (exit 3 "
                                "when one differs)")
    again.add_argument("run_id", help="the TrainFlow run: its id or pathspec")
    again.add_argument("--profile", default=None, help="profile to run the reproduction with (default: that "
                                                       "revision's config/profiles/local.yaml)")
    again.add_argument("--allow-dirty", action="store_true", help="reproduce a run trained from uncommitted changes "
                                                                  "with the committed code (default: refuse)")
    commands.add_parser("reconcile", parents=[common], help="move the champion tag to the run the audit log's latest "
                                                            "event names (after a process died between the two)")
    return parser


def _moves(command: argparse.ArgumentParser, force_help: str, reason: str) -> None:
    """The options of the commands that move the champion."""
    command.add_argument("--force", action="store_true", help=force_help + " (default: off)")
    command.add_argument("--reason", default=reason, help=f"why, recorded in the audit log (default: {reason!r})")
    command.add_argument("--note", "--who", dest="note", default=None,
                         help="a note recorded with the actor, e.g. on whose behalf (default: none); the actor "
                              "itself is always the user from the environment (and the AWS identity on S3)")


def _branch_from(args: argparse.Namespace) -> str:
    """The full project branch the command-line options name; RegistryError for ``--branch prod``."""
    if args.branch in ("prod", "production") and not args.production:
        raise RegistryError(f"--branch {args.branch} would mean the test branch test.{args.branch} (Metaflow's rule "
                            "for --branch); for production use --production (branch prod), or --production "
                            f"--branch NAME for prod.NAME; for the test branch write --branch test.{args.branch}")
    if args.branch and "." in args.branch:
        return args.branch
    return project_branch(args.branch, args.production)


def _run(args: argparse.Namespace) -> tuple[Any, int]:
    """Carry out the command; returns (result, exit status)."""
    as_json = getattr(args, "json", False)
    registry = Registry(flow=args.flow, branch=_branch_from(args), project=args.project, dataset=args.dataset)
    if args.command == "show":
        result: Any = registry.show()
        if not as_json:
            _print_show(result)
        return result, 2 if result["problems"] else 0
    if args.command == "reproduce":
        from steps.registry.reproduce import reproduce

        result = reproduce(args.run_id, args.profile, args.allow_dirty)
        if not as_json:
            _print_reproduction(result)
        return result, 0 if result["equal"] else 3
    if args.command == "reconcile":
        result = registry.reconcile()
        if not as_json:
            _print_show(result)
        return result, 2 if result["problems"] else 0
    if args.command == "history":
        result = registry.history()
        if not as_json:
            _say("\n".join(_event_line(e) for e in result) or f"no events for {registry.branch}")
        return result, 0
    if args.command == "promote":
        result = registry.promote(args.run_id, reason=args.reason, force=args.force, note=args.note)
    else:
        result = registry.rollback(to=args.to, reason=args.reason, force=args.force, note=args.note)
    if not as_json:
        _say(_event_line(result))
    return result, 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    quiet_broken_pipe()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        result, status = _run(args)
    except (RegistryError, models.FingerprintMismatch, MetaflowException) as err:  # e.g. no user name known
        sys.stderr.write(f"error: {err}\n")  # one line, no traceback: the CLI contract
        return 1
    if getattr(args, "json", False):
        _say(json.dumps(result, indent=2, sort_keys=True, default=str))
    return status


if __name__ == "__main__":
    sys.exit(main())
