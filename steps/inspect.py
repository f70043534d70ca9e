"""Read TrainFlow runs through the Metaflow Client: summaries, lineage, the chosen model and its card.

For notebooks and the command line (the flows never import this module)::

    python -m steps.inspect TrainFlow [--run-id ID] [--card-out out/train_card.html]

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from metaflow import Flow, Run, get_metadata, get_namespace, namespace
from metaflow.cards import get_cards
from metaflow.exception import MetaflowNamespaceMismatch, MetaflowNotFound
from sklearn.pipeline import Pipeline

from steps import models
from steps.config import DatasetConfig, load

logger = logging.getLogger(__name__)

_CARD_DATA = re.compile(r'window\.__MF_DATA__\["[^"]+"\]\s*=\s*"([A-Za-z0-9+/=]+)"')


class RunNotFound(LookupError):
    """No run matches the request in the current namespace or in the global one."""


@contextmanager
def _global_namespace() -> Iterator[None]:
    """Switch to the global namespace for the block, then restore the caller's namespace."""
    previous = get_namespace()
    namespace(None)
    try:
        yield
    finally:
        namespace(previous)


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
            with _global_namespace():
                run = _find(flow_name, run_id)
    except MetaflowNotFound as err:
        raise RunNotFound(f"no {what} in metadata {get_metadata()} (working directory {Path.cwd()}): {err}") from err
    if run is None:
        raise RunNotFound(f"no {what} in any namespace")
    if not run.successful:
        logger.warning("%s did not finish successfully; its artifacts may be incomplete", run.pathspec)
    return run


def training_summary(run: Run) -> pd.DataFrame:
    """One row per candidate: name, type, validation metrics, fit time, size, fingerprint and a chosen flag."""
    chosen = run.data.model_name
    rows = [{"name": s["name"], "type": s["type"], **s["metrics"], "fit_seconds": s["fit_seconds"],
             "train_rows": s["train_rows"], "size_bytes": s["size_bytes"], "fingerprint": s["fingerprint"],
             "chosen": s["name"] == chosen} for s in run.data.candidate_summaries]
    return pd.DataFrame(rows)


def _tag(run: Run, prefix: str) -> str | None:
    """The value of the system tag ``prefix:value`` on ``run``, if any."""
    return next((t.split(":", 1)[1] for t in sorted(run.system_tags) if t.startswith(prefix + ":")), None)


def lineage(run: Run) -> dict[str, Any]:
    """Where the run's model came from: run, user, project branch, time, then the dataset lineage it recorded."""
    return {"run": run.pathspec, "user": _tag(run, "user"), "project_branch": _tag(run, "project_branch"),
            "created_at": str(run.created_at), "model_fingerprint": run.data.model_fingerprint,
            **run.data.lineage}


def split_summary(run: Run) -> pd.DataFrame:
    """Rows, positives and time range of the train / validation / hold-out parts, one row each."""
    return pd.DataFrame.from_dict(run.data.split_summary, orient="index")


def dataset_spec(run: Run) -> DatasetConfig:
    """The dataset config the run was trained with (its ``dataset`` Config artifact)."""
    return load(DatasetConfig, run.data.dataset)


def chosen_model(run: Run) -> Pipeline:
    """The chosen pipeline, loaded only if its bytes match the fingerprint recorded by the run."""
    return models.deserialize(run.data.model_blob, run.data.model_fingerprint)


def score_holdout(run: Run, rows: int = 5, model: Pipeline | None = None) -> pd.DataFrame:
    """The first ``rows`` raw hold-out rows (id, time, label) with the chosen model's score."""
    spec, frame = dataset_spec(run), run.data.holdout_df.head(rows)
    proba = models.predict_proba(model if model is not None else chosen_model(run), frame, spec)
    return frame[[spec.id_column, spec.time, spec.target.name]].assign(score=proba)


def card_html(run: Run, step: str = "join", card_id: str | None = None) -> str:
    """The HTML of the card on ``step``'s task (the one with ``card_id`` when the task has several)."""
    task = run[step].task  # a Task, not a pathspec: get_cards(str) switches the process to the global namespace
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


def _format_value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    """CLI: print a run's chosen model, validation metrics and lineage; optionally write its card."""
    parser = argparse.ArgumentParser(prog="python -m steps.inspect", description=main.__doc__)
    parser.add_argument("flow", help="flow name, e.g. TrainFlow")
    parser.add_argument("--run-id", default=None, help="run id (default: the latest successful run)")
    parser.add_argument("--card-out", type=Path, default=None, help="write the join step's card HTML here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run = latest_run(args.flow, args.run_id)
    except RunNotFound as err:
        logger.error("%s", err)
        return 1
    if not run.successful:
        logger.error("%s did not finish successfully: no chosen model to show", run.pathspec)
        return 1
    chosen = next(s for s in run.data.candidate_summaries if s["name"] == run.data.model_name)
    print(f"run: {run.pathspec}")
    print(f"chosen model: {chosen['name']} ({chosen['type']}, sha256 {run.data.model_fingerprint})")
    print("validation metrics: " + ", ".join(f"{k}={_format_value(v)}" for k, v in chosen["metrics"].items()))
    print("lineage:")
    for key, value in lineage(run).items():
        print(f"  {key}: {value}")
    if args.card_out is not None:
        args.card_out.parent.mkdir(parents=True, exist_ok=True)
        args.card_out.write_text(card_html(run), encoding="utf-8")
        print(f"card: {args.card_out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
