"""The options a resume must repeat to stay on its run's project branch: the inverse of ``project_branch``."""

from __future__ import annotations

import pytest

from steps.registry.registry import branch_options, project_branch


@pytest.mark.parametrize(("branch", "production", "options"), [
    ("x", False, "--branch x"),
    (None, True, "--production"),
    ("x", True, "--production --branch x"),
    (None, False, "no --branch or --production option"),
])
def test_options_give_back_the_branch(branch, production, options):
    assert branch_options(project_branch(branch, production, user="alice")) == options

