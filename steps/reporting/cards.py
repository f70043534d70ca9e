"""Card components of every flow (Metaflow card components built from plain data).

Each card opens with what happened in one line (a coloured banner), then the evidence: tables sized to fit a
1400 px window without sideways scrolling (long text goes below a table, never into a column), and Vega-Lite charts
from ``steps.reporting.charts`` that the card's browser draws (hover a point for its values): no figure is drawn
in the step.
"""

from __future__ import annotations

import html
from typing import Any

from metaflow.cards import Markdown, Table, VegaChart

from steps.config.distill import DistillConfig
from steps.reporting import charts
from steps.reporting.checks import banner, check_components, fmt, interval_text, lead_in

METRIC_COLUMNS = ("roc_auc", "average_precision", "log_loss", "brier")
PERFORMANCE_DAYS = 14  # newest labelled days in the MonitorFlow card's AUC table


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-" if value is None else str(value)


def _gpu_fallbacks(models: list[tuple[str, str | None]]) -> list[Any]:
    """One Markdown warning per model that asked for the GPU and was trained on the CPU (name, why), or []."""
    lines = [f"**Warning:** `{name}` asked for the GPU and was trained on the CPU: {html.escape(why)}."
             for name, why in models if why]
    return [Markdown("\n\n".join(lines))] if lines else []


def _trained_on(summary: dict[str, Any]) -> str:
    """``cpu x4``: the device and threads that fitted a candidate (older runs recorded neither: ``-``)."""
    return f"{summary['device']} x{summary['threads']}" if "device" in summary else "-"


def training_card(summaries: list[dict[str, Any]], curves: dict[str, Any], chosen: str, metric: str,
                  lineage: dict[str, Any], split: dict[str, Any]) -> list[Any]:
    """Components for the TrainFlow card: the chosen model, a metrics table, curves, split and lineage."""
    header = ["candidate", "type", *METRIC_COLUMNS, "fit s", "trained on", "size KiB", "sha256"]
    rows = [[s["name"] + (" (chosen)" if s["name"] == chosen else ""), s["type"],
             *[_fmt(s["metrics"][m]) for m in METRIC_COLUMNS], _fmt(s["fit_seconds"]), _trained_on(s),
             f"{s['size_bytes'] / 1024:.0f}", s["fingerprint"][:12]] for s in summaries]
    fallbacks = _gpu_fallbacks([(s["name"], s.get("device_fallback")) for s in summaries])
    split_rows = [[name, split[name]["rows"], split[name]["positives"], split[name]["time_min"] or "-",
                   split[name]["time_max"] or "-"] for name in ("train", "validation", "holdout")]
    warnings = "".join(f"\n\n**Warning:** {w}." for w in split.get("warnings", []))
    return [
        Markdown(f"# TrainFlow\nChosen model: **{chosen}**, the best validation `{metric}`."),
        Markdown("## Candidates (validation set)"),
        lead_in(f"Validation metrics of every candidate; the chosen one has the best <code>{html.escape(metric)}"
                "</code>."),
        Table(rows, headers=header),
        *fallbacks,
        VegaChart(charts.roc_pr(curves)),
        Markdown(f"## Split: by {split.get('method', 'time')}{warnings}"),
        Table(split_rows, headers=["part", "rows", "positives", "from", "to"]),
        Markdown("## Lineage"),
        Table([[k, _fmt(v)] for k, v in lineage.items() if k != "extra"], headers=["field", "value"]),
    ]


def gates_verdict(results: list[dict[str, Any]], summary: dict[str, Any], champion_run_id: str | None) -> Markdown:
    """The banner of the gates card, worded for the ``judge`` step (``end`` registers the verdict after it)."""
    gated = sum(bool(r["gated"]) for r in results)
    if summary["passed"]:
        replaces = f"it replaces run {champion_run_id}" if champion_run_id else "the first champion of its dataset"
        return banner("good", "Will become champion:", f"every gated check passed ({gated} of {gated}); {replaces}.")
    failed = summary["failed"]
    stays = f"Run {champion_run_id} stays champion." if champion_run_id else "No champion is set."
    return banner("bad", "Stays a candidate, champion unchanged:",
                  f"{len(failed)} of {gated} gated checks failed: {', '.join(failed)}. {stays}")


