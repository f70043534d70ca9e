"""Run every ``benchmarks/bench_*.py``, write ``benchmarks/results/<name>.json`` and ``.md``, print the tables.

    python -m benchmarks.run                  # all benchmarks, full size (what `make bench` runs)
    python -m benchmarks.run synth --quick    # one benchmark, small sizes (or BENCH_QUICK=1)

Quick results go to ``<name>-quick.*`` so they never overwrite the full numbers the README quotes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import platform
import subprocess
from typing import Any

from benchmarks import ROOT, Report

RESULTS = ROOT / "benchmarks" / "results"


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_<name>.py``), sorted."""
    return sorted(p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py"))


def machine() -> dict[str, Any]:
    """Where and when the numbers were taken (the load average says how busy the box was)."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "git": rev.stdout.strip(),
            "cpus": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                                                        / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(terse=True)}


def to_markdown(name: str, report: Report, meta: dict[str, Any]) -> str:
    """The report as markdown: a title, a context line, one table per entry of ``tables``, then the notes."""
    m = meta
    lines = [f"## {report['title']} (`bench_{name}`{', quick' if m['quick'] else ''})", "",
             f"{m['date']}, git {m['git']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, Python {m['python']}; "
             f"load average {m['load_before']} before, {m['load_after']} after; {m['seconds']:.0f} s in all.", ""]
    for table, rows in report["tables"].items():
        cols = list(rows[0]) if rows else []
        lines += [f"**{table}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols) + " |"
                  for r in rows]
        lines.append("")
    return "\n".join(lines + [f"- {n}" for n in report["notes"]]) + "\n"


def run_one(name: str, quick: bool) -> str:
    """Run ``bench_<name>``, write its JSON and markdown, return the markdown."""
    module = importlib.import_module(f"benchmarks.bench_{name}")
    meta = {**machine(), "quick": quick, "load_before": [round(x, 2) for x in os.getloadavg()]}
    start = dt.datetime.now()
    report: Report = module.run(quick=quick)
    meta.update(seconds=(dt.datetime.now() - start).total_seconds(),
                load_after=[round(x, 2) for x in os.getloadavg()])
    stem = f"{name}-quick" if quick else name
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, **report}, indent=2, default=str) + "\n")
    md = to_markdown(name, report, meta)
    (RESULTS / f"{stem}.md").write_text(md)
    return md


START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(readme: Any = None) -> None:
    """Replace the README's benchmark section (between the bench markers) with every full-size results/*.md."""
    readme = readme or ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} section")
    tables = [p.read_text().strip().replace("\n## ", "\n### ").replace("## ", "### ", 1)
              for p in sorted(RESULTS.glob("*.md")) if not p.stem.endswith("-quick")]
    head, rest = text.split(START, 1)
    readme.write_text(head + START + "\n" + "\n\n".join(tables) + "\n" + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``make bench``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {discover()})")
    p.add_argument("--readme", action="store_true", help="only copy results/*.md into the README's section")
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                   help="small sizes (also BENCH_QUICK=1)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("USER", "root") == "root":  # Metaflow refuses root as a user name
        os.environ.setdefault("METAFLOW_USER", "bench")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # LightGBM/OpenMP must not spin on a busy 2-core box
    if a.readme:
        update_readme()
        return
    for name in a.names or discover():
        print(run_one(name, a.quick), flush=True)
    if not a.quick:
        update_readme()


if __name__ == "__main__":
    main()
