"""The shape of steps/: one subpackage per lifecycle stage, small documented modules, import layers without cycles,
command-line tools that start."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import steps as steps_package

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


class _Parsed(Exception):
    """Raised instead of parsing: carries the parser a CLI built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__()
        self.parser = parser


def _parser(module: str) -> argparse.ArgumentParser:
    """The argument parser ``module``'s main() builds (stopped before it parses anything)."""
    def stop(parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(parser)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", stop)
        with pytest.raises(_Parsed) as caught:
            importlib.import_module(module).main([])
    return caught.value.parser


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every option and positional of a parser and of its subcommands, but --help."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [a for sub in action.choices.values() for a in _options(sub)]
        elif not isinstance(action, argparse._HelpAction):
            found.append(action)
    return found


@pytest.mark.parametrize("module", [m for m in CLIS if m != "steps.registry"])  # the registry CLI is not ours here
def test_every_cli_option_says_what_it_does_and_its_default(module: str) -> None:
    options = _options(_parser(module))
    assert options
    for action in options:
        assert action.help and len(action.help.splitlines()) == 1, f"{module} {action.dest}: no one-line help"
        if action.option_strings:
            assert "default" in action.help or action.required, f"{module} {action.option_strings}: no default"


def test_every_flow_parameter_says_its_default() -> None:
    for path in sorted((ROOT / "flows").glob("*_flow.py")):
        calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
                 and getattr(n.func, "id", None) == "Parameter"]
        assert calls, path
        for call in calls:
            help_text = next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "help")
            assert "default" in help_text, f"{path.name} {ast.literal_eval(call.args[0])}: {help_text!r}"


HEAVY = ("scipy", "sklearn", "lightgbm", "fairlearn", "pandas")
PROBE = """
import importlib, json, sys
from steps.gates import assess
before = {
    "name": assess.__name__, "file": assess.__file__, "policy": hasattr(assess, "METAFLOW_PACKAGE_POLICY"),
    "loaded": sorted(m for m in HEAVY if m in sys.modules),
}
from steps.gates import review
importlib.reload(review)  # a lazy module not used yet: reload loads it (it reads __spec__, never answered unloaded)
after = {"callable": callable(assess.assess), "loaded": sorted(m for m in HEAVY if m in sys.modules)}
print(json.dumps({"before": before, "after": after, "reloaded": callable(review.review_gates)}))
"""


def test_a_lazy_submodule_answers_metaflows_packaging_questions_without_loading():
    proc = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}" + PROBE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["before"] == {"name": "steps.gates.assess", "file": str(ROOT / "steps" / "gates" / "assess.py"),
                              "policy": False, "loaded": []}
    assert seen["after"]["callable"] and "pandas" in seen["after"]["loaded"]  # assess imports pandas at its top
    assert seen["reloaded"]


def test_a_lazy_module_hands_over_to_a_lazy_class_that_loads_only_when_it_is_the_exact_class():
    """Python 3.11.9+, 3.12.3+ and 3.13 load only when the module's class is exactly LazyLoader's (gh-114763)."""
    loads = []

    class Strict(ModuleType):  # that check, without the rest of LazyLoader
        def __getattribute__(self, attr: str):
            if object.__getattribute__(self, "__class__") is Strict:
                loads.append(attr)
                ModuleType.__setattr__(self, "__class__", ModuleType)
                ModuleType.__setattr__(self, "value", 42)
            return getattr(self, attr)

    module = ModuleType("steps.probe")
    module.__class__ = steps_package._until_used(Strict)
    assert module.__name__ == "steps.probe" and not hasattr(module, "METAFLOW_PACKAGE_POLICY") and loads == []
    assert module.value == 42 and loads == ["value"] and type(module) is ModuleType


def _sets_package_policy(path: Path) -> bool:
    """True when the module assigns METAFLOW_PACKAGE_POLICY at its top level, however it is spelt."""
    targets = [t for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Assign, ast.AnnAssign))
               for t in (node.targets if isinstance(node, ast.Assign) else [node.target])]
    return any(isinstance(t, ast.Name) and t.id == "METAFLOW_PACKAGE_POLICY" for t in targets)


def test_only_the_steps_package_itself_sets_the_package_policy():
    setters = [str(p.relative_to(ROOT)) for p in MODULES if _sets_package_policy(p)]
    assert setters == ["steps/__init__.py"]  # a lazy submodule reports it absent without loading (steps/__init__.py)


@pytest.mark.parametrize("flow", ["TrainFlow", "ScoreFlow", "MonitorFlow"])
def test_the_notebook_the_report_points_at_reads_the_run_it_names(flow: str) -> None:
    from steps.reporting.report import NOTEBOOKS

    notebook, variable = NOTEBOOKS[flow]
    code = "".join(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                   for cell in json.loads((ROOT / "notebooks" / notebook).read_text())["cells"])
    assert f'os.environ.get("{variable}")' in code and f"`${variable}`" in code
