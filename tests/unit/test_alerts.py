"""Alert rules (dedup, hysteresis), events and sinks (steps/alerts.py), with a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from steps.config import AlertRule, WebhookConfig
from steps.monitoring import alerts

WARN3 = AlertRule(name="drift", tier="warning", signal="feature_drift", consecutive=3, clear_after=2)


def _periods(breaches: list[bool | None]) -> list[dict]:
    return [{"period": f"2026-01-{i + 1:02d}",
             "signals": {} if b is None else {"feature_drift": {"breach": b, "value": float(b), "detail": "x"}}}
            for i, b in enumerate(breaches)]


def _kinds(events: list[alerts.Event]) -> list[tuple[str, str]]:
    return [(e.kind, e.period) for e in events]


def test_a_rule_fires_once_after_consecutive_breaches() -> None:
    _, events, _ = alerts.evaluate([WARN3], {}, _periods([True, True, True, True, True]))
    assert _kinds(events) == [("fired", "2026-01-03")]


def test_an_interrupted_streak_does_not_fire() -> None:
    _, events, _ = alerts.evaluate([WARN3], {}, _periods([True, True, False, True, True]))
    assert events == []


def test_resolution_needs_clear_after_clean_periods() -> None:
    _, events, _ = alerts.evaluate([WARN3], {}, _periods([True] * 3 + [False, True, False, False]))
    assert _kinds(events) == [("fired", "2026-01-03"), ("resolved", "2026-01-07")]


def test_unevaluated_periods_neither_extend_nor_clear() -> None:
    states, events, _ = alerts.evaluate([WARN3], {}, _periods([True, True, None, True]))
    assert _kinds(events) == [("fired", "2026-01-04")]
    states, events, _ = alerts.evaluate([WARN3], states, _periods([None, None, None]))
    assert events == [] and states["drift"]["active"]


def test_state_carries_across_runs_without_refiring() -> None:
    states, first, snaps = alerts.evaluate([WARN3], {}, _periods([True, True, True]))
    states, second, _ = alerts.evaluate([WARN3], states, _periods([True, True]))
    assert len(first) == 1 and second == [] and len(snaps) == 3 and snaps[-1]["drift"]["active"]


def test_event_ids_are_deterministic() -> None:
    _, a, _ = alerts.evaluate([WARN3], {}, _periods([True] * 3))
    _, b, _ = alerts.evaluate([WARN3], {}, _periods([True] * 3))
    assert [e.id for e in a] == [e.id for e in b] == ["drift-2026-01-03-fired"]


def test_active_lists_firing_rules_with_their_tier() -> None:
    states, _, _ = alerts.evaluate([WARN3], {}, _periods([True] * 3))
    assert alerts.active(states, [WARN3]) == [{"rule": "drift", "tier": "warning", "since": "2026-01-03"}]


def test_store_events_writes_one_json_object_per_event(tmp_path) -> None:
    event = alerts.Event("drift-2026-01-03-fired", "fired", "drift", "warning", "2026-01-03", 2.0, "a, b")
    uris = alerts.store_events([event, event], str(tmp_path), "MonitorFlow/1")
    assert uris[0] == uris[1]
    body = json.loads((tmp_path / "events" / "dt=2026-01-03" / "drift-2026-01-03-fired.json").read_text())
    assert body["rule"] == "drift" and body["run"] == "MonitorFlow/1" and body["tier"] == "warning"


def test_read_events_gives_back_what_store_events_wrote_for_the_periods_asked(tmp_path) -> None:
    first = alerts.Event("drift-2026-01-03-fired", "fired", "drift", "warning", "2026-01-03", 2.0, "a, b")
    second = alerts.Event("drift-2026-01-05-resolved", "resolved", "drift", "warning", "2026-01-05", 0.0, "")
    alerts.store_events([first], str(tmp_path), "MonitorFlow/1")
    alerts.store_events([second], str(tmp_path), "MonitorFlow/2")
    (tmp_path / "events" / "dt=2026-01-03" / ".DS_Store").write_text("not an event")
    found = alerts.read_events(str(tmp_path), ["2026-01-03", "2026-01-04", "2026-01-05"])
    assert [(e["id"], e["run"]) for e in found] == [(first.id, "MonitorFlow/1"), (second.id, "MonitorFlow/2")]
    assert alerts.read_events(str(tmp_path), ["2026-01-05"]) == found[1:]


def test_slack_payload_has_text_and_one_attachment_per_event() -> None:
    events = [alerts.Event("a", "fired", "drift", "critical", "2026-01-01", 1.0, "amount")]
    payload = alerts.slack_payload(events, "MonitorFlow/1")
    assert "MonitorFlow/1" in payload["text"] and len(payload["attachments"]) == 1
    assert "[CRITICAL] drift FIRING on 2026-01-01: amount" == payload["attachments"][0]["text"]


FAST = WebhookConfig(retries=2, backoff_s=0.01, timeout_s=2.0)


def test_webhook_delivers_json(webhook) -> None:
    assert alerts.post_webhook(webhook.url, {"text": "hello"}, FAST) is True
    assert webhook.received == [{"text": "hello"}]


def test_webhook_retries_server_errors(webhook) -> None:
    webhook.fail_next = 2  # two 503s, then success
    assert alerts.post_webhook(webhook.url, {"text": "retry"}, FAST) is True
    assert webhook.received == [{"text": "retry"}] and webhook.attempts == 3


def test_a_failing_webhook_returns_false_and_never_raises(webhook) -> None:
    webhook.fail_next = 10
    assert alerts.post_webhook(webhook.url, {"text": "x"}, FAST) is False
    assert alerts.post_webhook("http://127.0.0.1:9/closed", {"text": "x"}, FAST) is False  # nothing listens on 9


def test_notify_sends_only_new_events_at_or_above_min_tier(webhook, monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_TEST_HOOK", webhook.url)
    cfg = WebhookConfig(url_env="MLOPS_TEST_HOOK", min_tier="warning", retries=0)
    events = [alerts.Event("w", "fired", "drift", "warning", "2026-01-01"),
              alerts.Event("i", "info", "note", "info", "2026-01-01"),
              alerts.Event("old", "fired", "drift", "critical", "2026-01-01")]
    assert alerts.notify(events, cfg, "MonitorFlow/1", delivered={"old"}) == ["w"]
    assert [a["text"] for a in webhook.received[0]["attachments"]] == [events[0].text()]


def test_notify_without_a_url_sends_nothing(monkeypatch) -> None:
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK", raising=False)
    events = [alerts.Event("w", "fired", "drift", "critical", "2026-01-01")]
    assert alerts.notify(events, WebhookConfig(), "MonitorFlow/1", set()) == []


@pytest.mark.parametrize(("record", "rule", "tier"), [
    ({"run": "TrainFlow/5", "status": "successful", "promoted": False}, "retraining_started", "info"),
    ({"run": None, "status": "not started (launcher none)"}, "retraining_due", "info"),
    ({"run": None, "status": "launch failed: RuntimeError: boom"}, "retraining_failed", "critical"),
])
def test_retraining_event(record, rule, tier) -> None:
    event = alerts.retraining_event(record, {"reason": "feature_drift breached"}, "2026-01-02")
    assert (event.rule, event.tier) == (rule, tier)


def test_registry_events_become_info_notices_with_stable_ids() -> None:
    audit = [{"event_id": "e1", "kind": "promote", "from": "10", "to": "12", "who": "ci", "reason": "every gate passed",
              "when": "2026-01-02T03:04:05Z"},
             {"event_id": "e2", "kind": "rollback", "from": "12", "to": "10", "who": "ana", "reason": "bad",
              "when": "2026-01-02T04:00:00Z"}]
    notices = alerts.notice_events(audit, "2026-01-02")
    assert [(n.rule, n.tier, n.kind, n.id) for n in notices] == [
        ("model_promote", "info", "info", "model_promote-e1"), ("model_rollback", "info", "info", "model_rollback-e2")]
    assert "champion 12 -> 10 by ana (bad)" in notices[1].detail
