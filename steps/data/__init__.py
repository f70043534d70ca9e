"""Data in: loading with lineage, the data contract (validation and coercion for training and scoring), splits,
synthetic data."""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
