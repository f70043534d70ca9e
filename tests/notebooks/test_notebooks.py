"""Execute the notebooks headless against the session's TrainFlow run and check what they show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from notebook_cells import NOTEBOOKS, ROOT, assert_ran_on_the_venv_kernel_in, body_rows, data, execute, text

from steps.reporting import runs

NOTEBOOK = ROOT / "notebooks" / "01-inspect-training-run.ipynb"


@pytest.fixture(scope="module")
def executed(train_run, workspace: Path, kernel_dir: Path) -> dict[str, Any]:
    """The inspection notebook executed in the workspace on ``train_run``; its code cells by id."""
    return execute(NOTEBOOK, workspace, kernel_dir, {"TRAIN_RUN_ID": train_run.id})


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_each_code_cell_tagged_with_its_id(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    ids = [cell.id for cell in nb.cells]
    assert len(set(ids)) == len(ids)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id} has outputs"
            assert cell.metadata.get("tags") == [cell.id], f"cell {cell.id} is not tagged with its id"


def test_every_notebook_is_executed_by_a_test() -> None:
    tested = {path.stem for path in NOTEBOOKS if any(path.name in module.read_text()
                                                      for module in Path(__file__).parent.glob("test_*.py"))}
    assert tested == {path.stem for path in NOTEBOOKS} and len(tested) == 4


def test_runs_on_the_venv_kernel_in_the_workspace(executed, workspace: Path) -> None:
    assert_ran_on_the_venv_kernel_in(executed, workspace)


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
