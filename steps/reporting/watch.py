"""Review the monitor (notebook 04): a MonitorFlow run, why it alerted, each signal's history, labels, retraining.

Read-only. The run's own window comes from its artifacts (``periods``: every measurement judged against its moving
baseline; ``events``, ``decision``, ``retraining``); the longer history (every stored period, realized performance
on late labels, the events of earlier runs) from the monitor's state root (``roots["state"]``) as it is now, which
later runs extend.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from metaflow import Run

from steps.monitoring.alerts import read_events
from steps.monitoring.state import load_state
from steps.registry.registry import run_data
from steps.reporting import charts
from steps.reporting.runs import latest_run, monitor_lines

MEASUREMENT_COLUMNS = ["period", "signal", "subject", "statistic", "value", "baseline", "threshold", "method",
                       "p_value", "breach"]


def monitor_run(run_id: str | None = None) -> Run:
    """The MonitorFlow run ``run_id``, or the latest successful one (current namespace first, then global)."""
    return latest_run("MonitorFlow", run_id)


def overview(run: Run) -> pd.Series:
    """The run in a few rows: window, model judged and its reference AUC, active alerts, events by tier, retraining,
    where the state is (the lines ``python -m steps.reporting.runs MonitorFlow`` prints)."""
    rows = dict(line.split(": ", 1) for line in monitor_lines(run))
    return pd.Series({"run": run.pathspec, **rows, "reference AUC": run_data(run).champion.get("reference_auc")},
                     name="value")


def history(run: Run) -> dict[str, Any]:
    """The monitor's state as stored now under the run's state root (every kept period, performance, rules)."""
    return load_state(run_data(run).roots["state"])


def signal_table(periods: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per period, one column per signal: ``BREACH: <what>``, ``ok``, or empty when not judged."""
    rows = {p["period"]: {"rows": p["rows"], **{name: (f"BREACH: {s['detail']}" if s["detail"] else "BREACH")
                                                  if s["breach"] else "ok" for name, s in p["signals"].items()}}
            for p in periods}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("period").fillna("")


def measurements(periods: list[dict[str, Any]], signal: str | None = None) -> pd.DataFrame:
    """Every judged measurement of ``periods`` (of ``signal`` only, when given), one row each."""
    rows = [{"period": p["period"], **m} for p in periods for m in p.get("measurements", [])
            if signal is None or m["signal"] == signal]
    return pd.DataFrame(rows, columns=MEASUREMENT_COLUMNS)


def _statistic(periods: list[dict[str, Any]], signal: str, statistic: str) -> pd.DataFrame:
    """The measurements of one statistic of one signal, every subject."""
    found = measurements(periods, signal)
    return found[found["statistic"] == statistic]


def breaches(periods: list[dict[str, Any]]) -> pd.DataFrame:
    """The measurements that breached, newest period first, then the furthest over its threshold (``x threshold``:
    the value over the threshold it was judged by): why the newest alert fired, first."""
    found = measurements(periods)
    found = found[found["breach"].astype(bool)].copy()
    found["x threshold"] = found["value"] / found["threshold"]
    return found.sort_values(["period", "x threshold"], ascending=[False, False]).reset_index(drop=True)


def pick_series(found: pd.DataFrame, periods: list[dict[str, Any]], signal: str | None = None,
                subject: str | None = None, statistic: str | None = None) -> tuple[str, str, str]:
    """(signal, subject, statistic) to follow: those given, else the first row of ``found`` (``breaches``), else the
    first feature's PSI; KeyError when no period measured anything."""
    top = found.iloc[0] if len(found) else None
    signal = signal or (str(top["signal"]) if top is not None else "feature_drift")
    statistic = statistic or (str(top["statistic"]) if top is not None else "psi")
    if not subject and top is not None:
        subject = str(top["subject"])
    if not subject:
        measured = _statistic(periods, signal, statistic)
        if measured.empty:
            raise KeyError(f"no period measured {signal} {statistic}: nothing to follow (were any dates scored?)")
        subject = str(sorted(measured["subject"].unique())[0])
    return signal, subject, statistic


def series(periods: list[dict[str, Any]], subject: str, statistic: str = "psi",
           signal: str = "feature_drift") -> pd.DataFrame:
    """One statistic of one subject over the periods (value, its moving baseline and threshold, breach); KeyError
    naming the subjects that have it when ``subject`` has none."""
    found = _statistic(periods, signal, statistic)
    mine = found[found["subject"] == subject]
    if mine.empty:
        raise KeyError(f"no {signal} {statistic} of {subject!r}; subjects with one: "
                       f"{', '.join(sorted(found['subject'].unique())) or 'none'}")
    return mine.set_index("period")[["value", "baseline", "threshold", "method", "breach"]]


def plot_series(frame: pd.DataFrame, title: str) -> charts.Chart:
    """The statistic per period against its threshold and baseline, breaches circled (a Vega-Lite chart)."""
    rows = [{"period": str(period), **{k: _number(r[k]) for k in ("value", "baseline", "threshold")},
             "breach": bool(r["breach"])} for period, r in frame.iterrows()]
    return charts.series(rows, title)


def _number(value: Any) -> float | None:
    """A float for JSON, None for a missing value."""
    return None if value is None or pd.isna(value) else float(value)


def performance(state: dict[str, Any], reference_auc: float | None = None) -> pd.DataFrame:
    """Realized performance per labelled period: rows, positives, AUC and its interval, against the reference."""
    rows = [{"period": p["period"], "labelled rows": p.get("rows"), "positives": p.get("positives"),
             "AUC": p.get("roc_auc"), "AUC low": (p.get("auc_interval") or [None, None])[0],
             "AUC high": (p.get("auc_interval") or [None, None])[1], "precision": p.get("precision"),
             "recall": p.get("recall")} for p in state["performance"]]
    frame = pd.DataFrame(rows, columns=["period", "labelled rows", "positives", "AUC", "AUC low", "AUC high",
                                        "precision", "recall"]).set_index("period")
    if reference_auc is not None:
        frame["vs reference"] = frame["AUC"] - reference_auc
    return frame


def group_performance(state: dict[str, Any], attribute: str, metric: str = "roc_auc") -> pd.DataFrame:
    """``metric`` per labelled period (rows) and level of ``attribute`` (columns)."""
    rows = {p["period"]: {level: g.get(metric) for level, g in p.get("groups", {}).get(attribute, {}).items()}
            for p in state["performance"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("period")


def event_history(run: Run, state: dict[str, Any]) -> pd.DataFrame:
    """Every event stored for the periods ``state`` keeps, by every run, oldest period first."""
    periods = sorted({p["period"] for p in state["periods"]})
    frame = pd.DataFrame(read_events(run_data(run).roots["state"], periods),
                         columns=["period", "tier", "rule", "kind", "detail", "run"])
    return frame.sort_values(["period", "run"], kind="stable").reset_index(drop=True)


def retraining(run: Run) -> pd.Series:
    """What the retraining strategy decided and, when a run was started, which, how it ended and whether promoted."""
    data = run_data(run)
    record = data.retraining or {}
    return pd.Series({
        "strategy": data.decision["strategy"],
        "fired": data.decision["fire"],
        "reason": data.decision["reason"],
        "signals": ", ".join(data.decision.get("signals", [])) or "none",
        "cooldown until": data.decision.get("cooldown_until") or "-",
        "run started": record.get("run") or "-",
        "status": record.get("status", "-"),
        "gates passed": record.get("gates_passed", "-"),
        "promoted": record.get("promoted", "-"),
    }, name="value")
