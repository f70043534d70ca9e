"""The monitor's state file (history, alert states, performance) and the window's signals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from steps.core.errors import UserError
from steps.core.storage import WriteConflict, join_uri, read_version, replace_if


def with_signals(periods: list[dict[str, Any]], extra: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The periods with run-level signals (concept drift, AUC drop) added to the newest one."""
    if not periods:
        return periods
    newest = periods[-1]
    return [*periods[:-1], {**newest, "signals": {**newest["signals"], **extra}}]


def window_signals(periods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One flag per signal for the whole window: breached when any period breached (what the retraining reads)."""
    merged: dict[str, dict[str, Any]] = {}
    for p in periods:
        for name, sig in p["signals"].items():
            if name not in merged or (sig["breach"] and not merged[name]["breach"]):
                merged[name] = {**sig, "period": p["period"]}
    return merged


def false_alarm_rate(periods: list[dict[str, Any]], signals: tuple[str, ...] = ("feature_drift",
                                                                                 "prediction_drift")) -> float:
    """Share of periods in which any of ``signals`` breached (on stable data: the false-alarm rate)."""
    judged = [p for p in periods if any(s in p["signals"] for s in signals)]
    hits = [p for p in judged if any(p["signals"].get(s, {}).get("breach") for s in signals)]
    return len(hits) / len(judged) if judged else 0.0


STATE = "state.json"


def empty_state() -> dict[str, Any]:
    """The state of a monitor that has never run."""
    return {"version": 1, "periods": [], "rules": {}, "performance": [], "retrain": None, "delivered": [],
            "last_run": None}


def _stored(root: str) -> tuple[dict[str, Any], str | None]:
    """The stored state and its version (``storage.read_version``; None and an empty state when there is none)."""
    found = read_version(join_uri(root, STATE))
    return (json.loads(found[0]), found[1]) if found is not None else (empty_state(), None)


def load_state(root: str) -> dict[str, Any]:
    """``<root>/state.json`` (history, alert states, last retraining), or an empty state."""
    return _stored(root)[0]


def rules_before(state: dict[str, Any], first_period: str) -> dict[str, dict[str, Any]]:
    """Alert-rule states as they stood before ``first_period`` (so a rerun of a date does not count it twice)."""
    earlier = [p for p in state["periods"] if p["period"] < first_period and "rules_after" in p]
    if earlier:
        return earlier[-1]["rules_after"]
    return {} if any(p["period"] >= first_period for p in state["periods"]) else state.get("rules", {})


def periods_after(state: dict[str, Any], last_period: str) -> list[dict[str, Any]]:
    """The stored periods newer than ``last_period``. A run of an earlier window (a backfill) replays their stored
    signals through the alert rules after its own periods, so the rule states it saves are those after the newest
    period, not rewound to the window's end (an alert that fired later would be cleared without a word)."""
    return [p for p in state["periods"] if p["period"] > last_period]


def updated_state(state: dict[str, Any], judged: list[dict[str, Any]], snapshots: list[dict[str, Any]],
                  rules: dict[str, Any], performance: list[dict[str, Any]], keep: int) -> dict[str, Any]:
    """The state with the window's periods (and their rule snapshots) replacing any earlier copies."""
    window = {p["period"] for p in judged}
    compact = [{k: p[k] for k in ("period", "scored", "rows", "measurements", "signals", "model")} | {"rules_after": s}
               for p, s in zip(sorted(judged, key=lambda p: p["period"]), snapshots, strict=True)]
    periods = sorted([p for p in state["periods"] if p["period"] not in window] + compact, key=lambda p: p["period"])
    perf_days = {p["period"] for p in performance}
    perf = sorted([p for p in state["performance"] if p["period"] not in perf_days] + performance,
                  key=lambda p: p["period"])
    return {**state, "periods": periods[-keep:], "rules": rules, "performance": perf[-keep:]}


def finished_state(state: dict[str, Any], judged: list[dict[str, Any]], snapshots: list[dict[str, Any]],
                   rules: dict[str, Any], performance: list[dict[str, Any]], retraining: dict[str, Any] | None,
                   delivered: list[str], run: str, keep: int,
                   replayed: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The state to save at the end of a run: history, rule states, retraining record, delivered event ids.

    ``snapshots``: the rule states after each of ``judged`` and then of ``replayed`` (:func:`periods_after`).
    """
    new = updated_state(state, [*judged, *(replayed or [])], snapshots, rules, performance, keep)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if retraining is not None and retraining.get("run"):
        new["retrain"] = {**retraining, "at": now}
    new["delivered"] = (list(state["delivered"]) + list(delivered))[-2000:]
    new["last_run"] = {"run": run, "at": now, "window": [judged[0]["period"], judged[-1]["period"]] if judged else []}
    return new


def summary(periods: list[dict[str, Any]], events: list[dict[str, Any]], active: list[dict[str, Any]],
            decision: dict[str, Any], retraining: dict[str, Any] | None, state_uri: str) -> str:
    """A few lines for the end of a run: what breached, what fired, what was started, where the state is."""
    lines = []
    for p in periods:
        hits = [f"{name} ({s['detail']})" if s.get("detail") else name
                for name, s in p["signals"].items() if s.get("breach")]
        lines.append(f"{p['period']}: {p['rows']} rows; " + ("breached: " + "; ".join(hits) if hits else "clean"))
    lines += [f"event: {e['tier']} {e['rule']} {e['kind']} ({e['period']})" for e in events]
    lines.append("active alerts: " + (", ".join(f"{a['rule']} ({a['tier']})" for a in active) or "none"))
    started = f" -> {retraining['run']} {retraining['status']}" if retraining and retraining.get("run") else (
        f" ({retraining['status']})" if retraining else "")
    lines.append(f"retraining: {decision['reason']}{started}")
    lines.append(f"state: {state_uri}")
    return "\n".join(lines)


class StateChanged(UserError):
    """Another run saved the monitor's state after this run loaded it."""


def check_unchanged(root: str, loaded: dict[str, Any], run: str) -> str | None:
    """StateChanged unless the stored state is still the one ``run`` loaded (or ``run`` saved it: a retried end);
    returns the stored state's version, for :func:`save_state`'s conditional write.

    A run that saved its state over a newer one would undo that run's periods, alert states, retraining record and
    delivered events (an old run resumed after a newer one, or two runs at the same time).
    """
    stored, version = _stored(root)
    last = stored.get("last_run") or {}
    if stored == loaded or last.get("run") == run:
        return version
    how = f"{last['run']} saved it at {last.get('at')}" if last.get("run") else "it was removed or replaced"
    raise StateChanged(f"{join_uri(root, STATE)} changed since {run} loaded it: {how}. Saving this run's state "
                       "would undo that run's periods and alerts, so this run stops here; run the window again.")


def save_state(root: str, state: dict[str, Any], loaded: dict[str, Any], run: str) -> str:
    """Write ``<root>/state.json`` atomically, only over the state ``run`` loaded (:func:`check_unchanged`); returns
    its URI.

    A compare-and-swap (``storage.replace_if``: S3's ``If-Match``, a lock file locally): a run that saved between
    the check and this write, even a moment before, makes this one fail with StateChanged instead of being undone.
    """
    uri = join_uri(root, STATE)
    version = check_unchanged(root, loaded, run)
    try:
        replace_if(uri, json.dumps(state, sort_keys=True, default=str).encode(), version)
    except WriteConflict:
        check_unchanged(root, loaded, run)  # names the run that saved in between
        raise StateChanged(f"{uri} changed while {run} saved it; this run stops here; run the window again.") from None
    return uri