def _champion_section(champion: dict[str, Any] | None) -> list[Any]:
    """The primary-metric comparison with the champion, or a line saying there was none."""
    if not champion:
        return [Markdown("No champion yet: the absolute gates decide.")]
    if champion.get("comparison") is None:  # it could not score this hold-out
        return [Markdown(f"## Champion (run {champion['run_id']}) not compared\n\n{champion.get('error', '')}")]
    c = champion["comparison"]
    return [Markdown(f"## Champion (run {champion['run_id']}) versus challenger"),
            Table([[c["metric"], fmt(c["champion"]), fmt(c["challenger"]), fmt(c["difference"]),
                    interval_text((c["low"], c["high"])), fmt(c["p_value"]), c["method"]]],
                  headers=["metric", "champion", "challenger", "difference", "interval", "p-value", "test"]),
            Markdown("The difference is challenger minus champion, oriented so that above 0 means better.")]


def _efficiency_section(efficiency: dict[str, Any], champion: dict[str, Any] | None) -> list[Any]:
    """Latency, throughput, size and memory; the champion's beside them when it was measured in the same step."""
    theirs = (champion or {}).get("efficiency") or {}
    headers = ["measure", "challenger", *(["champion"] if theirs else [])]
    rows: list[list[Any]] = [[k, fmt(v), *([fmt(theirs.get(k))] if theirs else [])] for k, v in efficiency.items()]
    return [Markdown("## Efficiency (serving runtime)"), Table(rows, headers=headers)]


def gates_card(results: list[dict[str, Any]], summary: dict[str, Any], report: dict[str, Any]) -> list[Any]:
    """Components for the gates card: the verdict, every check, ROC/calibration plots, groups, champion."""
    champion = report.get("champion")
    out: list[Any] = [
        Markdown("# Promotion gates"),
        gates_verdict(results, summary, champion["run_id"] if champion else None),
        Markdown("Every check ran on the hold-out. The `end` step tags this run `candidate` and moves the "
                 "`champion` tag here only when every gated check passed."),
        *check_components(results),
        Markdown("## Hold-out curves"),
        VegaChart(charts.roc_calibration(report["curves"])),
        *_champion_section(champion),
    ]
    for attribute, groups in report["fairness"].items():
        out += [Markdown(f"## Fairness by {attribute}"), VegaChart(charts.group_bars(groups, attribute))]
    return out + _efficiency_section(report["efficiency"], champion)


def _alert_banner(active: list[dict[str, Any]]) -> Markdown:
    """The monitor's state in one line: the active alerts, coloured by their worst tier."""
    if not active:
        return banner("good", "No active alerts.")
    tiers = {a["tier"] for a in active}
    tone = "bad" if "critical" in tiers else "warn" if "warning" in tiers else "good"
    listed = ", ".join(f"{a['tier']} {a['rule']} (since {a['since']})" for a in active)
    return banner(tone, f"{len(active)} active alert{'s' if len(active) > 1 else ''}:", listed)


def _retraining_line(decision: dict[str, Any], retraining: dict[str, Any] | None) -> str:
    """What the retraining strategy decided and, when a run was started, which and how it ended."""
    line = f"## Retraining\nStrategy **{decision['strategy']}**: {decision['reason']}."
    if not retraining:
        return line
    if retraining.get("run"):
        return line + f" Started `{retraining['run']}`: {retraining.get('status')}."
    return line + f" No run started: {retraining.get('status')}."


