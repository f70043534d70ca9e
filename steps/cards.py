"""Card components shared by the flows (Metaflow card components built from plain data)."""

from __future__ import annotations

from typing import Any

from metaflow.cards import Image, Markdown, Table

from steps.plots import roc_pr_figure

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
    split_rows = [[name, p["rows"], p["positives"], p["time_min"], p["time_max"]] for name, p in split.items()]
    return [
        Markdown(f"# TrainFlow\nChosen model: **{chosen}**, the best validation `{metric}`."),
        Markdown("## Candidates (validation set)"),
        Table(rows, headers=header),
        Image.from_matplotlib(roc_pr_figure(curves)),
        Markdown("## Temporal split"),
        Table(split_rows, headers=["part", "rows", "positives", "from", "to"]),
        Markdown("## Lineage"),
        Table([[k, _fmt(v)] for k, v in lineage.items() if k != "extra"], headers=["field", "value"]),
    ]
