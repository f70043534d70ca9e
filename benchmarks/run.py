"""Run every ``benchmarks/bench_*.py``, write ``benchmarks/results/<name>.json`` and ``.md``, print the tables.

    python -m benchmarks.run                  # all benchmarks, full size (what `make bench` runs)
    python -m benchmarks.run synth --quick    # one benchmark, small sizes (or BENCH_QUICK=1)

Quick results go to ``<name>-quick.*`` so they never overwrite the full numbers the README quotes.

Every result records the commit it measured and whether the files it covers (``covers``: the benchmark's own
``COVERS``, the code and configs its numbers depend on) had uncommitted changes; ``python -m benchmarks.run --stale``
lists the results whose covered files changed since (``tests/unit/test_benchmarks.py`` fails on any the README does
not list as older, with the reason, between the ``bench:older`` markers). Commit the code first, then run the
benchmarks on the clean tree, then commit the results: a rerun removes its own line from that list.
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


# What the numbers of the benchmarks that declare no ``COVERS`` depend on (besides their own file).
FALLBACK_COVERS: dict[str, tuple[str, ...]] = {
    "synth": ("steps/data/synth.py",),
    "train": ("flows/base.py", "flows/train_flow.py", "steps/core", "steps/config", "steps/data", "steps/modeling",
              "steps/gates", "steps/registry", "config/dataset.yaml", "config/train.yaml", "config/gates.yaml",
              "config/profiles/local.yaml", "benchmarks/served.py",
              # the cards TrainFlow draws; the rest of steps/reporting reads runs afterwards (CLI, notebooks)
              "steps/reporting/__init__.py", "steps/reporting/cards.py", "steps/reporting/checks.py",
              "steps/reporting/charts.py"),
    "monitor": ("steps/core", "steps/config", "steps/data", "steps/modeling", "steps/monitoring", "steps/scoring",
                "steps/ops/scenario.py", "config/dataset.yaml", "config/train.yaml", "config/monitor.yaml",
                "config/score.yaml"),
}


def covers(name: str) -> list[str]:
    """The files and folders (relative to the root) whose changes can change ``bench_<name>``'s numbers: its own
    module, ``benchmarks/__init__.py`` and the module's ``COVERS`` (else :data:`FALLBACK_COVERS`)."""
    import ast

    source = ROOT / "benchmarks" / f"bench_{name}.py"
    declared: tuple[str, ...] = FALLBACK_COVERS.get(name, ())
    for node in ast.parse(source.read_text()).body:  # read, not imported: the test must not import every benchmark
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COVERS" for t in node.targets):
            declared = _literal_covers(node.value, source)
    return sorted({f"benchmarks/bench_{name}.py", "benchmarks/__init__.py", *declared})


def _literal_covers(value: Any, source: Any) -> tuple[str, ...]:
    """A ``COVERS`` value: a tuple of strings, optionally ``served.COVERS + (...)`` (the flows' models)."""
    import ast

    from benchmarks import served

    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
        return _literal_covers(value.left, source) + _literal_covers(value.right, source)
    if isinstance(value, ast.Attribute) and value.attr == "COVERS" and getattr(value.value, "id", "") == "served":
        return served.COVERS
    try:
        return tuple(ast.literal_eval(value))
    except ValueError as err:
        raise ValueError(f"{source}: COVERS must be a tuple of paths (or served.COVERS + a tuple)") from err


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def git_state(paths: list[str]) -> dict[str, Any]:
    """The commit measured, whether the tree had uncommitted changes, and which of ``paths`` had them."""
    changed = _git("status", "--porcelain", "--untracked-files=all", "--", *paths).stdout.splitlines()
    return {"git": _git("rev-parse", "--short", "HEAD").stdout.strip(),
            "commit": _git("rev-parse", "HEAD").stdout.strip(),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no").stdout.strip()),
            "dirty_paths": sorted(line[3:] for line in changed), "covers": paths}


def bench_of(stem: str) -> str:
    """The benchmark a results file belongs to: ``train-1000000`` (one size of ``bench_train``) -> ``train``."""
    return stem.split("-", 1)[0]


def stale_reasons(name: str, meta: dict[str, Any]) -> list[str]:
    """Why the recorded result ``name`` (``<bench>`` or ``<bench>-<variant>``) does not describe the code at HEAD
    (empty: it does)."""
    commit = meta.get("commit") or meta.get("git", "")
    if "dirty_paths" not in meta:
        reasons = [f"measured at {commit[:7] or '?'}, recorded without a dirty flag"]
    elif meta["dirty_paths"]:
        reasons = [f"measured with uncommitted changes to {', '.join(meta['dirty_paths'])}"]
    else:
        reasons = []
    if not commit:
        return reasons
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return [*reasons, f"measured at {commit[:7]}, which this repository does not have"]
    changed = _git("diff", "--name-only", commit, "HEAD", "--", *covers(bench_of(name))).stdout.split()
    if changed:
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        reasons.append(f"changed since {commit[:7]}: {', '.join(changed[:8])}{more}")
    return reasons


