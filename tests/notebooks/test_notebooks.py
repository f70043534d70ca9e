"""Execute the notebooks headless against the session's TrainFlow run and check what they show."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from steps.reporting import runs

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01-inspect-training-run.ipynb"
PROBE = "import json, os, sys\nprint(json.dumps({'prefix': sys.prefix, 'cwd': os.getcwd(), " \
        "'steps': sys.modules['steps'].__file__}))"


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


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jupyter data dir whose ``python3`` kernelspec starts this interpreter (the venv's python).

    Put first on JUPYTER_PATH, it wins over any user or system ``python3`` kernelspec.
    """
    data = tmp_path_factory.mktemp("jupyter")
    spec = data / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (project venv)", "language": "python",
    }))
    return data


@pytest.fixture(scope="module")
def executed(train_run, workspace: Path, kernel_dir: Path) -> dict[str, Any]:
    """The inspection notebook executed in the workspace on ``train_run``; its code cells by id."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE, id="probe"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(kernel_dir))
        mp.setenv("TRAIN_RUN_ID", train_run.id)
        mp.setenv("PROJECT_ROOT", str(ROOT))
        NotebookClient(nb, kernel_name="python3", timeout=180, startup_timeout=120,
                       resources={"metadata": {"path": str(workspace)}}).execute()
    nbformat.write(nb, workspace / f"{NOTEBOOK.stem}.executed.ipynb")  # for a look after a failure
    return {cell.id: cell for cell in nb.cells if cell.cell_type == "code"}


def text(cell: Any) -> str:
    """A cell's stdout."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


def data(cell: Any, mime: str) -> str:
    """A cell's rich output of type ``mime`` (execute results and displays together)."""
    return "".join(o.data.get(mime, "") for o in cell.outputs if o.output_type in ("execute_result", "display_data"))


def test_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} has outputs"


def test_runs_on_the_venv_kernel_in_the_workspace(executed, workspace: Path) -> None:
    probe = json.loads(text(executed["probe"]))
    assert Path(probe["prefix"]) == Path(sys.prefix)
    assert Path(probe["cwd"]).resolve() == workspace.resolve()
    assert Path(probe["steps"]).resolve().parent == (ROOT / "steps").resolve()
    assert f"local@{workspace.resolve()}" in text(executed["setup"])


def test_reads_the_requested_run_and_when_it_started(executed, train_run) -> None:
    out = text(executed["run"])
    assert f"run: {train_run.pathspec} (started {runs.started_at(train_run):%Y-%m-%d %H:%M:%S}, " in out
    assert "why this run: given by TRAIN_RUN_ID" in out


def test_defaults_to_the_champion_not_the_latest_run() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    source = next(cell.source for cell in nb.cells if cell.cell_type == "code" and "run, why" in cell.source)
    assert "runs.champion_or_latest(" in source and "created_at" not in source


def test_metrics_table_has_one_row_per_candidate(executed, train_run) -> None:
    html = data(executed["metrics"], "text/html")
    names = [s["name"] for s in train_run.data.candidate_summaries]
    assert body_rows(html) == len(names) == 3
    assert all(f">{name}<" in html for name in names)
    assert "roc_auc" in html and "fingerprint" in html


def test_lineage_and_split(executed, train_run) -> None:
    lineage = data(executed["lineage"], "text/plain")
    assert train_run.pathspec in lineage and train_run.data.lineage["sha256"] in lineage
    assert train_run.data.lineage["source"] in lineage
    parts = set(train_run.data.split_summary) - {"method", "warnings"}
    assert body_rows(data(executed["split"], "text/html")) == len(parts) == 3


def test_chosen_model_and_holdout_scores(executed, train_run) -> None:
    name, fingerprint = train_run.data.model_name, train_run.data.model_fingerprint
    assert f"chosen model: {name} (sha256 {fingerprint})" in text(executed["model"])
    holdout = data(executed["holdout"], "text/html")
    assert body_rows(holdout) == 5 and "score" in holdout


def test_card_is_displayed(executed, train_run) -> None:
    shown = [o for o in executed["card"].outputs if o.output_type == "display_data"]
    assert len(shown) == 1
    card = runs.card_data(shown[0].data["text/html"])
    assert card["metadata"]["pathspec"].startswith(f"{train_run.pathspec}/join/")
    assert f"{train_run.data.model_name} (chosen)" in json.dumps(card)
