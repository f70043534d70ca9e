"""The shape of steps/: one subpackage per lifecycle stage, small documented modules, import layers without cycles,
command-line tools that start."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p for p in (ROOT / "steps").rglob("*.py"))
STAGES = ["core", "config", "data", "modeling", "gates", "registry", "distill", "scoring", "monitoring", "reporting",
          "ops"]
CLIS = ["steps.registry", "steps.data.synth", "steps.ops.scenario", "steps.ops.deploy", "steps.reporting.report",
        "steps.reporting.runs"]
MAX_LINES = 500


def test_steps_is_one_subpackage_per_stage_and_nothing_else():
    packages = sorted(p.name for p in (ROOT / "steps").iterdir() if (p / "__init__.py").is_file())
    loose = sorted(p.name for p in (ROOT / "steps").glob("*.py") if p.name != "__init__.py")
    assert packages == sorted(STAGES) and loose == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_small_and_documented(path: Path):
    text = path.read_text()
    tree = ast.parse(text)
    assert len(text.splitlines()) <= MAX_LINES
    assert ast.get_docstring(tree), "module docstring"
    undocumented = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
                    and not n.name.startswith("_") and not ast.get_docstring(n)]
    assert undocumented == []


def test_import_layers_hold_and_no_module_imports_a_flow():
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout
    flows = {p.stem for p in (ROOT / "flows").glob("*.py")}
    for path in MODULES:
        imported = {a.name.split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in ast.walk(ast.parse(path.read_text()))
                     if isinstance(n, ast.ImportFrom)}
        assert not imported & flows, path


@pytest.mark.parametrize("module", CLIS)
def test_command_line_tools_explain_themselves(module: str):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m " + module), proc.stdout[:200]
