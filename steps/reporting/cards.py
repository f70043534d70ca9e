"""Card components of every flow (Metaflow card components built from plain data)."""

from __future__ import annotations

from typing import Any

from metaflow.cards import Image, Markdown, Table

from steps.config.distill import DistillConfig
from steps.reporting.plots import drift_heatmap_figure, performance_figure, quality_cost_figure, roc_pr_figure

METRIC_COLUMNS = ("roc_auc", "average_precision", "log_loss", "brier")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def training_card(summaries: list[dict[str, Any]], curves: dict[str, Any], chosen: str, metric: str,
                  lineage: dict[str, Any], split: dict[str, Any]) -> list[Any]:
    """Components for the TrainFlow card: the chosen model, a metrics table, curves, split and lineage."""
    header = ["candidate", "type", *METRIC_COLUMNS, "fit s", "size KiB", "sha256"]
    rows = [[s["name"] + (" (chosen)" if s["name"] == chosen else ""), s["type"],
             *[_fmt(s["metrics"][m]) for m in METRIC_COLUMNS], _fmt(s["fit_seconds"]),
             f"{s['size_bytes'] / 1024:.0f}", s["fingerprint"][:12]] for s in summaries]
    split_rows = [[name, split[name]["rows"], split[name]["positives"], split[name]["time_min"] or "-",
                   split[name]["time_max"] or "-"] for name in ("train", "validation", "holdout")]
    warnings = "".join(f"\n\n**Warning:** {w}." for w in split.get("warnings", []))
    return [
        Markdown(f"# TrainFlow\nChosen model: **{chosen}**, the best validation `{metric}`."),
        Markdown("## Candidates (validation set)"),
        Table(rows, headers=header),
        Image.from_matplotlib(roc_pr_figure(curves)),
        Markdown(f"## Split: by {split.get('method', 'time')}{warnings}"),
        Table(split_rows, headers=["part", "rows", "positives", "from", "to"]),
        Markdown("## Lineage"),
        Table([[k, _fmt(v)] for k, v in lineage.items() if k != "extra"], headers=["field", "value"]),
    ]


def _interval(r: dict[str, Any]) -> str:
    return "" if r.get("interval") is None else f"[{r['interval'][0]:.4f}, {r['interval'][1]:.4f}]"


def gates_card(results: list[dict[str, Any]], summary: dict[str, Any], report: dict[str, Any]) -> list[Any]:
    """Components for the gates card: the verdict, every check, ROC/calibration plots, groups, champion."""
    from steps.reporting.plots import group_bars_figure, roc_calibration_figure

    verdict = "PASSED: eligible for promotion" if summary["passed"] else "FAILED: " + ", ".join(summary["failed"])
    rows = [[("PASS" if r["passed"] else "FAIL") + ("" if r["gated"] else " (not gated)"), r["suite"], r["name"],
             r["threshold"], _fmt(r["actual"]), _interval(r), r["detail"]] for r in results]
    out: list[Any] = [
        Markdown(f"# Promotion gates\n**{verdict}**"),
        Table(rows, headers=["result", "suite", "check", "threshold", "actual", "interval", "detail"]),
        Image.from_matplotlib(roc_calibration_figure(report["curves"])),
    ]
    champion = report.get("champion")
    if champion:
        c = champion["comparison"]
        out += [Markdown(f"## Champion (run {champion['run_id']}) versus challenger"),
                Table([[c["metric"], _fmt(c["champion"]), _fmt(c["challenger"]), _fmt(c["difference"]),
                        f"[{c['low']:.4f}, {c['high']:.4f}]", _fmt(c["p_value"]), c["method"]]],
                      headers=["metric", "champion", "challenger", "difference", "interval", "p-value", "test"])]
    else:
        out.append(Markdown("No champion yet: the absolute gates decide."))
    for attribute, groups in report["fairness"].items():
        out += [Markdown(f"## Fairness by {attribute}"), Image.from_matplotlib(group_bars_figure(groups, attribute))]
    eff = report["efficiency"]
    out += [Markdown("## Efficiency (serving runtime)"),
            Table([[k, _fmt(v)] for k, v in eff.items()], headers=["measure", "value"])]
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
        Markdown("## Active alerts\n" + ("\n".join(f"- **{a['tier']}** {a['rule']} since {a['since']}"
                                                    for a in active) or "None.")),
        Markdown("## Events of this run"),
        Table(event_rows or [["-", "-", "-", "-", "no events"]], headers=["tier", "rule", "kind", "period", "detail"]),
        Markdown(f"## Retraining\nStrategy **{decision['strategy']}**: {decision['reason']}."
                 + (f" Started `{retraining['run']}`: {retraining['status']}." if retraining else "")),
        Markdown("## Signals per period (newest 20)"),
        Table(signal_rows, headers=["period", "rows", *signal_names]),
        Markdown("## Feature drift over time"),
        Image.from_matplotlib(drift_heatmap_figure(periods, "feature_drift", "psi")),
        Image.from_matplotlib(drift_heatmap_figure(periods, "prediction_drift", "ks")),
    ]
    if state["performance"]:
        parts += [Markdown("## Realized performance on late labels"),
                  Image.from_matplotlib(performance_figure(state["performance"][-60:], reference_auc, attributes))]
    return parts


