"""Decision rules shared by every flow: the decision threshold (set once per model, recorded with it) and the
review band."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from steps.core.errors import UserError

logger = logging.getLogger(__name__)


def in_band(proba: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """Boolean mask of scores inside ``band`` (both ends inclusive); NaN is never in the band."""
    score = np.asarray(proba, dtype=float)
    return (score >= band[0]) & (score <= band[1])


def _cuts(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, precision, recall, share flagged) of flagging ``score >= threshold`` at each distinct score,
    highest first."""
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True])  # last row of each group of equal scores
    tp = np.cumsum(ys)[last]
    flagged = last + 1.0
    positives = max(float(ys.sum()), 1.0)
    return ps[last], tp / flagged, tp / positives, flagged / max(float(y.size), 1.0)


def choose_threshold(policy: Any, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """The decision threshold ``policy`` (``config.gates.ThresholdPolicy``) sets on validation labels and scores.

    Returns ``threshold``, ``policy``, ``target`` and ``detail`` (what was reached on validation). A target no
    threshold reaches takes the closest one and says so in ``detail``; it never fails the run.
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    out: dict[str, Any] = {"policy": policy.policy, "target": policy.target, "rows": int(y.size)}
    if policy.policy == "fixed" or y.size == 0:
        value = policy.value if policy.value is not None else 0.5
        return {**out, "threshold": float(value), "detail": f"fixed at {value:g}"}
    thresholds, precision, recall, flagged = _cuts(y, p)
    if policy.policy == "precision":
        ok = np.flatnonzero(precision >= policy.target)
        i = int(ok[-1]) if ok.size else int(np.argmax(precision))  # the lowest threshold that reaches it
        reached = "" if ok.size else f" (no threshold reaches precision {policy.target:g}; the highest is used)"
        detail = f"precision {precision[i]:.4f}, recall {recall[i]:.4f} on {y.size} validation rows{reached}"
    elif policy.policy == "positive_rate":
        i = int(np.argmin(np.abs(flagged - policy.target)))
        detail = f"flags {flagged[i]:.4f} of {y.size} validation rows (target {policy.target:g})"
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
        i = int(np.argmax(f1))
        detail = f"F1 {f1[i]:.4f} (precision {precision[i]:.4f}, recall {recall[i]:.4f}) on {y.size} validation rows"
    return {**out, "threshold": float(np.clip(thresholds[i], 1e-6, 1 - 1e-6)), "detail": detail}


def decision_record(choice: dict[str, Any], band: tuple[float, float]) -> dict[str, Any]:
    """What a model carries about its decisions: the threshold (and how it was set) and the review band."""
    return {**choice, "review_band": [float(band[0]), float(band[1])]}


def decision_in_use(recorded: dict[str, Any] | None, override: float | None = None,
                    fallback: Any = None, band: tuple[float, float] = (0.4, 0.6)) -> dict[str, Any]:
    """The threshold and review band a scoring run uses, and where the threshold came from.

    A per-run ``override`` wins (logged as a warning); else the model's ``recorded`` decision; else, for a model from
    before decisions were recorded, the gates config's ``fallback`` policy when it is fixed (ValueError otherwise).
    """
    band = (float(recorded["review_band"][0]), float(recorded["review_band"][1])) if recorded else band
    if recorded is not None:
        threshold, source = float(recorded["threshold"]), f"model ({recorded.get('policy', 'fixed')})"
    elif fallback is not None and fallback.policy == "fixed":
        threshold, source = float(fallback.value), "gates config (the model records no threshold)"
    elif override is None:
        raise UserError("the model records no decision threshold (a run from before thresholds were recorded) and "
                         "the gates config's policy is not fixed: give one with --decision-threshold")
    else:
        threshold, source = float(override), "override"
    if override is not None and source != "override":
        logger.warning("decision threshold %.4g for this run only (the model's: %.4g from %s)", override, threshold,
                       source)
        threshold, source = float(override), f"override (the model's {threshold:.4g})"
    return {"threshold": threshold, "review_band": [band[0], band[1]], "source": source}


def parse_override(text: str) -> float | None:
    """A ``--decision-threshold`` value: None when empty, else a number strictly between 0 and 1 (UserError)."""
    if not str(text).strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"--decision-threshold must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise UserError(f"--decision-threshold must be strictly between 0 and 1, got {value}")
    return value
