"""Read runs through the Metaflow Client: summaries, lineage, the chosen model, gate results and cards.

For notebooks and the command line (the flows never import this module)::

    python -m steps.reporting.runs TrainFlow [--run-id ID] [--card-out out/train_card.html]
    python -m steps.reporting.runs ScoreFlow | DistillFlow | MonitorFlow [--run-id ID] [--card-out PATH]

Notebook 01 reads one training run; notebook 02 reads a challenger's gates (the ``gates`` task's artifacts), the
champion it was compared with and the registry of its ``@project`` branch.

The Client finds the local ``.metaflow`` directory from the current working directory (walking up), once per
process; run this from the project root, or from the directory that holds the runs.

"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from metaflow import Flow, Run, get_metadata, get_namespace
from metaflow.cards import get_cards
from metaflow.exception import MetaflowNamespaceMismatch, MetaflowNotFound
from sklearn.pipeline import Pipeline

from steps.config.base import load
from steps.config.dataset import DatasetConfig
from steps.core.cli import console
from steps.data.table import part_of
from steps.modeling import models
from steps.registry.registry import (
    CANDIDATE,
    CHAMPION,
    Registry,
    global_namespace,
    project_branch,
    run_data,
    started_at,
    step_data,
)
from steps.registry.store import RegistryError

logger = logging.getLogger(__name__)


_CARD_DATA = re.compile(r'window\.__MF_DATA__\["[^"]+"\]\s*=\s*"([A-Za-z0-9+/=]+)"')


class RunNotFound(LookupError):
    """No run matches the request in the current namespace or in the global one."""


def _find(flow_name: str, run_id: str | None) -> Run | None:
    """The run with ``run_id`` (or the latest successful one) in the active namespace, or None."""
    try:
        return Run(f"{flow_name}/{run_id}") if run_id else Flow(flow_name).latest_successful_run
    except MetaflowNamespaceMismatch:
        return None


def latest_run(flow_name: str, run_id: str | None = None) -> Run:
    """The run ``run_id`` of ``flow_name``, or its latest successful run; current namespace first, then global."""
    what = f"run {flow_name}/{run_id}" if run_id else f"successful {flow_name} run"
    try:
        run = _find(flow_name, run_id)
        if run is None:
            logger.info("no %s in namespace %s; looking in the global namespace", what, get_namespace())
            with global_namespace():
                run = _find(flow_name, run_id)
    except MetaflowNotFound as err:
        raise RunNotFound(f"no {what} in metadata {get_metadata()} (working directory {Path.cwd()}): {err}") from err
    if run is None:
        raise RunNotFound(f"no {what} in any namespace")
    if not run.successful:
        logger.warning("%s did not finish successfully; its artifacts may be incomplete", run.pathspec)
    return run


def champion_or_latest(flow: str = "TrainFlow", branch: str | None = None,
                       dataset: str | None = None) -> tuple[Run, str]:
    """The registry's champion of ``dataset`` on ``branch`` (default: yours, config/dataset.yaml's) and "champion";
    without one, the latest successful run and why it is shown instead."""
    registry = Registry(flow, branch or project_branch(), dataset=dataset)
    champion = registry.champion()
    if champion is not None:
        return champion, "champion"
    return latest_run(flow), f"latest successful run: no champion on branch {registry.branch} for {registry.dataset}"


def training_summary(run: Run) -> pd.DataFrame:
    """One row per candidate: name, type, validation metrics, fit time, threads and device, size, fingerprint and a
    chosen flag."""
    chosen = run_data(run).model_name
    rows = [{"name": s["name"], "type": s["type"], **s["metrics"], "fit_seconds": s["fit_seconds"],
             "train_rows": s["train_rows"], "threads": s.get("threads"), "device": s.get("device"),
             "size_bytes": s["size_bytes"], "fingerprint": s["fingerprint"],
             "chosen": s["name"] == chosen} for s in run_data(run).candidate_summaries]
    return pd.DataFrame(rows)


def _tag(run: Run, prefix: str) -> str | None:
    """The value of the system tag ``prefix:value`` on ``run``, if any."""
    return next((t.split(":", 1)[1] for t in sorted(run.system_tags) if t.startswith(prefix + ":")), None)


def lineage(run: Run) -> dict[str, Any]:
    """Where the run's model came from: run, user, project branch, time, then the dataset lineage it recorded."""
    return {"run": run.pathspec, "user": _tag(run, "user"), "project_branch": _tag(run, "project_branch"),
            "created_at": str(run.created_at), "model_fingerprint": run_data(run).model_fingerprint,
            **run_data(run).lineage}