def stale() -> dict[str, list[str]]:
    """Every full-size result that does not describe HEAD, with the reasons."""
    out = {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem.endswith("-quick"):
            continue
        reasons = stale_reasons(path.stem, json.loads(path.read_text()).get("meta", {}))
        if reasons:
            out[path.stem] = reasons
    return out


OLDER_START, OLDER_END = "<!-- bench:older -->", "<!-- bench:older:end -->"


def readme_older(text: str) -> dict[str, str]:
    """The README's list of tables older than their code: ``- `bench_<name>`: why`` lines between the markers."""
    import re

    if OLDER_START not in text or OLDER_END not in text:
        return {}
    section = text.split(OLDER_START, 1)[1].split(OLDER_END, 1)[0]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^- `bench_([\w-]+)`:(.*)$", section, re.M)}


def drop_older(name: str, readme: Any = None) -> None:
    """Remove ``bench_<name>`` from the README's list of older tables (it was just measured)."""
    readme = readme or ROOT / "README.md"
    text = readme.read_text()
    if OLDER_START not in text:
        return
    head, rest = text.split(OLDER_START, 1)
    section, tail = rest.split(OLDER_END, 1)
    kept = [line for line in section.splitlines() if line.strip() and not line.startswith(f"- `bench_{name}`:")]
    readme.write_text(head + OLDER_START + "\n" + "".join(f"{line}\n" for line in kept) + OLDER_END + tail)


def drop_current(readme: Any = None) -> list[str]:
    """Remove from the README's list of older tables every result that describes HEAD again (measured since, e.g.
    ``bench_train --rows 10000000`` before ``--readme``); returns their names. A name without a result stays."""
    readme, older = readme or ROOT / "README.md", stale()
    current = [name for name in readme_older(readme.read_text())
               if (RESULTS / f"{name}.json").exists() and name not in older]
    for name in current:
        drop_older(name, readme)
    return current


def machine() -> dict[str, Any]:
    """Where and when the numbers were taken (the load average says how busy the box was)."""
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
                                                        / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(terse=True)}


def to_markdown(name: str, report: Report, meta: dict[str, Any]) -> str:
    """The report as markdown: a title, a context line, one table per entry of ``tables``, then the notes."""
    m = meta
    lines = [f"## {report['title']} (`bench_{name}`{', quick' if m['quick'] else ''})", "",
             f"{m['date']}, git {m['git']}{_tree(m)}, {m['cpus']} CPUs, {m['memory_gib']} GiB, Python {m['python']}; "
             f"load average {m['load_before']} before, {m['load_after']} after; {m['seconds']:.0f} s in all.", ""]
    for table, rows in report["tables"].items():
        cols = list(rows[0]) if rows else []
        lines += [f"**{table}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols) + " |"
                  for r in rows]
        lines.append("")
    return "\n".join(lines + [f"- {n}" for n in report["notes"]]) + "\n"


def _tree(meta: dict[str, Any]) -> str:
    """How the header names the tree: clean, or with uncommitted changes to covered files."""
    if "dirty_paths" not in meta:
        return ""
    if meta["dirty_paths"]:
        return f" with uncommitted changes to {', '.join(meta['dirty_paths'])}"
    return " (covered files clean)" if meta["dirty"] else " (clean)"


def run_one(name: str, quick: bool) -> str:
    """Run ``bench_<name>``, write its JSON and markdown, return the markdown."""
    module = importlib.import_module(f"benchmarks.bench_{name}")
    meta = {**machine(), **git_state(covers(name)), "quick": quick,
            "load_before": [round(x, 2) for x in os.getloadavg()]}
    start = dt.datetime.now()
    report: Report = module.run(quick=quick)
    meta.update(seconds=(dt.datetime.now() - start).total_seconds(),
                load_after=[round(x, 2) for x in os.getloadavg()])
    stem = f"{name}-quick" if quick else name
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, **report}, indent=2, default=str) + "\n")
    md = to_markdown(name, report, meta)
    (RESULTS / f"{stem}.md").write_text(md)
    if not quick:
        drop_older(name)
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
    p.add_argument("--stale", action="store_true", help="list the results older than their code, and why")
    p.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1",
                   help="small sizes (also BENCH_QUICK=1)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.environ.get("USER", "root") == "root":  # Metaflow refuses root as a user name
        os.environ.setdefault("METAFLOW_USER", "bench")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # LightGBM/OpenMP must not spin on a busy 2-core box
    if a.readme:
        update_readme()
        for name in drop_current():
            logging.info("bench_%s describes HEAD: dropped from the README's list of older tables", name)
        return
    if a.stale:
        for name, reasons in stale().items():
            print(f"bench_{name}: " + "; ".join(reasons))
        return
    for name in a.names or discover():
        print(run_one(name, a.quick), flush=True)
    if not a.quick:
        update_readme()


if __name__ == "__main__":
    main()
