"""Monitoring (MonitorFlow): drift per period, moving baselines, late-label feedback, state, alerts, retraining.

A *period* is one ScoreFlow partition date. Each statistic of a period (PSI, Jensen-Shannon distance, KS statistic,
null-rate change, decision/review-rate change) is judged against its own trailing history (robust z-score or
percentile), or against a static threshold while that history is short. The statistics come from scipy:
``scipy.special.rel_entr`` (PSI is the symmetrised relative entropy), ``scipy.spatial.distance.jensenshannon``,
``scipy.stats.kstwo`` (the KS p-value; the statistic from one sort of the period's values, equal to what
``scipy.stats.ks_2samp`` returns) and ``scipy.stats.median_abs_deviation``.
"""

from steps import lazy_submodules

__getattr__ = lazy_submodules(__name__)