def split_summary(run: Run) -> pd.DataFrame:
    """Rows, positives and time range of the train / validation / hold-out parts, one row each (and the method)."""
    summary = run_data(run).split_summary
    parts = {name: summary[name] for name in ("train", "validation", "holdout")}
    return pd.DataFrame.from_dict(parts, orient="index").assign(method=summary.get("method", "time"))


def dataset_spec(run: Run) -> DatasetConfig:
    """The dataset config the run was trained with (its ``dataset`` Config artifact)."""
    return load(DatasetConfig, run_data(run).dataset)


def chosen_model(run: Run) -> Pipeline:
    """The chosen pipeline, loaded only if its bytes match the fingerprint recorded by the run."""
    return models.deserialize(run_data(run).model_blob, run_data(run).model_fingerprint)


def holdout(run: Run, columns: list[str] | None = None) -> pd.DataFrame:
    """The run's hold-out rows (``columns`` only; None: all), read from the table its ``split_ref`` points at (the
    ``holdout_df`` artifact of runs from before data was kept by reference)."""
    return part_of(run_data(run), "holdout", columns)


def train_rows(run: Run, columns: list[str] | None = None) -> pd.DataFrame:
    """The run's training rows, read by reference (``columns`` only; None: all)."""
    data = run_data(run)
    return part_of(data, "train", columns) if "split_ref" in data else step_data(run, "split").train_df


def score_holdout(run: Run, rows: int = 5, model: Pipeline | None = None) -> pd.DataFrame:
    """The first ``rows`` raw hold-out rows (id, time, label) with the chosen model's score."""
    spec, frame = dataset_spec(run), holdout(run).head(rows)
    proba = models.predict_proba(model if model is not None else chosen_model(run), frame, spec)
    keys = [c for c in (spec.id, spec.time_column) if c]
    return frame[[*keys, spec.target.name]].assign(score=proba)


def card_html(run: Run, step: str = "join", card_id: str | None = None) -> str:
    """The HTML of the card on ``step``'s task (the one with ``card_id`` when the task has several)."""
    task = run[step].task  # a Task, not a pathspec: get_cards(str) switches the process to the global namespace
    if task is None:
        raise LookupError(f"{run.pathspec} has no {step} task")
    cards = get_cards(task, id=card_id)
    if len(cards) == 0:
        raise LookupError(f"no card{f' with id {card_id!r}' if card_id else ''} on {task.pathspec}")
    return cards[0].get()


def card_data(html: str) -> dict[str, Any]:
    """The component data embedded (base64 JSON) in a rendered card; the visible text is not in the HTML as is."""
    match = _CARD_DATA.search(html)
    if match is None:
        raise ValueError("no embedded card data (window.__MF_DATA__) in this HTML")
    return json.loads(base64.b64decode(match.group(1)))


GATE_COLUMNS = ["suite", "name", "passed", "gated", "metric", "threshold", "actual", "low", "high", "detail"]


GROUP_COLUMNS = ["attribute", "group", "rows", "positives", "selection_rate", "tpr", "fpr", "auc", "gated"]


HISTORY_COLUMNS = ["when", "kind", "from", "to", "who", "forced", "reason"]


REGISTRY_COLUMNS = ["role", "run_id", "model_name", "gates_passed", "started_at", "model_fingerprint", "tags"]


def run_branch(run: Run) -> str | None:
    """The ``@project`` branch the run recorded (system tag ``project_branch``), if any."""
    return _tag(run, "project_branch")


