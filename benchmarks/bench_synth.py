"""Generator throughput (rows/s) and peak RSS of ``steps.data.synth.write_parquet`` at two sizes, in fresh processes.

Claim checked: memory stays flat as the row count grows (the writer works row group by row group).
Child mode (used by ``run``): ``python -m benchmarks.bench_synth ROWS OUT`` prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import ROOT, Report

logger = logging.getLogger(__name__)

FULL_SIZES = (1_000_000, 10_000_000)
QUICK_SIZES = (200_000, 1_000_000)
FLAT_TOLERANCE = 0.10  # "flat": the largest size peaks within 10 % of the smallest


def _maxrss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(rows: int, out: Path) -> dict[str, Any]:
    """Write ``rows`` rows to ``out`` in this process; time it and report peak RSS before and after."""
    from steps.data.synth import SynthSpec, write_parquet

    before = _maxrss_mib()
    start = time.perf_counter()
    write_parquet(SynthSpec(rows=rows), out)
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": seconds, "file_mib": out.stat().st_size / 2**20,
            "rss_after_import_mib": before, "peak_rss_mib": _maxrss_mib()}


def measure(rows: int, workdir: Path) -> dict[str, Any]:
    """Run ``child`` in a fresh interpreter (so each size has its own peak RSS) and delete its output."""
    out = workdir / f"synth-{rows}.parquet"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_synth", str(rows), str(out)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    out.unlink(missing_ok=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    logger.info("synth %d rows: %.1f s, peak %.0f MiB", rows, r["seconds"], r["peak_rss_mib"])
    return {"rows": rows, "seconds": round(r["seconds"], 2), "rows_per_s": round(rows / r["seconds"]),
            "file_mib": round(r["file_mib"], 1), "rss_after_import_mib": round(r["rss_after_import_mib"]),
            "peak_rss_mib": round(r["peak_rss_mib"]),
            "peak_growth_mib": round(r["peak_rss_mib"] - r["rss_after_import_mib"])}


def run(quick: bool = False) -> Report:
    """Measure every size; note whether peak RSS stayed flat from the smallest to the largest."""
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        rows = [measure(n, Path(tmp)) for n in (QUICK_SIZES if quick else FULL_SIZES)]
    lo, hi = rows[0], rows[-1]
    ratio = hi["peak_rss_mib"] / lo["peak_rss_mib"]
    verdict = "holds" if ratio <= 1 + FLAT_TOLERANCE else "does NOT hold"
    return {
        "title": "Synthetic data generator: throughput and peak memory",
        "tables": {"write_parquet": rows},
        "notes": [
            f"Claim 'memory stays flat' {verdict}: peak RSS {lo['peak_rss_mib']} MiB at {lo['rows']:,} rows vs "
            f"{hi['peak_rss_mib']} MiB at {hi['rows']:,} rows (x{ratio:.2f}; tolerance {FLAT_TOLERANCE:.0%}).",
            "Each size runs in a fresh interpreter; peak RSS is that process's ru_maxrss (includes the ~import "
            "footprint shown as rss_after_import_mib); seconds exclude interpreter start-up and imports.",
            "Default SynthSpec (seed 7, 12 months, 100k-row row groups, zstd); the file is deleted afterwards.",
        ],
    }


if __name__ == "__main__":
    print(json.dumps(child(int(sys.argv[1]), Path(sys.argv[2]))))
