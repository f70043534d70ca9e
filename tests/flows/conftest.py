"""Fixtures of the flow tests (the MonitorFlow runs are in tests/conftest.py: notebook 04 reads them too)."""

from __future__ import annotations

import pytest

from steps.config import DatasetConfig, load_file


@pytest.fixture(scope="session")
def spec(config_paths) -> DatasetConfig:
    """The default dataset config, parsed."""
    return load_file(DatasetConfig, config_paths["dataset"])
