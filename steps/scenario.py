"""Production days for the monitoring demo and tests: daily input partitions and late labels from the generator.

Each day is drawn from ``steps.synth`` on its own seed; from ``covariate_drift_day`` (``concept_drift_day``) on,
the generator's covariate (concept) drift knob is on. Event times are squeezed into the day, transaction ids are
made unique across days, and the label (``is_fraud``) is split off into a late-label file.

CLI: ``python -m steps.scenario --out out/scenario --first-day 2026-01-01 --days 14 --covariate-drift-day 2026-01-13``
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steps import synth

logger = logging.getLogger(__name__)

ID_STRIDE = 10_000_000  # ids of day k are k * ID_STRIDE + 1, 2, ...


@dataclass(frozen=True)
class Scenario:
    """The production days to generate."""

    first_day: str = "2026-01-01"
    days: int = 14
    rows_per_day: int = 2000
    seed: int = 101
    covariate_drift_day: str | None = None
    concept_drift_day: str | None = None
    label_delay_days: int = 2
    concept_drift_strength: float = 2.0  # the generator's rule at 2: a fraud model loses ~13 AUC points
    covariate_drift_strength: float = 1.0  # the generator's covariate shift (more e-commerce, larger amounts, bursts)

    def dates(self) -> list[str]:
        """Every day, oldest first."""
        first = date.fromisoformat(self.first_day)
        return [(first + timedelta(days=i)).isoformat() for i in range(self.days)]


def day_frame(s: Scenario, day: str) -> pd.DataFrame:
    """One day's transactions (label included), drifted when the day is on or after a drift day."""
    ordinal = date.fromisoformat(day).toordinal()
    spec = synth.SynthSpec(rows=s.rows_per_day, seed=s.seed * 100_003 + ordinal, start=day, months=1,
                           covariate_drift_month=0 if s.covariate_drift_day and day >= s.covariate_drift_day else None,
                           concept_drift_month=0 if s.concept_drift_day and day >= s.concept_drift_day else None,
                           covariate_drift_strength=s.covariate_drift_strength,
                           concept_drift_strength=s.concept_drift_strength,
                           row_group_rows=max(s.rows_per_day, 1))
    frame = synth.generate(spec)
    start = pd.Timestamp(day, tz="UTC")
    span = (start.tz_localize(None).to_period("M") + 1).to_timestamp().tz_localize("UTC") - start  # synth's span
    frame["event_time"] = start + (frame["event_time"] - start) / (span / pd.Timedelta(days=1))
    frame["transaction_id"] = frame["transaction_id"] + (date.fromisoformat(day) - date(2000, 1, 1)).days * ID_STRIDE
    return frame


def write(s: Scenario, out: str | Path) -> dict[str, list[str]]:
    """Write ``<out>/incoming/dt=<day>/transactions.parquet`` and ``<out>/labels/dt=<day>/labels.parquet``, and
    ``<out>/labelled.parquet``: every day with its label (the warehouse's labelled table, to retrain on)."""
    out = Path(out)
    written: dict[str, list[str]] = {"incoming": [], "labels": [], "labelled": [str(out / "labelled.parquet")]}
    frames = []
    for day in s.dates():
        frame = day_frame(s, day)
        frames.append(frame)
        inputs = out / "incoming" / f"dt={day}" / "transactions.parquet"
        labels = out / "labels" / f"dt={day}" / "labels.parquet"
        for path in (inputs, labels):
            path.parent.mkdir(parents=True, exist_ok=True)
        frame.drop(columns=["is_fraud"]).to_parquet(inputs, index=False)
        delay = pd.to_timedelta(np.full(len(frame), s.label_delay_days), unit="D")
        pd.DataFrame({"transaction_id": frame["transaction_id"], "label": frame["is_fraud"].astype(np.int64),
                      "label_time": frame["event_time"] + delay}).to_parquet(labels, index=False)
        written["incoming"].append(str(inputs))
        written["labels"].append(str(labels))
    pd.concat(frames, ignore_index=True).to_parquet(out / "labelled.parquet", index=False)
    logger.info("wrote %d day(s) of inputs and labels under %s", s.days, out)
    return written


def backfill(s: Scenario, out: str | Path, predictions: str, days: int, branch: str, project: str,
             dataset: str | Path, score_config: str | Path) -> list[str]:
    """Score the first ``days`` days with the branch's champion in this process (``score.score_in_process``)."""
    from steps import score
    from steps.config import DatasetConfig, GatesConfig, ScoreConfig, load_file

    spec, cfg = load_file(DatasetConfig, dataset), load_file(ScoreConfig, score_config)
    threshold = cfg.decision_threshold or load_file(GatesConfig, Path(dataset).parent / "gates.yaml").decision_threshold
    model = score.resolve_model(None, branch, project, spec)
    done = []
    for day in s.dates()[:days]:
        manifest = score.score_in_process(str(Path(out) / "incoming" / f"dt={day}"), predictions, day, model, spec,
                                          cfg, threshold, "steps.scenario backfill")
        done.append(f"{predictions}/dt={day} ({manifest['totals']['rows_out']} rows, {model.run})")
    return done


