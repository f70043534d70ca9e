"""The family of user errors: bad data, bad config, bad arguments, a refused governance action.

A person must fix them; retrying cannot help. Every module raises a subclass of :class:`UserError` for such a
problem (``ConfigError``, ``DataValidationError``, ``ScoreInputError``, ``ScoreModelError``, ``RegistryError``, ...);
anything else is unexpected and keeps its traceback. The flows turn a user error into a Metaflow headline without a
traceback and exit so that the step is not retried (``flows/base.py``); the command-line tools print it as one line.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem the person running the flow or command must fix (the message says what and where)."""
