"""The library behind the flows: plain, typed functions the Metaflow steps call, one subpackage per lifecycle stage.

``core`` (storage, timing, decision rules, errors, CLI output) and ``config`` (the YAML schemas) are used by every
stage; then ``data`` -> ``modeling`` -> ``gates`` | ``registry`` -> ``distill`` -> ``scoring`` -> ``monitoring``, and
``reporting`` | ``ops`` on top. A module imports only from its own stage and the ones below it (checked by
import-linter in ``make lint``); nothing imports a flow.

``METAFLOW_PACKAGE_POLICY = "include"`` makes Metaflow put this package into the code package it ships to remote
tasks (AWS Batch, Kubernetes), so ``import steps`` works there exactly as on a laptop.

Submodules load lazily (``importlib.util.LazyLoader``, the pattern of Scientific Python's SPEC 1): a flow file's
``from steps.modeling import training`` binds a module object whose code runs on first attribute access. Metaflow
starts a fresh process per task, per card and per CLI command, and every one of them imports the flow file; with lazy
submodules each process pays only for what its step uses (a TrainFlow ``start`` does not load scikit-learn,
LightGBM or SciPy). A lazy module answers its name and file and Metaflow's ``METAFLOW_PACKAGE_POLICY``
without running its code: a run's runtime process reads the name and the policy of every module in ``sys.modules`` to
build the code package, and a plain ``LazyLoader`` module would load there, before the first task starts (~3.5 s of
SciPy and pandas for TrainFlow). Any other attribute (``__spec__`` too, which ``importlib.reload`` reads)
loads the module, by LazyLoader's own class.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

METAFLOW_PACKAGE_POLICY = "include"
# Set by importlib.util.module_from_spec before the module's code runs, so already true of the unloaded module (a
# plain module has no __path__: asking for it loads the module, as before). Not __spec__: importlib.reload replaces it.
SPEC_ATTRIBUTES = frozenset({"__name__", "__file__", "__path__", "__package__", "__cached__"})

_UNTIL_USED: dict[type[ModuleType], type[ModuleType]] = {}
_HAND_OVER = threading.Lock()


def _until_used(lazy: type[ModuleType]) -> type[ModuleType]:
    """``lazy`` (LazyLoader's module class) answering its spec's attributes and Metaflow's package policy unloaded.

    No submodule of ``steps`` sets ``METAFLOW_PACKAGE_POLICY`` (the package does), so it is absent without loading.
    """
    if lazy in _UNTIL_USED:
        return _UNTIL_USED[lazy]

    class UntilUsed(lazy):  # type: ignore[valid-type,misc]
        def __getattribute__(self, attr: str) -> Any:
            if attr == "METAFLOW_PACKAGE_POLICY":
                name = ModuleType.__getattribute__(self, "__name__")
                raise AttributeError(f"module {name!r} has no attribute {attr!r} (none of steps' submodules sets it)")
            if attr in SPEC_ATTRIBUTES:
                namespace = ModuleType.__getattribute__(self, "__dict__")
                if attr in namespace:
                    return namespace[attr]
            with _HAND_OVER:  # back to LazyLoader's class, which loads (Python 3.11.9+ checks its class is exact)
                if ModuleType.__getattribute__(self, "__class__") is UntilUsed:
                    ModuleType.__setattr__(self, "__class__", lazy)
            return getattr(self, attr)

    return _UNTIL_USED.setdefault(lazy, UntilUsed)


def lazy_submodules(package: str) -> Callable[[str], ModuleType]:
    """A module ``__getattr__`` for ``package`` that returns its submodules, loaded lazily."""
    def __getattr__(name: str) -> ModuleType:
        fullname = f"{package}.{name}"
        if fullname in sys.modules:
            return sys.modules[fullname]
        spec = None if name.startswith("__") else importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[fullname] = module
        spec.loader.exec_module(module)  # LazyLoader: the code runs on first attribute access
        module.__class__ = _until_used(type(module))
        setattr(sys.modules[package], name, module)
        return module

    return __getattr__


__getattr__ = lazy_submodules(__name__)
