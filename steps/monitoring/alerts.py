"""Tiered alerts: rules over per-period signals with deduplication and hysteresis, and their sinks.

A rule *fires* once after ``consecutive`` breaching periods and stays active (no repeat while the condition
holds); it *resolves* after ``clear_after`` clean periods. A period that does not evaluate a signal (too few rows,
no labels yet) neither extends nor clears it. Sinks: the log, JSON objects under the monitor's state root, and a
Slack-compatible webhook (urllib3 with retries and backoff; a failing webhook is logged, never raised).

"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import urllib3

from steps.config.monitor import AlertRule, WebhookConfig
from steps.core.storage import join_uri, list_files, put_bytes, read_bytes

logger = logging.getLogger(__name__)


TIERS = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Event:
    """One alert event: a rule fired or resolved, or an informational notice."""

    id: str
    kind: str  # fired | resolved | info
    rule: str
    tier: str
    period: str
    value: float | None = None
    detail: str = ""
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for artifacts and JSON."""
        return asdict(self)

    def text(self) -> str:
        """One line for the log and the webhook."""
        verb = {"fired": "FIRING", "resolved": "resolved", "info": "info"}[self.kind]
        return f"[{self.tier.upper()}] {self.rule} {verb} on {self.period}: {self.detail}".rstrip(": ")


@dataclass
class RuleState:
    """Where one rule stands after a period."""

    active: bool = False
    streak: int = 0
    clean: int = 0
    since: str | None = None


def step_rule(rule: AlertRule, state: RuleState, signal: dict[str, Any] | None, period: str) -> tuple[RuleState,
                                                                                                   Event | None]:
    """Advance one rule by one period; returns the new state and the event it emits, if any."""
    if signal is None:
        return state, None
    new = RuleState(**asdict(state))
    if signal["breach"]:
        new.streak, new.clean = state.streak + 1, 0
        if not state.active and new.streak >= rule.consecutive:
            new.active, new.since = True, period
            detail = f"{signal.get('detail') or rule.signal} ({new.streak} consecutive period(s))"
            return new, Event(f"{rule.name}-{period}-fired", "fired", rule.name, rule.tier, period,
                              signal.get("value"), detail)
        return new, None
    new.streak, new.clean = 0, state.clean + 1 if state.active else 0
    if state.active and new.clean >= rule.clear_after:
        resolved = Event(f"{rule.name}-{period}-resolved", "resolved", rule.name, rule.tier, period,
                         signal.get("value"), f"clear for {new.clean} period(s), active since {state.since}")
        return RuleState(), resolved
    return new, None


def evaluate(rules: list[AlertRule], states: dict[str, dict[str, Any]], periods: list[dict[str, Any]]) -> tuple[
        dict[str, dict[str, Any]], list[Event], list[dict[str, Any]]]:
    """Run every rule over the periods (oldest first).

    Returns:
        The rule states after the last period, the events, and each period's state snapshot (for reruns).
    """
    current = {r.name: RuleState(**states.get(r.name, {})) for r in rules}
    events, snapshots = [], []
    for p in sorted(periods, key=lambda p: p["period"]):
        for rule in rules:
            current[rule.name], event = step_rule(rule, current[rule.name], p["signals"].get(rule.signal),
                                                  p["period"])
            if event is not None:
                events.append(event)
        snapshots.append({name: asdict(s) for name, s in current.items()})
    return {name: asdict(s) for name, s in current.items()}, events, snapshots


def active(states: dict[str, dict[str, Any]], rules: list[AlertRule]) -> list[dict[str, Any]]:
    """The rules currently firing, with their tier."""
    tiers = {r.name: r.tier for r in rules}
    return [{"rule": name, "tier": tiers.get(name, "info"), "since": s["since"]}
            for name, s in sorted(states.items()) if s.get("active")]


def info_event(rule: str, period: str, detail: str, key: str, context: dict[str, Any] | None = None) -> Event:
    """An informational notice (a promotion, a retraining) with a deterministic id."""
    return Event(f"{rule}-{key}", "info", rule, "info", period, None, detail, context or {})


def notice_events(notices: list[dict[str, Any]], period: str) -> list[Event]:
    """Info events for registry audit events (promotions, rollbacks) since the previous monitor run."""
    return [info_event(f"model_{e['kind']}", period, f"{e['kind']}: champion {e['from']} -> {e['to']} by "
                       f"{e['who']} ({e['reason']})", e["event_id"], {"when": e["when"]}) for e in notices]


