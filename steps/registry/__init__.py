"""The model registry: champion / candidate / archived run tags per ``@project`` branch (``registry``), its
append-only audit log (``store``) and its command line (``python -m steps.registry --help``)."""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