def _performance_section(performance: list[dict[str, Any]], reference_auc: float | None,
                         attributes: list[str]) -> list[Any]:
    """Realized AUC per labelled day with its interval (figure and the newest days as a table), then per group."""
    rows = [[p["period"], fmt(p.get("rows")), fmt(p.get("positives")), fmt(p.get("roc_auc")),
             interval_text(p.get("auc_interval")),
             f"{p['roc_auc'] - reference_auc:+.4f}" if p.get("roc_auc") is not None and reference_auc is not None
             else "-", fmt(p.get("precision")), fmt(p.get("recall"))]
            for p in performance[-PERFORMANCE_DAYS:][::-1]]
    out: list[Any] = [
        Markdown("## Realized performance on late labels"),
        VegaChart(charts.auc_interval(performance, reference_auc)),
        Markdown(f"Newest {min(len(performance), PERFORMANCE_DAYS)} labelled days, newest first"
                 + (f"; reference AUC {reference_auc:.4f} (the model's hold-out)." if reference_auc else ".")),
        Table(rows, headers=["period", "labelled rows", "positives", "AUC", "interval", "vs reference", "precision",
                             "recall"]),
    ]
    if attributes:
        out.append(VegaChart(charts.auc_by_group(performance, reference_auc, attributes)))
    return out


def monitor_card(state: dict[str, Any], events: list[dict[str, Any]], active: list[dict[str, Any]],
                 decision: dict[str, Any], retraining: dict[str, Any] | None, attributes: list[str],
                 reference_auc: float | None) -> list[Any]:
    """Components for the MonitorFlow card: alerts, retraining, drift over time, performance over time per group."""
    periods = state["periods"][-60:]
    signal_names = sorted({name for p in periods for name in p["signals"]})
    signal_rows = [[p["period"], p["rows"], *[("BREACH" if p["signals"][n]["breach"] else "ok")
                                               if n in p["signals"] else "-" for n in signal_names]]
                   for p in periods[-20:]]
    event_rows = [[e["tier"], e["rule"], e["kind"], e["period"], e["detail"]] for e in events]
    parts = [
        Markdown("# MonitorFlow"),
        _alert_banner(active),
        Markdown("## Active alerts\n" + ("\n".join(f"- **{a['tier']}** {a['rule']} since {a['since']}"
                                                    for a in active) or "None.")),
        Markdown("## Events of this run"),
        Table(event_rows or [["-", "-", "-", "-", "no events"]], headers=["tier", "rule", "kind", "period", "detail"]),
        Markdown(_retraining_line(decision, retraining)),
        Markdown("## Signals per period (newest 20)"),
        Table(signal_rows, headers=["period", "rows", *signal_names]),
        Markdown("## Feature drift over time"),
        VegaChart(charts.drift_heatmap(periods, "feature_drift", "psi")),
        VegaChart(charts.drift_heatmap(periods, "prediction_drift", "ks")),
    ]
    if state["performance"]:
        parts += _performance_section(state["performance"][-60:], reference_auc, attributes)
    return parts


def serving_verdict(chosen: str | None, gate_results: list[dict[str, Any]] | None,
                    table: list[dict[str, Any]], cfg: DistillConfig) -> Markdown:
    """Which student serves after this run (the ``end`` step tags it ``serving``), or why none does."""
    rule = f"AUC ratio ≥ {cfg.min_auc_ratio:g} at cost ratio ≤ {cfg.max_cost_ratio:g} on {cfg.cost_runtime}"
    if not chosen:
        why = "; ".join(f"{r['name']}: {', '.join(r['reasons']) or 'not eligible'}" for r in table)
        return banner("bad", "No student serves from this run:",
                      f"none met the rule ({rule}): {why}. The student serving before, if any, keeps serving.")
    failed = [f"{g['suite']}/{g['name']}" for g in gate_results or [] if g["gated"] and not g["passed"]]
    if failed:
        return banner("bad", f"{chosen} will not serve:",
                      f"selected by the rule, but {len(failed)} gated checks failed: {', '.join(failed)}. "
                      "The student serving before, if any, keeps serving.")
    return banner("good", f"{chosen} will serve:",
                  f"selected by the rule ({rule}) and every gated check passed. The end step tags this run serving; "
                  "ScoreFlow then scores with its ONNX graph while its teacher is the champion.")


