"""The library behind the flows: plain, typed functions the Metaflow steps call.

``METAFLOW_PACKAGE_POLICY = "include"`` makes Metaflow put this package into the code package it ships to
remote tasks (AWS Batch, Kubernetes), so ``import steps`` works there exactly as on a laptop.

Submodules load lazily (``importlib.util.LazyLoader``, the pattern of Scientific Python's SPEC 1): a flow file's
``from steps import cards, gates, training`` binds module objects whose code runs on first attribute access.
Metaflow starts a fresh process per task, per card and per CLI command, and every one of them imports the flow
file; with lazy submodules each process pays only for what its step uses (a TrainFlow ``start`` no longer loads
scikit-learn, LightGBM, SciPy and Matplotlib: about 2 s less per process on a laptop).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

METAFLOW_PACKAGE_POLICY = "include"


def __getattr__(name: str) -> ModuleType:
    """Return submodule ``steps.<name>``, loaded lazily (its code runs when one of its attributes is first used)."""
    fullname = f"{__name__}.{name}"
    if fullname in sys.modules:
        return sys.modules[fullname]
    spec = None if name.startswith("__") else importlib.util.find_spec(fullname)
    if spec is None or spec.loader is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[fullname] = module
    spec.loader.exec_module(module)
    globals()[name] = module
    return module
