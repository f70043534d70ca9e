"""Used by every stage: storage (local and s3://), timing, decision rules, errors, CLI output."""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