# --------------------------------------------------------------------------------------------------- replays
@dataclass(frozen=True)
class Setting:
    """A model trained in process, its reference profile, and the configs a replay judges with."""

    spec: Any
    model: Any
    profile: dict[str, Any]
    monitor: Any
    score: Any
    threshold: float = 0.3


def trained_setting(config_dir: str | Path, rows: int = 30_000, seed: int = 5) -> Setting:
    """A LightGBM fitted on ``rows`` generated 2025 transactions, profiled on its temporal hold-out (no Metaflow)."""
    from steps import data, models, monitor, score
    from steps.config import (CandidateConfig, DatasetConfig, MonitorConfig, ReferenceConfig, ScoreConfig,
                              SplitConfig, load_file)

    config_dir = Path(config_dir)
    spec = load_file(DatasetConfig, config_dir / "dataset.yaml")
    frame = synth.generate(synth.SynthSpec(rows=rows, seed=seed, row_group_rows=10_000))
    parts = data.temporal_split(frame, spec, SplitConfig(validation_fraction=0.2, holdout_fraction=0.2))
    candidate = CandidateConfig(name="lgbm", type="lightgbm", params={"n_estimators": 60, "num_leaves": 15})
    pipeline, _ = models.fit(models.build_pipeline(candidate, spec, 1, 1), parts.train, spec, 1)
    blob = models.serialize(pipeline)
    model = score.ResolvedModel("TrainFlow/1", "lgbm", models.fingerprint(blob), spec.features, blob, pipeline)
    return Setting(spec, model, monitor.build_reference(pipeline, parts.holdout, spec, ReferenceConfig()),
                   load_file(MonitorConfig, config_dir / "monitor.yaml"), load_file(ScoreConfig, config_dir / "score.yaml"))


def write_and_score(setting: Setting, s: Scenario, out: str | Path) -> None:
    """Write the scenario's days and labels under ``out`` and score every day in process into ``out/pred``."""
    from steps import score

    out = Path(out)
    write(s, out)
    for day in s.dates():
        score.score_in_process(str(out / "incoming" / f"dt={day}"), str(out / "pred"), day, setting.model,
                               setting.spec, setting.score, setting.threshold)


def replay(setting: Setting, dates: list[str], out: str | Path,
           state: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Judge the scored ``dates`` one daily MonitorFlow run at a time (the functions its steps call, in order).

    Args:
        state: where an earlier replay stopped (a day's ``state``), to continue from it.

    Returns:
        Per day: its signals, the events fired, realized performance so far, the state after it, and seconds taken.
    """
    from steps import alerts, monitor

    cfg, spec, out = setting.monitor, setting.spec, Path(out)
    labels = monitor.read_labels(str(out / "labels"), spec.id_column, cfg.feedback)
    state = state or {"history": [], "performance": [], "rules": {}}
    history, performance, rules, days = list(state["history"]), state["performance"], state["rules"], []
    for day in dates:
        start = time.perf_counter()
        raw = [monitor.measure_period(day, str(out / "pred"), setting.profile, spec, cfg.max_rows_per_period,
                                      cfg.seed)]
        judged = monitor.judge_periods(raw, history, cfg.drift, cfg.baseline)
        performance = monitor.merge_performance(performance, monitor.feedback_window(
            day, str(out / "pred"), labels, spec, cfg.feedback, performance))
        concept = monitor.concept_signals(performance, setting.profile["performance"]["roc_auc"], cfg.feedback)
        periods = monitor.with_signals(judged, concept)
        rules, events, _ = alerts.evaluate(cfg.alerts.rules, rules, periods)
        history = history + judged
        days.append({"period": day, "signals": periods[-1]["signals"], "events": events, "performance": performance,
                     "state": {"history": history, "performance": performance, "rules": rules},
                     "seconds": time.perf_counter() - start})
    return days


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--first-day", default=Scenario.first_day)
    parser.add_argument("--days", type=int, default=Scenario.days)
    parser.add_argument("--rows-per-day", type=int, default=Scenario.rows_per_day)
    parser.add_argument("--seed", type=int, default=Scenario.seed)
    parser.add_argument("--covariate-drift-day")
    parser.add_argument("--concept-drift-day")
    parser.add_argument("--backfill", type=int, default=0, help="score the first N days with the champion now")
    parser.add_argument("--predictions", default="out/predictions", help="ScoreFlow's output root (backfill)")
    parser.add_argument("--branch", default=None, help="the flows' --branch (default: your user branch)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = Scenario(args.first_day, args.days, args.rows_per_day, args.seed, args.covariate_drift_day,
                 args.concept_drift_day)
    write(s, args.out)
    if args.backfill:
        from steps.registry import project_branch

        root = Path(__file__).resolve().parents[1] / "config"
        for line in backfill(s, args.out, args.predictions, args.backfill, project_branch(args.branch),
                             "tabular_mlops", root / "dataset.yaml", root / "score.yaml"):
            logger.info("backfilled %s", line)


if __name__ == "__main__":
    main()