def challenger_run(flow: str = "TrainFlow", branch: str | None = None, run_id: str | None = None,
                   dataset: str | None = None) -> Run:
    """Run ``run_id`` (checked against ``branch`` when given), else the newest non-champion candidate of ``dataset``
    (default: config/dataset.yaml's) on ``branch``."""
    if run_id:
        return Registry(flow, branch, dataset=dataset).run(run_id) if branch else latest_run(flow, run_id)
    registry = Registry(flow, branch or project_branch(), dataset=dataset)
    found = [r for r in registry.runs(CANDIDATE) if CHAMPION not in r.user_tags]
    if not found:
        raise RunNotFound(f"no {flow} run tagged {CANDIDATE!r} other than the champion on branch {registry.branch}")
    return found[0]


def _gates(run: Run) -> Any:
    """The data of the run's ``judge`` task (the gates); LookupError for a run without one (older or unfinished)."""
    try:
        return step_data(run, "judge")
    except RegistryError:
        raise LookupError(f"{run.pathspec} has no judge step (a run from before the gates, or unfinished)") from None


def verdict(run: Run) -> dict[str, Any]:
    """The promotion decision: run, model, passed, failed gates, gate counts and the champion compared with."""
    data = _gates(run)
    summary = data.gate_summary
    return {"run": run.pathspec, "model_name": data.model_name, "passed": bool(data.gates_passed),
            "failed": list(summary["failed"]), "checks": len(data.gate_results),
            "gated": sum(bool(r["gated"]) for r in data.gate_results), "champion_run_id": data.champion_run_id,
            "tags": sorted(run.user_tags)}


def suite_summary(run: Run) -> pd.DataFrame:
    """Checks and failed gated checks per suite, one row each."""
    return pd.DataFrame.from_dict(_gates(run).gate_summary["suites"], orient="index").rename_axis("suite")


def gate_table(run: Run, suite: str | None = None) -> pd.DataFrame:
    """One row per gate result (optionally of one ``suite``), the interval split into ``low`` and ``high``."""
    rows = [{**r, "low": (r["interval"] or (None, None))[0], "high": (r["interval"] or (None, None))[1]}
            for r in _gates(run).gate_results if suite is None or r["suite"] == suite]
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def result_label(result: dict[str, Any]) -> str:
    """PASS or FAIL for a gated check; "not gated" for one that was only reported (never PASS)."""
    return "not gated" if not result["gated"] else "PASS" if result["passed"] else "FAIL"


def gate_view(run: Run, suite: str | None = None) -> pd.DataFrame:
    """``gate_table`` for people: a ``result`` column (PASS, FAIL, not gated) instead of ``passed``, and "-" where
    a reported-only check has no value, so no unjudged check reads as passed."""
    table = gate_table(run, suite)
    view = table.drop(columns=["passed"])
    view.insert(0, "result", [result_label(r) for r in table.to_dict("records")])
    for column in ("actual", "low", "high"):
        view[column] = view[column].astype(object).where(view[column].notna(), "-")
    return view


def gate_report(run: Run) -> dict[str, Any]:
    """The report behind the verdict: performance, fairness, robustness, efficiency, curves and the champion."""
    return _gates(run).gate_report


def comparison(run: Run) -> dict[str, Any] | None:
    """The champion comparison (``run_id``, ``comparison``, ``performance``, ``efficiency``), or None without a
    champion; ``comparison`` is None (and ``error`` says why) when the champion could not score the hold-out."""
    return gate_report(run).get("champion")


def comparison_table(run: Run) -> pd.DataFrame:
    """The primary-metric comparison with the champion as one row, with its gate and result; empty without one."""
    columns = ["champion_run_id", "metric", "champion", "challenger", "difference", "low", "high", "p_value",
               "method", "gate", "passed"]
    compared = comparison(run)
    if compared is None or compared["comparison"] is None:
        return pd.DataFrame(columns=columns)
    c = compared["comparison"]
    name = f"significantly_better[{c['metric']}]"
    result = next((r for r in _gates(run).gate_results if r["suite"] == "champion" and r["name"] == name), None)
    row = {"champion_run_id": compared["run_id"], **c, "gate": f"champion/{name}",
           "passed": None if result is None else bool(result["passed"])}
    return pd.DataFrame([row], columns=columns)