def retraining_event(record: dict[str, Any], decision: dict[str, Any], period: str) -> Event:
    """An info event for a retraining the monitor started (critical when it could not be started)."""
    status = str(record.get("status", ""))
    failed = status.startswith("launch failed") or status in ("failed", "killed")  # not started, or it failed
    detail = f"TrainFlow {record.get('run')} {record.get('status')}: {decision['reason']}"
    if "promoted" in record:
        detail += "; promoted" if record["promoted"] else "; not promoted (gates)"
    key = f"{period}-{record.get('run') or 'none'}".replace("/", "-")
    if failed:
        return Event(f"retraining_failed-{key}", "fired", "retraining_failed", "critical", period, None, detail)
    if not record.get("run"):
        return info_event("retraining_due", period, f"retraining due ({record.get('status')}): {decision['reason']}",
                          key)
    return info_event("retraining_started", period, detail, key, {"run": record.get("run")})


def log_events(events: list[Event]) -> None:
    """Write each event to the log at a level matching its tier."""
    for e in events:
        level = {"critical": logging.ERROR, "warning": logging.WARNING}.get(e.tier, logging.INFO)
        logger.log(level if e.kind != "resolved" else logging.INFO, "%s", e.text())


def store_events(events: list[Event], state_root: str, run: str) -> list[str]:
    """Write each event as one JSON object ``<state_root>/events/dt=<period>/<id>.json`` (same id, same key)."""
    uris = []
    for e in events:
        uri = join_uri(state_root, "events", f"dt={e.period}", f"{e.id}.json")
        put_bytes(uri, json.dumps({**e.to_dict(), "run": run}, sort_keys=True).encode())
        uris.append(uri)
    return uris


def read_events(state_root: str, periods: list[str]) -> list[dict[str, Any]]:
    """The events ``store_events`` wrote for ``periods`` (by any run), period by period."""
    found = []
    for period in periods:
        folder = join_uri(state_root, "events", f"dt={period}")
        found += [json.loads(body) for name in list_files(folder) if name.endswith(".json")
                  and (body := read_bytes(join_uri(folder, name))) is not None]
    return found


def unraised(events: list[Event], state_root: str, replayed: list[str]) -> list[Event]:
    """``events`` less those of the ``replayed`` periods already stored: a backfill re-derives the later periods'
    transitions, and only one that came out differently is raised (and stored, and sent) again."""
    stored = {e["id"] for e in read_events(state_root, replayed)}
    return [e for e in events if e.period not in replayed or e.id not in stored]


def webhook_url(cfg: WebhookConfig) -> str | None:
    """The configured URL, else the one in ``cfg.url_env``; None when neither is set."""
    return cfg.url or os.environ.get(cfg.url_env) or None


def slack_payload(events: list[Event], run: str) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` for any client, plus one attachment per event."""
    colors = {"critical": "#d00000", "warning": "#ffb000", "info": "#3070d0"}
    return {
        "text": f"MonitorFlow {run}: {len(events)} alert event(s)",
        "attachments": [{"color": colors[e.tier] if e.kind != "resolved" else "#2eb886", "text": e.text(),
                         "fields": [{"title": "rule", "value": e.rule, "short": True},
                                    {"title": "period", "value": e.period, "short": True}]} for e in events],
    }


def post_webhook(url: str, payload: dict[str, Any], cfg: WebhookConfig) -> bool:
    """POST ``payload`` as JSON with retries and exponential backoff; True when delivered. Never raises."""
    retry = urllib3.Retry(total=cfg.retries, backoff_factor=cfg.backoff_s, status_forcelist=(429, 500, 502, 503, 504),
                          allowed_methods=None, raise_on_status=False)
    try:
        response = urllib3.PoolManager().request(
            "POST", url, body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"},
            timeout=urllib3.Timeout(total=cfg.timeout_s), retries=retry)
    except Exception as err:  # connection refused, timeouts after the retries, bad URL: never fail the run
        logger.warning("alert webhook failed after %d retries: %s", cfg.retries, type(err).__name__)
        return False
    if response.status >= 300:
        logger.warning("alert webhook answered HTTP %d after %d retries", response.status, cfg.retries)
        return False
    return True


def notify(events: list[Event], cfg: WebhookConfig, run: str, delivered: set[str]) -> list[str]:
    """Send the not-yet-delivered events at or above ``min_tier`` to the webhook; returns the ids delivered."""
    url = webhook_url(cfg)
    due = [e for e in events if TIERS[e.tier] >= TIERS[cfg.min_tier] and e.id not in delivered]
    if not due:
        return []
    if url is None:
        logger.info("%d alert event(s) not sent: no webhook configured (%s)", len(due), cfg.url_env)
        return []
    return [e.id for e in due] if post_webhook(url, slack_payload(due, run), cfg) else []