def _candidate_rows(table: list[dict[str, Any]], chosen: str | None) -> list[list[Any]]:
    """One row per student: quality, cost per runtime, ONNX parity and whether it is eligible (reasons below)."""
    def cost(r: dict[str, Any], runtime: str) -> str:
        return f"{r['runtimes'][runtime]['cost_us_per_row']:.3f}" if runtime in r["runtimes"] else "-"

    def parity(r: dict[str, Any]) -> str:
        onnx = r["parity"].get("onnx") or {}
        return f"{onnx['max_abs_diff']:.1e}, {onnx.get('decision_flips', '-')} flips" if onnx else "-"

    return [[f"{r['name']} ({r['kind']})", f"{r['auc']:.4f}", f"{r['auc_ratio']:.4f}", f"{r['cost_ratio']:.3f}",
             cost(r, "native"), cost(r, "onnx"), cost(r, "quantized"), parity(r),
             "selected" if r["name"] == chosen else "eligible" if not r["reasons"] else "not eligible"]
            for r in table]


def distill_card(table: list[dict[str, Any]], teacher: dict[str, Any], chosen: str | None,
                 cfg: DistillConfig, gate_results: list[dict[str, Any]] | None) -> list[Any]:
    """The DistillFlow card: who serves, candidate table, quality-vs-cost plot, gate results."""
    points = [{"name": "teacher", "kind": "teacher", "runtime": rt, "auc_ratio": 1.0,
               "cost_us_per_row": m["cost_us_per_row"]} for rt, m in teacher["runtimes"].items()]
    for r in table:
        for rt, m in r["runtimes"].items():
            auc = r["parity"].get(rt, {}).get("auc", r["auc"]) if rt != "native" else r["auc"]
            points.append({"name": r["name"], "kind": r["kind"], "runtime": rt, "auc_ratio": auc / teacher["auc"],
                           "cost_us_per_row": m["cost_us_per_row"]})
    ceiling = teacher["runtimes"].get(cfg.cost_runtime, {}).get("cost_us_per_row")
    measured: dict[str, Any] = next(iter(teacher["runtimes"].values()), {})
    clock = "CPU time" if measured.get("clock") == "cpu" else "wall time"
    reasons = [f"<li><strong>{html.escape(r['name'])}</strong>: {html.escape('; '.join(r['reasons']))}</li>"
               for r in table if r["reasons"]]
    out = [Markdown("# DistillFlow"),
           serving_verdict(chosen, gate_results, table, cfg),
           lead_in(f"Teacher hold-out AUC {teacher['auc']:.4f}. Rule: AUC ratio ≥ {cfg.min_auc_ratio:g} at cost "
                   f"ratio ≤ {cfg.max_cost_ratio:g} on {cfg.cost_runtime} (per-row cost against the teacher's, "
                   f"single-thread {clock})."),
           Table(_candidate_rows(table, chosen),
                 headers=["student", "AUC", "AUC ratio", "cost ratio", "native us/row", "onnx us/row",
                          "int8 us/row", "onnx parity", "selection"]),
           *([Markdown(f'<div style="text-align:left">Not eligible:<ul>{"".join(reasons)}</ul></div>')]
             if reasons else []),
           *_gpu_fallbacks([(r["name"], (r.get("fit") or {}).get("fallback")) for r in table]),
           VegaChart(charts.quality_cost(points, cfg.min_auc_ratio, ceiling * cfg.max_cost_ratio if ceiling else None,
                                         cfg.cost_runtime))]
    if gate_results:
        out += [Markdown("## Gates (teacher as champion; significance replaced by the quality floor)"),
                *check_components(gate_results)]
    return out


