"""Helpers of the notebook tests: run a notebook headless in the test workspace, read its cells' outputs and the
tables pandas renders in them."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from steps.reporting.charts import MIMETYPE

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PROBE = "import json, os, sys\nprint(json.dumps({'prefix': sys.prefix, 'cwd': os.getcwd(), " \
        "'steps': sys.modules['steps'].__file__}))"


def execute(notebook: Path, workspace: Path, kernel_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """``notebook`` executed in ``workspace`` with ``env`` (plus a probe cell of where it ran); code cells by id.

    The executed copy is written to the workspace, for a look after a failure.
    """
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE, id="probe"))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"JUPYTER_PATH": str(kernel_dir), "PROJECT_ROOT": str(ROOT), **env}.items():
            mp.setenv(name, value)
        NotebookClient(nb, kernel_name="python3", timeout=180, startup_timeout=120,
                       resources={"metadata": {"path": str(workspace)}}).execute()
    nbformat.write(nb, workspace / f"{notebook.stem}.executed.ipynb")
    return {cell.id: cell for cell in nb.cells if cell.cell_type == "code"}


def assert_ran_on_the_venv_kernel_in(executed: dict[str, Any], workspace: Path) -> None:
    """The notebook ran on this interpreter, in ``workspace``, importing this checkout's steps/ and its runs."""
    probe = json.loads(text(executed["probe"]))
    assert Path(probe["prefix"]) == Path(sys.prefix)
    assert Path(probe["cwd"]).resolve() == workspace.resolve()
    assert Path(probe["steps"]).resolve().parent == (ROOT / "steps").resolve()
    assert f"local@{workspace.resolve()}" in text(executed["setup"])


def text(cell: Any) -> str:
    """A cell's stdout."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def data(cell: Any, mime: str) -> str:
    """A cell's rich output of type ``mime`` (execute results and displays together)."""
    return "".join(o.data.get(mime, "") for o in cell.outputs if o.output_type in ("execute_result", "display_data"))


def charts(cell: Any) -> list[dict[str, Any]]:
    """The Vega-Lite charts a cell shows (displayed, or its value), as the notebook's renderer receives them."""
    return [o["data"][MIMETYPE] for o in cell.outputs if MIMETYPE in o.get("data", {})]


class _TableRows(HTMLParser):
    """Counts the body rows of the HTML tables pandas renders."""

    def __init__(self) -> None:
        super().__init__()
        self.in_body, self.rows = False, 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.in_body = self.in_body or tag == "tbody"
        self.rows += tag == "tr" and self.in_body

    def handle_endtag(self, tag: str) -> None:
        self.in_body = self.in_body and tag != "tbody"


def body_rows(html: str) -> int:
    """Body rows of the tables in ``html``."""
    parser = _TableRows()
    parser.feed(html)
    return parser.rows


class _Table(HTMLParser):
    """The header rows and body rows of the first table in some HTML, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.head: list[list[str]] = []
        self.body: list[list[str]] = []
        self._tables, self._part, self._cell = 0, "", None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._tables += tag == "table"
        if self._tables != 1:
            return
        if tag in ("thead", "tbody"):
            self._part = tag
        elif tag == "tr":
            (self.head if self._part == "thead" else self.body).append([])
        elif tag in ("th", "td"):
            self._cell = ""

    def handle_data(self, chunk: str) -> None:
        if self._cell is not None:
            self._cell += chunk

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td") and self._cell is not None and self._tables == 1:
            (self.head if self._part == "thead" else self.body)[-1].append(self._cell.strip())
            self._cell = None


def table(html: str) -> list[dict[str, str]]:
    """The body rows of the first table pandas rendered in ``html`` as {column: cell}; the index is under ``""``."""
    parser = _Table()
    parser.feed(html)
    header = parser.head[0]  # pandas: ["", columns...]; a named index adds a second header row
    return [dict(zip(header, row, strict=False)) for row in parser.body]  # lengths unchecked, as before
