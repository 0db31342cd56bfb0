"""Statistics for privacy attacks and audits: pure numpy (scipy imported lazily), no torch.

The math layer that :mod:`dpaudit.attacks` and :mod:`dpaudit.audit` both read:

* :mod:`~dpaudit.stats.binomial` -- exact Clopper-Pearson bounds.
* :mod:`~dpaudit.stats.bounds` -- empirical epsilon lower bounds with valid threshold choice.
* :mod:`~dpaudit.stats.roc` -- descriptive ROC metrics.
* :mod:`~dpaudit.stats.caps` -- what an (eps, delta) claim allows (Kairouz region, GDP view)
  and the verdict of a lower bound against a claim.
"""

from __future__ import annotations

from dpaudit.stats.binomial import clopper_pearson, cp_lower, cp_upper
from dpaudit.stats.bounds import (
    METHODS,
    EpsilonLowerBound,
    counts_at,
    eps_from_rate_bounds,
    epsilon_lower_bound,
    epsilon_lower_bound_from_scores,
    rank_grid,
)
from dpaudit.stats.caps import (
    VERDICTS,
    dp_advantage_cap,
    dp_auc_cap,
    dp_caps,
    dp_tpr_cap,
    gdp_auc_cap,
    gdp_delta,
    gdp_epsilon,
    gdp_mu,
    verdict,
)
from dpaudit.stats.roc import FPR_LEVELS, RocMetrics, roc_metrics

__all__ = [
    "FPR_LEVELS",
    "METHODS",
    "VERDICTS",
    "EpsilonLowerBound",
    "RocMetrics",
    "clopper_pearson",
    "counts_at",
    "cp_lower",
    "cp_upper",
    "dp_advantage_cap",
    "dp_auc_cap",
    "dp_caps",
    "dp_tpr_cap",
    "eps_from_rate_bounds",
    "epsilon_lower_bound",
    "epsilon_lower_bound_from_scores",
    "gdp_auc_cap",
    "gdp_delta",
    "gdp_epsilon",
    "gdp_mu",
    "rank_grid",
    "roc_metrics",
    "verdict",
]
