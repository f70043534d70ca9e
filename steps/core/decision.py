"""Decision rules shared by every flow: the review band and which decision threshold applies."""

from __future__ import annotations

import numpy as np


def in_band(proba: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Boolean mask of scores inside ``band`` (both ends inclusive); NaN is never in the band."""
    score = np.asarray(proba, dtype=float)
    return (score >= band[0]) & (score <= band[1])


def decision_threshold(override: float | None, default: float) -> float:
    """The decision threshold: a flow's own setting when it has one, else the gates config's (``default``)."""
    return float(override) if override is not None else float(default)
