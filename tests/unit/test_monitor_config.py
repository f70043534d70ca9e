"""config/monitor.yaml and its schema: the shipped file parses; bad keys and values are named with the file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from steps.config import ConfigError, MonitorConfig, load_file, parse_monitor, parse_text

ROOT = Path(__file__).resolve().parents[2]
RULES = {"alerts": {"rules": [{"name": "drift", "tier": "warning", "signal": "feature_drift"}]}}


def test_shipped_monitor_config_parses_with_every_documented_rule() -> None:
    cfg = load_file(MonitorConfig, ROOT / "config" / "monitor.yaml")
    names = {r.name: r for r in cfg.alerts.rules}
    assert names["concept_drift"].tier == "critical" and names["scoring_failed"].tier == "critical"
    assert names["feature_drift"].consecutive == 3 and names["feature_drift"].tier == "warning"
    assert (cfg.feedback.drop, cfg.feedback.consecutive) == (0.02, 3)
    assert cfg.retrain.strategy == "hybrid"
    assert cfg.alerts.webhook.url is None  # the URL (a secret) comes from the environment by default


@pytest.mark.parametrize(("doc", "fragment"), [
    ({**RULES, "windw_days": 3}, "windw_days: unknown key (did you mean 'window_days'?)"),
    ({**RULES, "window_days": 0}, "window_days: Input should be greater than or equal to 1"),
    ({"alerts": {"rules": []}}, "alerts.rules: List should have at least 1 item"),
    ({"alerts": {"rules": [{"name": "x", "tier": "urgent", "signal": "feature_drift"}]}}, "alerts.rules.0.tier"),
    ({"alerts": {"rules": [{"name": "x", "tier": "info", "signal": "vibes"}]}}, "alerts.rules.0.signal"),
    ({"alerts": {"rules": [RULES["alerts"]["rules"][0]] * 2}}, "alert rule names must be unique"),
    ({**RULES, "baseline": {"history": 3, "min_history": 5}}, "min_history (5) is greater than history (3)"),
    ({**RULES, "retrain": {"strategy": "always"}}, "retrain.strategy"),
    ({**RULES, "feedback": {"drop": 2}}, "feedback.drop"),
    ({}, "alerts: missing required key"),
])
def test_bad_monitor_configs_name_the_key(doc, fragment) -> None:
    with pytest.raises(ConfigError) as info:
        parse_text(MonitorConfig, yaml.safe_dump(doc), "ops/monitor.yaml")
    message = str(info.value)
    assert "ops/monitor.yaml" in message and fragment in message


def test_the_metaflow_parser_names_the_file_given_on_the_command_line(monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["flows/monitor_flow.py", "--config", "monitor", "mine.yaml", "run"])
    with pytest.raises(ConfigError, match="invalid configuration in mine.yaml:"):
        parse_monitor(yaml.safe_dump({"window_days": 2}))
