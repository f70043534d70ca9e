"""Champion gates: challenger versus champion on the same hold-out."""

from __future__ import annotations

import math
from typing import Any

from steps.config.gates import GatesConfig
from steps.gates.result import GateResult
from steps.modeling.metrics import delong, paired_bootstrap


def champion_gates(y: Any, p_challenger: Any, p_champion: Any, cfg: GatesConfig, champion_run: str,
                   fairness: list[dict[str, Any]],
                   latency_p50: tuple[float, float], latency_calls: int | None = None,
                   latency_error: str | None = None) -> tuple[list[GateResult], dict[str, Any]]:
    """Challenger versus champion on the same hold-out: significance, fairness and latency non-inferiority.

    Args:
        fairness: paired-bootstrap disparity comparisons (``fairness.compare_disparities``). A disparity blocks
            promotion when it is clearly wider: the lower bound of its widening exceeds the tolerance (group
            rates on a hold-out are noisy; a point comparison would block good models on sampling noise alone).
        latency_p50: (challenger, champion) single-row median latency in ms (the median: p99 over a few hundred
            calls on a shared machine is too noisy to compare two models).
        latency_calls: how many single-row calls each model made, in turn with the other's
            (``efficiency.paired_latency``), for the detail; None: measured apart.
        latency_error: why the latencies could not be timed in turn (the champion's is then NaN, and the latency
            comparison fails saying so: as with a champion that cannot score, a person decides).
    """
    c = cfg.champion
    if cfg.champion_test() == "delong":
        comparison = delong(y, p_champion, p_challenger, cfg.bootstrap.confidence)
    else:
        comparison = paired_bootstrap(y, p_champion, p_challenger, cfg.primary_metric,
                                      max(cfg.bootstrap.samples, 500), cfg.bootstrap.confidence,
                                      cfg.bootstrap.seed)
    results = [GateResult(
        suite="champion", name=f"significantly_better[{comparison.metric}]",
        metric=f"{comparison.metric} difference (challenger - champion)",
        threshold=f">= {c.min_effect:g} and p < {c.alpha:g} ({comparison.method})",
        actual=comparison.difference, interval=(comparison.low, comparison.high),
        passed=comparison.significant(c.alpha, c.min_effect),
        detail=f"challenger {comparison.challenger:.4f} vs champion {comparison.champion:.4f} "
               f"(run {champion_run}), one-sided p = {comparison.p_value:.4f}")]
    for f in fairness:
        results.append(GateResult(
            "champion", f"not_less_fair[{f['name']}]", f"{f['name']} widening (challenger - champion)",
            f"lower bound <= {c.fairness_tolerance:g}", f["widening"], bool(f["low"] <= c.fairness_tolerance),
            interval=(f["low"], f["high"]),
            detail=f"challenger {f['challenger']:.4f} vs champion {f['champion']:.4f}"))
    how = (f"; {latency_calls} single-row calls each, the two models in turn on the same rows"
           if latency_calls else "")
    if c.latency_tolerance is None:  # switched off: measured and reported, never blocks
        results.append(GateResult("champion", "not_slower[p50_ms]", "p50_ms", "off (latency_tolerance: null)",
                                  latency_p50[0], True, detail=f"champion {latency_p50[1]:.3f} ms{how}",
                                  gated=False))
    elif not math.isfinite(latency_p50[1]):
        results.append(GateResult("champion", "not_slower[p50_ms]", "p50_ms", "both models timed on single rows",
                                  latency_p50[0], False, detail=f"not compared: {latency_error or 'not measured'}; "
                                  "promote by hand (`python -m steps.registry promote RUN_ID --force --reason ...`) "
                                  "if the challenger should replace the champion"))
    else:
        limit = latency_p50[1] * (1 + c.latency_tolerance)
        results.append(GateResult("champion", "not_slower[p50_ms]", "p50_ms", f"<= {limit:.3f} (champion "
                                  f"{latency_p50[1]:.3f} x {1 + c.latency_tolerance:g})", latency_p50[0],
                                  bool(latency_p50[0] <= limit), detail=how.removeprefix("; ")))
    return results, comparison.to_dict()


def unscored_gate(champion_run: str, error: str) -> GateResult:
    """The failed comparison of a champion that cannot score this hold-out (a changed schema, a broken model): the
    challenger is not compared, so it does not replace the champion unless a person promotes it."""
    return GateResult("champion", "champion_scored", "the champion scores the hold-out", "no error, all finite",
                      None, False, detail=f"champion run {champion_run}: {error}; nothing compared. Fix the "
                                          "champion or the data, or promote this run with `python -m steps.registry "
                                          "promote RUN_ID --force --reason ...`"[:800])