def performance_table(run: Run) -> pd.DataFrame:
    """Hold-out metrics with their intervals, challenger beside the champion (when there was one)."""
    report, compared = gate_report(run), comparison(run)
    sides = {"challenger": report["performance"], **({"champion": compared["performance"]} if compared else {})}
    table = {f"{side}{suffix}": {m: e[key] for m, e in perf.items()}
             for side, perf in sides.items() for suffix, key in (("", "point"), ("_low", "low"), ("_high", "high"))}
    return pd.DataFrame(table).rename_axis("metric")


def efficiency_table(run: Run) -> pd.DataFrame:
    """Latency, throughput, size and memory, challenger beside the champion (when there was one)."""
    report, compared = gate_report(run), comparison(run)
    sides = {"challenger": report["efficiency"], **({"champion": compared["efficiency"]} if compared else {})}
    return pd.DataFrame(sides).rename_axis("measure")


def group_table(run: Run) -> pd.DataFrame:
    """The challenger's per-group fairness metrics, one row per (attribute, group)."""
    rows = [{"attribute": attribute, **group} for attribute, groups in gate_report(run)["fairness"].items()
            for group in groups]
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)


def registry_state(flow: str = "TrainFlow", branch: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """Champion, candidates, archived runs and problems of a dataset's registry on ``branch`` (``Registry.show``)."""
    return Registry(flow, branch, dataset=dataset).show()


def registry_table(state: dict[str, Any]) -> pd.DataFrame:
    """The runs of a ``registry_state`` as rows with their ``role`` (champion, candidate, archived)."""
    roles = [("champion", [state["champion"]] if state["champion"] else []), ("candidate", state["candidates"]),
             ("archived", state["archived"])]
    rows = [{"role": role, **run, "tags": ", ".join(run["tags"])} for role, runs in roles for run in runs]
    return pd.DataFrame(rows, columns=REGISTRY_COLUMNS)


def registry_history(flow: str = "TrainFlow", branch: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """The audit events of ``dataset``'s registry on ``branch``, oldest first (``Registry.history()``)."""
    return pd.DataFrame(Registry(flow, branch, dataset=dataset).history(), columns=HISTORY_COLUMNS)


def _format_value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def registration(run: Run) -> str:
    """What the ``end`` step of a TrainFlow run did with its verdict: promoted, or kept as a candidate and why."""
    data = run_data(run)
    if "gate_summary" not in data:
        return "registered: no gates (a run from before them)"
    if "registry_event" in data and data.registry_event:
        return "registered: promoted to champion"
    failed = ", ".join(data.gate_summary["failed"]) or "none"
    champion = data.champion_run_id if "champion_run_id" in data else None
    unchanged = f"champion {champion} unchanged" if champion else "no champion set"
    return f"registered: kept as candidate, {unchanged}; failed: {failed}"


def train_lines(run: Run) -> list[str]:
    """A TrainFlow run: its chosen model, validation metrics, lineage, gate verdict and registration."""
    data = run_data(run)
    chosen = next(s for s in data.candidate_summaries if s["name"] == data.model_name)
    lines = [f"chosen model: {chosen['name']} ({chosen['type']}, sha256 {data.model_fingerprint})",
             "validation metrics: " + ", ".join(f"{k}={_format_value(v)}" for k, v in chosen["metrics"].items()),
             "lineage:\n" + "\n".join(f"  {key}: {value}" for key, value in lineage(run).items())]
    if "gate_summary" in data:
        summary = data.gate_summary
        lines.append("gates: " + ("passed" if summary["passed"] else "failed: " + ", ".join(summary["failed"])))
    return [*lines, registration(run)]


def score_lines(run: Run) -> list[str]:
    """A ScoreFlow run: the model it scored with, the partition it wrote and the manifest's totals."""
    data = run_data(run)
    plan, totals = data.plan, data.totals
    return [f"model: {data.model_run_used} ({data.model_name}, sha256 {data.model_fingerprint})",
            f"partition: {plan['output_root']}/dt={plan['date']}/ from {plan['input']}",
            f"totals: {totals['rows_in']} rows in, {totals['rows_out']} scored, {totals['rows_quarantined']} "
            f"quarantined ({totals['quarantine_rate']:.4%}) in {len(data.shard_results)} shards",
            f"decision threshold: {data.threshold}"]


def distill_lines(run: Run) -> list[str]:
    """A DistillFlow run: the teacher, every student against the rule, and which student serves (or why none)."""
    data = run_data(run)
    lines = [f"teacher: TrainFlow/{data.teacher_run_id} ({data.teacher_model_name}, hold-out AUC "
             f"{data.teacher_eval['auc']:.4f})", "students:"]
    lines += [f"  {r['name']} ({r['kind']}): AUC ratio {r['auc_ratio']:.4f}, cost ratio {r['cost_ratio']:.3f}: "
              + ("selected" if r["name"] == data.model_name else "; ".join(r["reasons"]) or "eligible")
              for r in data.candidates]
    if data.registry_event:
        return [*lines, f"serving: {data.model_name} (this run is tagged serving)"]
    if data.model_name:
        return [*lines, f"serving: not this run; {data.model_name} failed "
                        f"{', '.join(data.gate_summary['failed'])}"]
    return [*lines, "serving: not this run; no student met the rule"]


def monitor_lines(run: Run) -> list[str]:
    """A MonitorFlow run: its window, the model judged, active alerts, events, retraining and the state it wrote."""
    data = run_data(run)
    window = data.window
    active = ", ".join(f"{a['tier']} {a['rule']} (since {a['since']})" for a in data.active_alerts) or "none"
    tiers = pd.Series([e["tier"] for e in data.events], dtype=object).value_counts()
    retraining = data.retraining
    started = (f"; started {retraining['run']}: {retraining['status']}" if retraining and retraining.get("run")
               else f"; {retraining['status']}" if retraining else "")
    return [f"window: {window[0]} to {window[-1]} ({len(window)} dates)",
            f"model judged: {data.champion['run']}",
            f"active alerts: {active}",
            "events: " + (", ".join(f"{n} {tier}" for tier, n in tiers.items()) or "none"),
            f"retraining: {data.decision['strategy']}: {data.decision['reason']}{started}",
            f"state: {data.state_uri}"]


SUMMARIES = {"TrainFlow": train_lines, "ScoreFlow": score_lines, "DistillFlow": distill_lines,
             "MonitorFlow": monitor_lines}
CARD_STEPS = {"TrainFlow": "join", "ScoreFlow": "join", "DistillFlow": "join", "MonitorFlow": "end"}  # main card


def main(argv: list[str] | None = None) -> int:
    """CLI: what a run of any flow did (TrainFlow: its model, metrics, lineage and verdict; ScoreFlow: its partition
    and totals; DistillFlow: teacher, students, serving; MonitorFlow: window and alerts); optionally its cards."""
    parser = argparse.ArgumentParser(prog="python -m steps.reporting.runs", description=main.__doc__)
    parser.add_argument("flow", choices=sorted(SUMMARIES), help="the flow whose run to show")
    parser.add_argument("--run-id", default=None, help="run id (default: the latest successful run)")
    parser.add_argument("--card-out", type=Path, default=None, help="write the run's card as HTML here (TrainFlow: "
                        "the training card of join; ScoreFlow and DistillFlow: join; MonitorFlow: end; default: none)")
    parser.add_argument("--gates-card-out", type=Path, default=None, help="TrainFlow only: write the gates card "
                        "(judge step) as HTML here (default: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = console(__name__)
    try:
        run = latest_run(args.flow, args.run_id)
    except RunNotFound as err:
        logger.error("%s", err)
        return 1
    if not run.successful:
        logger.error("%s did not finish successfully: nothing to show", run.pathspec)
        return 1
    out.info("run: %s", run.pathspec)
    out.info("started: %s", started_at(run))
    for line in SUMMARIES[args.flow](run):
        out.info("%s", line)
    cards = [(args.card_out, CARD_STEPS.get(args.flow)), (args.gates_card_out, "judge" if args.flow == "TrainFlow"
                                                                              else None)]
    for path, step in cards:
        if path is None:
            continue
        if step is None:
            logger.error("%s has no such card", args.flow)
            return 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(card_html(run, step=step), encoding="utf-8")
        out.info("%s card: %s", step, path.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