def distill_card(table: list[dict[str, Any]], teacher: dict[str, Any], chosen: str | None,
                    cfg: DistillConfig, gate_results: list[dict[str, Any]] | None) -> list[Any]:
    """The DistillFlow card: verdict, candidate table, quality-vs-cost plot, gate results."""
    from metaflow.cards import Image, Markdown, Table

    points = [{"name": "teacher", "kind": "teacher", "runtime": rt, "auc_ratio": 1.0,
               "cost_us_per_row": m["cost_us_per_row"]} for rt, m in teacher["runtimes"].items()]
    for r in table:
        for rt, m in r["runtimes"].items():
            auc = r["parity"].get(rt, {}).get("auc", r["auc"]) if rt != "native" else r["auc"]
            points.append({"name": r["name"], "kind": r["kind"], "runtime": rt, "auc_ratio": auc / teacher["auc"],
                           "cost_us_per_row": m["cost_us_per_row"]})
    rows = [[r["name"] + (" (selected)" if r["name"] == chosen else ""), r["kind"], f"{r['auc']:.4f}",
             f"{r['auc_ratio']:.4f}", f"{r['cost_ratio']:.3f}",
             *[f"{r['runtimes'][rt]['cost_us_per_row']:.3f}" if rt in r["runtimes"] else "-"
               for rt in ("native", "onnx", "quantized")],
             f"{r['parity'].get('onnx', {}).get('max_abs_diff', float('nan')):.2e}",
             str(r["parity"].get("onnx", {}).get("decision_flips", "-")), "; ".join(r["reasons"]) or "eligible"]
            for r in table]
    out = [Markdown(f"# DistillFlow\nTeacher AUC {teacher['auc']:.4f}. Selected: **{chosen or 'none'}** "
                    f"(rule: AUC ratio >= {cfg.min_auc_ratio:g} at cost ratio <= {cfg.max_cost_ratio:g} on "
                    f"{cfg.cost_runtime})."),
           Table(rows, headers=["student", "type", "AUC", "AUC ratio", "cost ratio", "native us/row", "onnx us/row",
                                "int8 us/row", "onnx max|diff|", "flips", "selection"]),
           Image.from_matplotlib(quality_cost_figure(points))]
    if gate_results:
        out += [Markdown("## Gates (teacher as champion; significance replaced by the quality floor)"),
                Table([[("PASS" if g["passed"] else "FAIL") + ("" if g["gated"] else " (not gated)"), g["suite"],
                        g["name"], g["threshold"], f"{g['actual']:.4g}" if g["actual"] is not None else "-"]
                       for g in gate_results], headers=["result", "suite", "check", "threshold", "actual"])]
    return out
