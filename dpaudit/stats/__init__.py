"""Statistics for privacy attacks and audits: pure numpy (scipy imported lazily), no torch.

The math layer that :mod:`dpaudit.attacks` and :mod:`dpaudit.audit` both read:

* :mod:`~dpaudit.stats.binomial` -- exact Clopper-Pearson bounds.
* :mod:`~dpaudit.stats.bounds` -- empirical epsilon lower bounds with valid threshold choice.
* :mod:`~dpaudit.stats.roc` -- descriptive ROC metrics.
* :mod:`~dpaudit.stats.caps` -- what an (eps, delta) claim allows (Kairouz region, GDP view)
  and the verdict of a lower bound against a claim.
* :mod:`~dpaudit.stats.tradeoff` -- trade-off functions (f-DP): mu-GDP, piecewise-linear
  curves of discrete pairs, the (eps, delta) curve, and their epsilons.
* :mod:`~dpaudit.stats.family` -- the claimed DP-SGD mechanism's curve from the PLD engine
  and its noise family, with upper and lower bounds on each member's epsilon.
* :mod:`~dpaudit.stats.fdp_test` -- the multi-run test of a curve: simultaneous
  Clopper-Pearson corners, p-values, the rejected part of a family.
* :mod:`~dpaudit.stats.one_run` -- one-run bounds: Steinke et al. 2023 (eps, delta) and the
  f-DP recursion of Mahloujifar et al. 2025.
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
from dpaudit.stats.fdp_test import RateCorners, curve_p_value, gdp_mu_lower, rate_corners
from dpaudit.stats.roc import FPR_LEVELS, RocMetrics, roc_metrics
from dpaudit.stats.tradeoff import (
    GaussianTradeoff,
    PiecewiseTradeoff,
    TradeoffCurve,
    kairouz_tradeoff,
    pmf_tradeoff,
)

__all__ = [
    "FPR_LEVELS",
    "METHODS",
    "VERDICTS",
    "EpsilonLowerBound",
    "GaussianTradeoff",
    "PiecewiseTradeoff",
    "RateCorners",
    "RocMetrics",
    "TradeoffCurve",
    "clopper_pearson",
    "counts_at",
    "cp_lower",
    "cp_upper",
    "curve_p_value",
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
    "gdp_mu_lower",
    "kairouz_tradeoff",
    "pmf_tradeoff",
    "rate_corners",
    "rank_grid",
    "roc_metrics",
    "verdict",
]
