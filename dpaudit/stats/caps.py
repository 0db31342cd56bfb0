"""What an (eps, delta)-DP claim allows a membership test: the Kairouz region and its caps
(TPR at FPR, advantage, AUC), the mu-GDP view of a claim (Dong, Roth, Su 2022, JRSS-B,
Cor. 2.13) and the verdict of an empirical lower bound against a claim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.stats._validate import check_delta, check_epsilon
from dpaudit.stats.roc import FPR_LEVELS


# --------------------------------------------------------------------------- DP caps
def dp_tpr_cap(fpr: float | np.ndarray, epsilon: float, delta: float) -> float | np.ndarray:
    """Largest TPR an (eps, delta)-DP model allows at a given FPR (Kairouz et al. 2015,
    Thm. 2.1): ``min(1, e^eps FPR + delta, 1 - e^-eps (1 - delta - FPR))``."""
    e, d = check_epsilon(epsilon), check_delta(delta)
    a = np.asarray(fpr, dtype=np.float64)
    with np.errstate(over="ignore"):
        cap = np.minimum.reduce(
            [np.ones_like(a), math.exp(min(e, 700.0)) * a + d, 1.0 - math.exp(-e) * (1.0 - d - a)]
        )
    cap = np.clip(cap, 0.0, 1.0)
    return float(cap) if cap.ndim == 0 else cap


def dp_advantage_cap(epsilon: float, delta: float) -> float:
    """Max TPR - FPR under (eps, delta)-DP: ``(e^eps - 1 + 2 delta) / (e^eps + 1)``, reached at
    FPR = FNR = (1-delta)/(1+e^eps) (the corner of the Kairouz region; cf. Humphries et al.
    2020).  Balanced-accuracy cap = (1 + advantage cap) / 2."""
    e, d = check_epsilon(epsilon), check_delta(delta)
    if e > 700:
        return 1.0
    return min(1.0, (math.exp(e) - 1.0 + 2.0 * d) / (math.exp(e) + 1.0))


def dp_auc_cap(epsilon: float, delta: float) -> float:
    """Largest ROC AUC any test can reach against an (eps, delta)-DP model: the area under
    :func:`dp_tpr_cap`, a piecewise-linear curve through (0, delta), the corner
    ((1-delta)/(1+e^eps), (e^eps+delta)/(1+e^eps)), (1-delta, 1) and (1, 1); exact."""
    e, d = check_epsilon(epsilon), check_delta(delta)
    if e > 700:
        return 1.0
    a_star = (1.0 - d) / (1.0 + math.exp(e))
    xs = [0.0, a_star, 1.0 - d, 1.0]
    ys = [d, (math.exp(e) + d) / (1.0 + math.exp(e)), 1.0, 1.0]
    return float(sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2.0 for i in range(3)))


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(eps) of mu-GDP: ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)`` (Dong, Roth,
    Su 2022, Cor. 2.13; the exact Gaussian-mechanism curve of Balle & Wang 2018, Thm 8).
    One implementation: :func:`dpaudit.accounting.gaussian.gaussian_delta`."""
    from dpaudit.accounting.gaussian import gaussian_delta

    if mu < 0 or not math.isfinite(mu):
        raise InvalidParameterError(f"mu must be finite and >= 0, got {mu!r}")
    return gaussian_delta(float(mu), check_epsilon(epsilon))


def gdp_epsilon(mu: float, delta: float) -> float:
    """Smallest eps with mu-GDP => (eps, delta)-DP, i.e. the root of ``gdp_delta(mu, eps) =
    delta`` (delta is decreasing in eps; relative precision 1e-12). Returns 0 when
    ``gdp_delta(mu, 0) <= delta``. One implementation:
    :func:`dpaudit.accounting.gaussian.gaussian_epsilon`."""
    from dpaudit.accounting.gaussian import gaussian_epsilon

    d = check_delta(delta)
    if d <= 0:
        raise InvalidParameterError("gdp_epsilon needs delta > 0 (mu-GDP is not (eps, 0)-DP)")
    if mu < 0 or not math.isfinite(mu):
        raise InvalidParameterError(f"mu must be finite and >= 0, got {mu!r}")
    return gaussian_epsilon(float(mu), d)


def gdp_mu(epsilon: float, delta: float) -> float:
    """The mu whose GDP trade-off curve passes through (eps, delta): the largest mu with
    mu-GDP => (eps, delta)-DP (delta of mu-GDP increases with mu; Dong et al. 2022, Cor. 2.13).
    This is the "GDP approximation" of an (eps, delta) claim.  Needs delta > 0 (no mu > 0
    GDP mechanism is (eps, 0)-DP); returns inf when mu would exceed 1e4."""
    from scipy.optimize import brentq

    e, d = check_epsilon(epsilon), check_delta(delta)
    if d <= 0:
        raise InvalidParameterError("gdp_mu needs delta > 0")
    hi = 1.0
    while gdp_delta(hi, e) < d:
        hi *= 2.0
        if hi > 1e4:
            return math.inf
    return float(brentq(lambda x: gdp_delta(x, e) - d, 0.0, hi, xtol=1e-12, rtol=1e-12))


def gdp_auc_cap(epsilon: float, delta: float) -> float:
    """AUC of the mu-GDP trade-off curve with mu = :func:`gdp_mu` (eps, delta):
    ``Phi(mu / sqrt 2)`` (the AUC of N(mu, 1) vs N(0, 1)).  An approximation — the sound cap
    is :func:`dp_auc_cap`; DP-SGD's privacy curve is close to GDP for many steps (Dong et al.
    2022, Thm. 3.5 CLT), so this is the more realistic ceiling."""
    from scipy.special import ndtr

    mu = gdp_mu(epsilon, delta)
    if not math.isfinite(mu):
        return 1.0
    return float(ndtr(mu / math.sqrt(2.0)))


def dp_caps(
    epsilon: float | None, delta: float | None, fpr_levels: Sequence[float] = FPR_LEVELS
) -> dict | None:
    """All caps an (eps, delta)-DP claim imposes on a membership attack, as a JSON-able dict:
    ``tpr_at_fpr`` (per level), ``advantage``, ``balanced_accuracy``, ``auc`` (exact region
    bound), ``auc_gdp`` (GDP approximation) and ``gdp_mu``.  ``None`` when there is no claim."""
    if epsilon is None or not math.isfinite(float(epsilon)):
        return None
    d = 0.0 if delta is None else float(delta)
    adv = dp_advantage_cap(epsilon, d)
    return {
        "epsilon": float(epsilon),
        "delta": d,
        "tpr_at_fpr": {str(float(lv)): float(dp_tpr_cap(lv, epsilon, d)) for lv in fpr_levels},
        "advantage": adv,
        "balanced_accuracy": (1.0 + adv) / 2.0,
        "auc": dp_auc_cap(epsilon, d),
        "auc_gdp": gdp_auc_cap(epsilon, d) if d > 0 else None,
        "gdp_mu": gdp_mu(epsilon, d) if d > 0 else None,
    }


# --------------------------------------------------------------------------- verdict
VERDICTS: tuple[str, ...] = ("consistent", "violation", "no-claim")


def verdict(epsilon_lb: float, claimed_epsilon: float | None) -> str:
    """``"violation"`` if the empirical lower bound exceeds the claimed epsilon (at the bound's
    confidence), ``"consistent"`` if not, ``"no-claim"`` for a model without a finite claim."""
    if claimed_epsilon is None or not math.isfinite(float(claimed_epsilon)):
        return "no-claim"
    return "violation" if float(epsilon_lb) > float(claimed_epsilon) else "consistent"
