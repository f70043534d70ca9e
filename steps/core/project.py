"""The project's name (Metaflow ``@project``) and where its checkout and configs live."""

from __future__ import annotations

from pathlib import Path

PROJECT = "tabular_mlops"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = PROJECT_ROOT / "config"
