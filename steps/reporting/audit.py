"""Audit one scored partition (notebook 03): the ScoreFlow run, its manifest, row counts, scores, review rate.

Read-only. The partition is found through the run's artifacts (``plan``: output root and date); its parts are read
only as the manifest lists them, and every check below is recomputed from the files themselves.

"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from metaflow import Run

from steps.core.decision import in_band
from steps.core.storage import join_uri, list_files, read_bytes
from steps.data.contract import ScoreInputError
from steps.registry.registry import run_data
from steps.reporting import charts
from steps.reporting.runs import latest_run
from steps.scoring.partition import MANIFEST, quarantine_reasons as reasons_of, read_manifest, untrusted


def score_run(run_id: str | None = None) -> Run:
    """The ScoreFlow run ``run_id``, or the latest successful one (current namespace first, then global)."""
    return latest_run("ScoreFlow", run_id)


def partition_of(run: Run) -> tuple[str, str]:
    """(output root, date) of the partition a ScoreFlow run wrote."""
    plan = run_data(run).plan
    return plan["output_root"], plan["date"]


def manifest(run: Run) -> dict[str, Any]:
    """The partition's manifest; ScoreInputError when there is none (the partition is not trusted)."""
    root, day = partition_of(run)
    found = read_manifest(root, day)
    if found is None:
        raise ScoreInputError(f"{untrusted(root, day)}: not trusted")
    return found


def overview(found: dict[str, Any]) -> pd.Series:
    """One line per fact of the manifest: run, model, runtime, totals."""
    t = found["totals"]
    return pd.Series({
        "partition": found["partition"], "written by": found["flow_run"], "created at": found["created_at"],
        "model run": found["model"]["run"], "model": found["model"]["name"],
        "model sha256": found["model"]["fingerprint"], "runtime": found["runtime"],
        "decision threshold": found["decision_threshold"], "review band": found["review_band"],
        "rows in": t["rows_in"], "rows scored": t["rows_out"], "rows quarantined": t["rows_quarantined"],
        "quarantine rate": round(t["quarantine_rate"], 6), "parts": len(found["parts"]),
    }, name="value")


def shard_table(found: dict[str, Any]) -> pd.DataFrame:
    """One row per shard: rows in/out/quarantined, attempt, part, checksum prefix and timings."""
    rows = [{"shard": r["shard"], "rows_in": r["rows_in"], "rows_out": r["rows_out"],
             "quarantined": r["rows_quarantined"], "attempt": r["attempt"], "part": r["part"]["path"],
             "sha256": r["part"]["sha256"][:12], "seconds": r["timings"]["total_s"]} for r in found["shards"]]
    return pd.DataFrame(rows).set_index("shard")


def _read_object(root: str, relative: str) -> bytes:
    """The bytes of a file under the output root (ScoreInputError when missing)."""
    body = read_bytes(join_uri(root, relative))
    if body is None:
        raise ScoreInputError(f"{join_uri(root, relative)} is listed in the manifest but missing")
    return body


def row_count_checks(found: dict[str, Any], root: str) -> pd.DataFrame:
    """Recompute the manifest's claims from the files: checksums, rows per part, totals, no unlisted files."""
    checks = []
    total = 0
    for part in found["parts"]:
        body = _read_object(root, part["path"])
        rows = pq.ParquetFile(pa.BufferReader(body)).metadata.num_rows
        total += rows
        checks.append((f"{part['path']} sha256", hashlib.sha256(body).hexdigest() == part["sha256"],
                       part["sha256"][:12]))
        checks.append((f"{part['path']} rows", rows == part["rows"], f"{rows} in file, {part['rows']} in manifest"))
    t = found["totals"]
    quarantined = sum(pq.ParquetFile(pa.BufferReader(_read_object(root, q["path"]))).metadata.num_rows
                      for q in found["quarantine_parts"])
    checks += [
        ("rows scored = rows in parts", total == t["rows_out"], f"{total} vs {t['rows_out']}"),
        ("rows quarantined = rows in quarantine parts", quarantined == t["rows_quarantined"],
         f"{quarantined} vs {t['rows_quarantined']}"),
        ("rows in = scored + quarantined", t["rows_in"] == t["rows_out"] + t["rows_quarantined"],
         f"{t['rows_in']} = {t['rows_out']} + {t['rows_quarantined']}"),
    ]
    listed = {p["path"].rsplit("/", 1)[-1] for p in found["parts"]} | {MANIFEST}
    present = set(list_files(join_uri(root, found["partition"])))
    checks.append(("no unlisted files in the partition", present == listed,
                   ", ".join(sorted(present - listed)) or "none"))
    return pd.DataFrame(checks, columns=["check", "ok", "detail"]).set_index("check")


def predictions(found: dict[str, Any], root: str) -> pd.DataFrame:
    """Every prediction row of the partition, from the parts the manifest lists."""
    tables = [pq.read_table(pa.BufferReader(_read_object(root, p["path"]))) for p in found["parts"]]
    return pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=["score"])


def score_distribution(frame: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Rows and share per score bin of width 1/bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, _ = np.histogram(frame["score"].to_numpy(dtype=float), bins=edges)
    total = max(int(counts.sum()), 1)
    labels = [f"[{lo:.1f}, {hi:.1f}{']' if i == bins - 1 else ')'}" for i, (lo, hi) in
              enumerate(zip(edges[:-1], edges[1:], strict=True))]
    return pd.DataFrame({"rows": counts, "share": np.round(counts / total, 4)}, index=pd.Index(labels, name="score"))


def review_summary(frame: pd.DataFrame, found: dict[str, Any]) -> pd.Series:
    """Review rate (recomputed from the scores and the band, and as written) and the positive-decision rate."""
    band = tuple(found["review_band"])
    scores = frame["score"].to_numpy(dtype=float)
    recomputed = in_band(scores, band)
    rows = len(frame)
    return pd.Series({
        "rows": rows, "review band": list(band), "in review": int(frame["review"].sum()) if rows else 0,
        "review rate": float(frame["review"].mean()) if rows else 0.0,
        "review flags match the band": bool((recomputed == frame["review"].to_numpy(dtype=bool)).all()),
        "decision threshold": found["decision_threshold"],
        "positive decision rate": float(frame["decision"].mean()) if rows else 0.0,
    }, name="value")


def quarantine_reasons(found: dict[str, Any]) -> pd.DataFrame:
    """Quarantined rows per rule, over every shard."""
    return pd.DataFrame(reasons_of(found["shards"]), columns=["reason", "rows"]).set_index("reason")


def plot_scores(frame: pd.DataFrame, found: dict[str, Any]) -> charts.Chart:
    """Histogram of scores with the decision threshold and the review band marked (a Vega-Lite chart)."""
    low, high = found["review_band"]
    return charts.score_histogram(frame["score"].to_numpy(dtype=float), (low, high), found["decision_threshold"])
