"""MonitorFlow: drift against the champion's reference profile, late-label feedback, tiered alerts, retraining.

    python flows/monitor_flow.py run                                  # today's partition (config/monitor.yaml)
    python flows/monitor_flow.py run --date 2026-02-10 --days 7       # a backfill: seven dates, oldest first
    python flows/monitor_flow.py --config profile config/profiles/aws.yaml step-functions create   # daily on AWS

Reads only ScoreFlow partitions that have a manifest; history, alert states and events live under the monitor's
state root (config ``state_root``), written last by ``end``, so a failed run changes nothing.
"""

from datetime import UTC, datetime

from base import ProjectFlow, config_option, main
from metaflow import Parameter, card, config_expr, current, schedule, step

from steps.core import storage
from steps.monitoring import alerts, baseline, drift, feedback, model, retrain, state
from steps.reporting import cards
from steps.scoring import plan


@schedule(cron=config_expr("monitor.schedule_cron"))
class MonitorFlow(ProjectFlow):
    """Judge the scored partitions of a window against their model's reference, alert, and retrain when due."""

    monitor = config_option("monitor", "Window, drift statistics, baselines, feedback, alert rules, retraining")
    gates = config_option("gates", "Promotion thresholds a retraining is judged by (inherited by the TrainFlow run)")

    date = Parameter("date", default="", help="Last partition date of the window, YYYY-MM-DD (default: today UTC).")
    days = Parameter("days", default=0, type=int, help="Dates in the window, 1-366 (default: 0, monitor.window_days).")
    predictions = Parameter("predictions", default="", help="ScoreFlow output root (default: predictions_root).")
    labels = Parameter("labels", default="", help="Late labels location (default: feedback.labels).")
    retrain_data = Parameter("retrain-data", default="", help="Data of a retraining run (default: "
                                                               "retrain.params.data, else TrainFlow's default).")
    model_run = Parameter("model-run", default="", help="Model run to judge against (default: the one that scored "
                                                        "the newest partition, else the champion).")

    @step
    def start(self):
        """Resolve the window, the monitored model's reference profile and the monitor's stored state."""
        cfg = self.typed("monitor")
        predictions = drift.predictions_folder(storage.absolute(self.predictions or cfg.predictions_root))
        self.roots = {"predictions": predictions,
                      "labels": storage.absolute(self.labels or cfg.feedback.labels),
                      "state": storage.absolute(cfg.state_root)}
        self.window = drift.window_dates(drift.not_future(plan.partition_date(self.date or None)),
                                         drift.window_length(cfg, self.days))
        model_run = self.model_run or model.scoring_model(self.window, self.roots["predictions"])
        self.champion = model.model_reference(model_run, current.branch_name, current.project_name,
                                              self.typed("dataset"))
        self.state = state.load_state(self.roots["state"])
        self.next(self.measure)

    @step
    def measure(self):
        """Drift of every period against its own history; realized performance on the labels that arrived."""
        spec, cfg = self.typed("dataset"), self.typed("monitor")
        raw = [drift.measure_period(day, self.roots["predictions"], self.champion["profile"], spec,
                                    cfg.max_rows_per_period, cfg.seed) for day in self.window]
        self.periods = baseline.judge_periods(raw, self.state["periods"], cfg.drift, cfg.baseline)
        labels = feedback.read_labels(self.roots["labels"], spec.id_column, cfg.feedback)
        self.performance = feedback.feedback_window(self.window[-1], self.roots["predictions"], labels, spec,
                                                    cfg.feedback, self.state["performance"])
        self.concept = feedback.concept_signals(feedback.merge_performance(self.state["performance"],
                                                                           self.performance),
                                                self.champion["reference_auc"], cfg.feedback)
        self.next(self.decide)

    @step
    def decide(self):
        """Advance the alert rules over the window (dedup, hysteresis) and apply the retraining strategy."""
        cfg = self.typed("monitor")
        periods = state.with_signals(self.periods, self.concept)
        self.replayed = state.periods_after(self.state, self.window[-1])  # a backfill: later periods replayed
        self.rule_states, events, self.snapshots = alerts.evaluate(
            cfg.alerts.rules, state.rules_before(self.state, self.window[0]), periods + self.replayed)
        events = alerts.unraised(events, self.roots["state"], [p["period"] for p in self.replayed])
        last_run = (self.state.get("last_run") or {}).get("at")
        notices = model.registry_notices(current.branch_name, current.project_name, last_run,
                                         dataset=self.typed("dataset").name)
        self.events = [e.to_dict() for e in events + alerts.notice_events(notices, self.window[-1])]
        self.decision = retrain.decide(cfg.retrain, state.window_signals(periods), self.state["retrain"],
                                       datetime.now(UTC),
                                       datetime.fromisoformat(self.champion["trained_at"])).to_dict()
        self.next(self.launch_retraining)

    @step
    def launch_retraining(self):
        """Start TrainFlow when the strategy fired (its gates still decide); record which run it started. Nothing is
        started when another run saved the monitor's state since ``start`` loaded it."""
        cfg = self.typed("monitor")
        state.check_unchanged(self.roots["state"], self.state, f"{current.flow_name}/{current.run_id}")
        inherited = {name: getattr(self, name).to_dict() for name in ("dataset", "gates", "profile")}
        self.retraining = retrain.launch(retrain.with_data(cfg.retrain, self.retrain_data),
                                         retrain.Decision.from_dict(self.decision), current.branch_name, inherited)
        if self.retraining is not None:
            self.events = self.events + [alerts.retraining_event(self.retraining, self.decision,
                                                                 self.window[-1]).to_dict()]
        self.next(self.end)

    @card(type="blank", id="monitor")
    @step
    def end(self):
        """Send and store the events, then save the state (last, so a failed run changes nothing); render the card.

        Nothing is sent or written when another run saved the state since ``start`` loaded it."""
        cfg = self.typed("monitor")
        run = f"{current.flow_name}/{current.run_id}"
        state.check_unchanged(self.roots["state"], self.state, run)
        events = [alerts.Event(**e) for e in self.events]
        alerts.log_events(events)
        self.event_uris = alerts.store_events(events, self.roots["state"], run)
        self.delivered = alerts.notify(events, cfg.alerts.webhook, run, set(self.state["delivered"]))
        self.state_uri = state.save_state(self.roots["state"], state.finished_state(  # over the loaded state only
            self.state, self.periods, self.snapshots, self.rule_states, self.performance, self.retraining,
            self.delivered, run, cfg.keep_periods, self.replayed), self.state, run)
        self.active_alerts = alerts.active(self.rule_states, cfg.alerts.rules)
        current.card["monitor"].extend(cards.monitor_card(
            state.load_state(self.roots["state"]), self.events, self.active_alerts, self.decision, self.retraining,
            self.typed("dataset").sensitive, self.champion["reference_auc"]))
        print(state.summary(self.periods, self.events, self.active_alerts, self.decision, self.retraining,
                            self.state_uri))


if __name__ == "__main__":
    main(MonitorFlow)
