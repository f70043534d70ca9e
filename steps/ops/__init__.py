"""Operations tooling: the deploy pre-flight check and the generated-scenario runner behind ``make demo``."""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