def _forced_text(forced: dict[str, Any] | None) -> str:
    """Who forced a model that is not through its gates (or not of this flow or dataset), why, and which rules."""
    if not forced:
        return "no"
    broken = "; ".join(f"{role}: {', '.join(rules)}" for role, rules in forced.get("overrides", {}).items())
    return f"by {forced.get('by', '?')}: {forced.get('reason', '')} (rules broken: {broken or '-'})"


def _shard_rows(shards: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per shard: attempt, counts and where its time went."""
    rows = []
    for r in shards:
        t = r.get("timings", {})
        rate = round(r["rows_in"] / t["total_s"]) if t.get("total_s") else None
        rows.append([str(r["shard"]), str(r["attempt"]), fmt(r["rows_in"]), fmt(r["rows_out"]),
                     fmt(r["rows_quarantined"]), *(fmt(t.get(k)) for k in ("read_validate_s", "predict_s",
                                                                            "write_s", "total_s")), fmt(rate)])
    return rows


def score_card(manifest: dict[str, Any], location: str) -> list[Any]:
    """The ScoreFlow card: the partition written (``location``), the model that scored it, why rows were
    quarantined, and each shard's counts and time."""
    from steps.scoring.partition import quarantine_reasons  # here: TrainFlow's cards never load the scoring stage

    t, model, shadow = manifest["totals"], manifest["model"], manifest.get("shadow")
    limit = manifest["max_quarantine_rate"]
    tone = "warn" if t["rows_quarantined"] or manifest.get("forced") else "good"
    band = manifest.get("review_band")
    reasons = quarantine_reasons(manifest["shards"])
    out: list[Any] = [
        Markdown("# ScoreFlow"),
        banner(tone, f"{manifest['partition']} written:",
               f"{t['rows_out']:,} of {t['rows_in']:,} rows scored, {t['rows_quarantined']:,} quarantined "
               f"({t['quarantine_rate']:.2%}; the run fails above {limit:.2%}); manifest written last: readers "
               f"trust the partition from then on. {location}"),
        lead_in("The model that scored it, and its decision rule.", "mf-wrap-last"),
        Table([["model", f"{model['name']} ({model['run']}, sha256 {model['fingerprint'][:12]})"],
               ["runtime", str(manifest.get("runtime", "-"))],
               ["decision", f"score ≥ {manifest['decision_threshold']:g} ({manifest.get('decision_source', '-')})"],
               ["review band", f"[{band[0]:g}, {band[1]:g}]" if band else "-"],
               ["forced", _forced_text(manifest.get("forced"))]],
              headers=["", ""]),
    ]
    if shadow and "agreement_rate" in shadow:
        out += [lead_in("Shadow model (scored beside it, not used for decisions)."),
                Table([[str(shadow["run"]), f"{shadow['agreement_rate']:.2%}", fmt(shadow["mean_abs_diff"])]],
                      headers=["shadow run", "decisions agree", "mean |score diff|"])]
    if reasons:
        out += [lead_in(f"Quarantined rows by reason (the rows and their reasons are under <code>_quarantine/"
                        f"{html.escape(manifest['partition'])}/</code>).", "mf-wrap-last"),
                Table([[fmt(n), f"{n / max(t['rows_in'], 1):.3%}", reason] for reason, n in reasons],
                      headers=["rows", "of input", "reason"])]
    files = manifest["input"]["files"]
    out += [lead_in(f"{len(files)} input file(s), {fmt(manifest['input']['rows'])} rows, in "
                    f"{len(manifest['shards'])} shard(s); seconds per shard (a retried shard shows its last attempt)."),
            Table(_shard_rows(manifest["shards"]),
                  headers=["shard", "attempt", "rows in", "scored", "quarantined", "read + validate s", "predict s",
                           "write s", "total s", "rows/s"])]
    return out
