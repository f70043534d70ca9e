"""Generated production days end to end: backfilled scoring, a trained setting, and the daily replay.

    python -m steps.ops.scenario --out out/scenario --first-day 2026-01-01 --days 14 --covariate-drift-day 2026-01-13
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.config.base import load_file
from steps.config.dataset import DatasetConfig
from steps.config.gates import GatesConfig
from steps.config.score import ScoreConfig
from steps.core.decision import decision_in_use
from steps.core.project import CONFIG_DIR, PROJECT
from steps.data import synth
from steps.data.scenario import Scenario, write
from steps.data.split import split_frame
from steps.modeling.reference import build_reference
from steps.monitoring.baseline import judge_periods
from steps.monitoring.drift import measure_period
from steps.monitoring.feedback import concept_signals, feedback_window, merge_performance, read_labels
from steps.monitoring.state import with_signals
from steps.scoring.resolve import ResolvedModel, resolve_model
from steps.scoring.shard import score_in_process

logger = logging.getLogger(__name__)


def backfill(s: Scenario, out: str | Path, predictions: str, days: int, branch: str, project: str,
             dataset: str | Path, score_config: str | Path) -> list[str]:
    """Score the first ``days`` days with the dataset's champion in this process (``score_in_process``), at the
    champion's own decision threshold and review band."""
    spec, cfg = load_file(DatasetConfig, dataset), load_file(ScoreConfig, score_config)
    gates = load_file(GatesConfig, Path(dataset).parent / "gates.yaml")
    model = resolve_model(None, branch, project, spec)
    decision = decision_in_use(model.decision, None, gates.decision_threshold, gates.review.band)
    done = []
    for day in s.dates()[:days]:
        manifest = score_in_process(str(Path(out) / "incoming" / f"dt={day}"), predictions, day, model, spec,
                                    cfg, decision, "steps.ops.scenario backfill")
        done.append(f"{predictions}/dt={day} ({manifest['totals']['rows_out']} rows, {model.run})")
    return done


@dataclass(frozen=True)
class Setting:
    """A model trained in process, its reference profile, and the configs a replay judges with."""

    spec: Any
    model: Any
    profile: dict[str, Any]
    monitor: Any
    score: Any
    threshold: float = 0.3  # the decision threshold the replayed days are scored at (review band: [0.4, 0.6])


def trained_setting(config_dir: str | Path, rows: int = 30_000, seed: int = 5) -> Setting:
    """A LightGBM fitted on ``rows`` generated 2025 transactions, profiled on its temporal hold-out (no Metaflow)."""
    from steps.config.base import load_file
    from steps.config.dataset import DatasetConfig
    from steps.config.monitor import MonitorConfig
    from steps.config.score import ScoreConfig
    from steps.config.train import CandidateConfig, ReferenceConfig, SplitSpec
    from steps.modeling import models

    config_dir = Path(config_dir)
    spec = load_file(DatasetConfig, config_dir / "dataset.yaml")
    frame = synth.generate(synth.SynthSpec(rows=rows, seed=seed, row_group_rows=10_000))
    parts = split_frame(frame, spec, SplitSpec(validation_fraction=0.2, holdout_fraction=0.2))
    candidate = CandidateConfig(name="lgbm", type="lightgbm", params={"n_estimators": 60, "num_leaves": 15})
    pipeline, _ = models.fit(models.build_pipeline(candidate, spec, 1, 1), parts.train, spec, 1)
    blob = models.serialize(pipeline)
    model = ResolvedModel("TrainFlow/1", "lgbm", models.fingerprint(blob), spec.features, blob, pipeline)
    return Setting(spec, model, build_reference(pipeline, parts.holdout, spec, ReferenceConfig()),
                   load_file(MonitorConfig, config_dir / "monitor.yaml"),
                   load_file(ScoreConfig, config_dir / "score.yaml"))


def write_and_score(setting: Setting, s: Scenario, out: str | Path) -> None:
    """Write the scenario's days and labels under ``out`` and score every day in process into ``out/pred``."""
    out = Path(out)
    write(s, out)
    for day in s.dates():
        score_in_process(str(out / "incoming" / f"dt={day}"), str(out / "pred"), day, setting.model,
                         setting.spec, setting.score, {"threshold": setting.threshold, "review_band": [0.4, 0.6],
                                                       "source": "scenario"})


def replay(setting: Setting, dates: list[str], out: str | Path,
           state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Judge the scored ``dates`` one daily MonitorFlow run at a time (the functions its steps call, in order).

    Args:
        state: where an earlier replay stopped (a day's ``state``), to continue from it.

    Returns:
        Per day: its signals, the events fired, realized performance so far, the state after it, and seconds taken.
    """
    from steps.monitoring import alerts

    cfg, spec, out = setting.monitor, setting.spec, Path(out)
    labels = read_labels(str(out / "labels"), spec.id_column, cfg.feedback)
    state = state or {"history": [], "performance": [], "rules": {}}
    history, performance, rules, days = list(state["history"]), state["performance"], state["rules"], []
    for day in dates:
        start = time.perf_counter()
        raw = [measure_period(day, str(out / "pred"), setting.profile, spec, cfg.max_rows_per_period,
                              cfg.seed)]
        judged = judge_periods(raw, history, cfg.drift, cfg.baseline)
        performance = merge_performance(performance, feedback_window(
            day, str(out / "pred"), labels, spec, cfg.feedback, performance))
        concept = concept_signals(performance, setting.profile["performance"]["roc_auc"], cfg.feedback)
        periods = with_signals(judged, concept)
        rules, events, _ = alerts.evaluate(cfg.alerts.rules, rules, periods)
        history = history + judged
        days.append({"period": day, "signals": periods[-1]["signals"], "events": events, "performance": performance,
                     "state": {"history": history, "performance": performance, "rules": rules},
                     "seconds": time.perf_counter() - start})
    return days


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m steps.ops.scenario", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the generated days (incoming/dt=YYYY-MM-DD/) and "
                        "late labels (labels/); required")
    parser.add_argument("--first-day", default=Scenario.first_day, help="first generated day, YYYY-MM-DD (default: "
                        "%(default)s)")
    parser.add_argument("--days", type=int, default=Scenario.days, help="days to generate (default: %(default)s)")
    parser.add_argument("--rows-per-day", type=int, default=Scenario.rows_per_day, help="transactions per day "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=Scenario.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--covariate-drift-day", help="first day with covariate drift, YYYY-MM-DD (default: none)")
    parser.add_argument("--concept-drift-day", help="first day on which the fraud rule changes, YYYY-MM-DD (default: "
                        "none)")
    parser.add_argument("--backfill", type=int, default=0, help="score the first N days with the champion now, in "
                        "this process (default: %(default)s, none)")
    parser.add_argument("--predictions", default="out/predictions", help="ScoreFlow's output root the backfill "
                        "writes to (default: %(default)s)")
    parser.add_argument("--branch", default=None, help="the flows' --branch whose champion backfills (default: your "
                        "user branch, user.<you>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = Scenario(args.first_day, args.days, args.rows_per_day, args.seed, args.covariate_drift_day,
                 args.concept_drift_day)
    write(s, args.out)
    if args.backfill:
        from steps.registry.registry import project_branch

        root = CONFIG_DIR
        for line in backfill(s, args.out, args.predictions, args.backfill, project_branch(args.branch),
                             PROJECT, root / "dataset.yaml", root / "score.yaml"):
            logger.info("backfilled %s", line)


if __name__ == "__main__":
    main()
