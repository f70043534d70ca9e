"""Console output for the ``python -m steps.<module>`` command-line tools, through logging."""

from __future__ import annotations

import logging
import signal
import sys


def console(name: str) -> logging.Logger:
    """A logger that writes bare messages to stdout (the CLI's output); library logs stay on stderr."""
    out = logging.getLogger(f"{name}.console")
    if not out.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        out.addHandler(handler)
        out.setLevel(logging.INFO)
        out.propagate = False
    return out


def quiet_broken_pipe() -> None:
    """End quietly when the reader of stdout goes away (``... show | head -3``), as Unix tools do."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
