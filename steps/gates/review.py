"""The review gate: the share of low-confidence scores sent to a human has a budget."""

from __future__ import annotations

import logging

import numpy as np

from steps.config.gates import ReviewGates, Threshold
from steps.core.decision import in_band
from steps.gates.result import GateResult, check

logger = logging.getLogger(__name__)


def review_gates(proba: np.ndarray, cfg: ReviewGates) -> list[GateResult]:
    """The share of scores inside the review band (low confidence, sent to a human) must not exceed ``max_rate``."""
    flagged = in_band(proba, cfg.band)
    count, total = int(flagged.sum()), int(flagged.size)
    rate = count / total if total else 0.0
    low, high = cfg.band
    detail = f"{count} of {total} scores in [{low:g}, {high:g}]"
    logger.info("review: %s (%.2f%%)", detail, 100 * rate)
    if cfg.max_rate is None:
        return [check("review", "review_rate", f"share of scores in [{low:g}, {high:g}]", Threshold(max=1.0), rate,
                      detail=f"{detail}; no budget set (review.max_rate): reported, not gated", gated=False)]
    return [check("review", "review_rate", f"share of scores in [{low:g}, {high:g}]", Threshold(max=cfg.max_rate),
                  rate, detail=detail)]
