"""Promotion gates: one module per suite, ``result`` (the verdict as data) and ``assess`` (runs every suite)."""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
