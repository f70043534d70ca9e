"""What people read: cards, plots, run inspection for notebooks, reports, partition audits."""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
