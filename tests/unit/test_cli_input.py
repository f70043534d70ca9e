"""What the registry and report command lines do with what a user types: a run named by id or flow/id, an output
folder that is a file."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize(("given", "expected"), [("1796226278058349", "1796226278058349"),
                                                 ("TrainFlow/1796226278058349", "1796226278058349"),
                                                 (" 42 ", "42")])
def test_a_run_is_named_by_its_id_or_flow_and_id(given: str, expected: str) -> None:
    from steps.registry.registry import run_id_of

    assert run_id_of(given, "TrainFlow") == expected


@pytest.mark.parametrize("given", ["ScoreFlow/1796227304349006", "1796226272311359/end", "TrainFlow/1/end/3", "",
                                   "TrainFlow/"])
def test_another_flows_run_a_step_path_or_nothing_is_refused_naming_it(given: str) -> None:
    from steps.registry.registry import RegistryError, run_id_of

    with pytest.raises(RegistryError, match=rf"^{re.escape(repr(given))} is not a TrainFlow run: give its id"):
        run_id_of(given, "TrainFlow")


def test_the_report_refuses_a_file_as_its_output_folder(tmp_path, capsys) -> None:
    from steps.reporting.report import main

    target = tmp_path / "afile"
    target.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_:
        main(["--out", str(target)])
    assert exit_.value.code == 2
    assert f"--out {target} is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "not a folder"
