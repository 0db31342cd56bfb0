"""Conversions between privacy notions, and small numerical helpers shared by accountants.

Every function returns an *upper bound* on epsilon (or delta): any order alpha > 1 gives a
valid bound, so minimising over a finite grid of orders is sound; non-finite inputs at an
order (overflow, non-convergence) only remove that order from the minimum.

Units: epsilon and RDP values are in nats; ``delta`` is a probability; ``rho`` is the zCDP
parameter (Bun & Steinke 2016, Def. 1.1: D_alpha(P||Q) <= rho * alpha for all alpha > 1).

Only ``math`` and numpy are imported here, so the CLI starts fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dpaudit.accounting.gaussian import log_erfc  # noqa: F401 - re-exported (moved)
from dpaudit.errors import InvalidParameterError

#: Smallest order used by the improved conversion: the Balle et al. (2020) term is
#: numerically unstable as alpha -> 1 (same cut-off as dp_accounting's RdpAccountant).
IMPROVED_MIN_ORDER = 1.01


# ----------------------------------------------------------------------------- RDP -> DP
def _as_curve(
    orders: Sequence[float] | np.ndarray, rdp: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(orders, dtype=float)
    r = np.asarray(rdp, dtype=float)
    if a.ndim != 1 or r.shape[-1] != a.shape[0]:
        raise InvalidParameterError("orders and RDP values must have the same length")
    if np.any(~(a > 1.0)):
        raise InvalidParameterError("RDP orders must all be > 1")
    # NaN means "no bound known at this order": treat as +inf (sound: the order is skipped).
    r = np.where(np.isnan(r), np.inf, r)
    # A (numerically) negative divergence is impossible; clamp to 0.
    r = np.maximum(r, 0.0)
    return a, r


def rdp_to_epsilon(
    orders: Sequence[float] | np.ndarray, rdp: Sequence[float] | np.ndarray, delta: float
) -> tuple[float, float]:
    """Smallest epsilon such that the RDP curve implies (epsilon, delta)-DP.

    Per order alpha > 1.01 (Balle, Barthe, Gaboardi, Hsu, Sato 2020, "Hypothesis testing
    interpretations and Renyi differential privacy", AISTATS, Thm 21; also Canonne, Kamath,
    Steinke 2020, Prop. 12):

        epsilon(alpha) = rdp(alpha) + log((alpha - 1)/alpha) - (log(delta) + log(alpha)) / (alpha - 1)

    and, at every order, the total-variation bound: D_alpha >= KL and the Bretagnolle-Huber
    inequality TV <= sqrt(1 - exp(-KL)) give (0, delta)-DP whenever
    delta >= sqrt(1 - exp(-rdp(alpha))). Same rule as dp_accounting's ``compute_epsilon``.

    ``rdp`` may be 2-D (rows = several curves, e.g. one per epoch); then arrays are returned.

    Returns:
        (epsilon, optimal order); epsilon is ``inf`` when no order gives a finite bound.
    """
    a, r = _as_curve(orders, rdp)
    if not 0.0 < delta < 1.0:
        raise InvalidParameterError(f"delta must be in (0, 1), got {delta!r}")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        eps = r + np.log1p(-1.0 / a) - math.log(delta) / (a - 1.0) - np.log(a) / (a - 1.0)
        eps = np.where(a > IMPROVED_MIN_ORDER, eps, np.inf)
        eps = np.where(delta * delta + np.expm1(-r) > 0.0, 0.0, eps)
    idx = np.argmin(eps, axis=-1)
    best = np.take_along_axis(eps, np.expand_dims(idx, -1), axis=-1)[..., 0]
    best = np.maximum(best, 0.0)
    if best.ndim == 0:
        return float(best), float(a[int(idx)])
    return best, a[idx]


def rdp_to_delta(
    orders: Sequence[float] | np.ndarray, rdp: Sequence[float] | np.ndarray, epsilon: float
) -> tuple[float, float]:
    """Smallest delta such that the RDP curve implies (epsilon, delta)-DP (inverse of
    :func:`rdp_to_epsilon`; Balle et al. 2020 Thm 21 solved for delta):

        log delta(alpha) = (alpha - 1) * (rdp - epsilon + log(1 - 1/alpha)) - log(alpha),

    minimised with the Bretagnolle-Huber bound 0.5 * log(1 - exp(-rdp)).

    Returns:
        (delta, optimal order), delta capped at 1.
    """
    a, r = _as_curve(orders, rdp)
    if not (epsilon >= 0.0) or math.isinf(epsilon):
        raise InvalidParameterError(f"epsilon must be finite and >= 0, got {epsilon!r}")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        tv = np.where(r > 0.0, 0.5 * np.log1p(-np.exp(-r)), -np.inf)
        rb = (a - 1.0) * (r - epsilon + np.log1p(-1.0 / a)) - np.log(a)
        rb = np.where(np.isnan(rb), np.inf, rb)
        logd = np.where(a > IMPROVED_MIN_ORDER, np.minimum(tv, rb), tv)
    idx = int(np.argmin(logd))
    return min(math.exp(min(float(logd[idx]), 0.0)), 1.0), float(a[idx])


def rdp_to_epsilon_classic(
    orders: Sequence[float] | np.ndarray, rdp: Sequence[float] | np.ndarray, delta: float
) -> tuple[float, float]:
    """Classic RDP -> (epsilon, delta) conversion (Mironov 2017, "Renyi Differential
    Privacy", CSF, Prop. 3): epsilon = min_alpha rdp(alpha) + log(1/delta) / (alpha - 1).

    Looser than :func:`rdp_to_epsilon`; kept to reproduce published figures (TF-Privacy,
    Abadi et al.'s moments accountant tail bound).
    """
    a, r = _as_curve(orders, rdp)
    if not 0.0 < delta < 1.0:
        raise InvalidParameterError(f"delta must be in (0, 1), got {delta!r}")
    eps = r - math.log(delta) / (a - 1.0)
    idx = int(np.argmin(eps))
    return max(float(eps[idx]), 0.0), float(a[idx])


# ----------------------------------------------------------------------------- zCDP -> DP
def zcdp_to_epsilon_bun_steinke(rho: float, delta: float) -> float:
    """rho-zCDP => (rho + 2 sqrt(rho log(1/delta)), delta)-DP (Bun & Steinke 2016,
    "Concentrated Differential Privacy: Simplifications, Extensions, and Lower Bounds",
    TCC, Prop. 1.3)."""
    if rho < 0 or math.isnan(rho):
        raise InvalidParameterError(f"rho must be >= 0, got {rho!r}")
    if math.isinf(rho):
        return math.inf
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def _cks_epsilon(rho: np.ndarray | float, alpha: np.ndarray, delta: float) -> np.ndarray:
    """Canonne, Kamath, Steinke 2020 ("The Discrete Gaussian for Differential Privacy",
    NeurIPS), Prop. 12 applied to D_alpha <= rho * alpha (their Cor. 13), per order:

        epsilon(alpha) = rho*alpha + log(1 - 1/alpha) - (log(delta) + log(alpha)) / (alpha - 1).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = (
            np.asarray(rho)[..., None] * alpha
            + np.log1p(-1.0 / alpha)
            - (math.log(delta) + np.log(alpha)) / (alpha - 1.0)
        )
    return np.where(np.isnan(out), np.inf, out)


#: Orders on which the zCDP conversion is minimised (any alpha > 1 is valid; a dense
#: geometric grid loses < 1e-4 relative against the continuous optimum).
ZCDP_ALPHAS = 1.0 + np.geomspace(1e-3, 1e7, 2400)


def zcdp_to_epsilon(rho: float, delta: float, max_order: float = math.inf) -> tuple[float, str, float]:
    """Tightest of the two sound zCDP -> (epsilon, delta)-DP conversions.

    With ``max_order`` < inf the input is (rho, max_order)-truncated CDP (Bun, Dwork,
    Rothblum, Steinke 2018, "Composable and versatile privacy via truncated CDP", STOC,
    Def. 1 / Lemma 6): D_alpha <= rho*alpha only for alpha in (1, max_order], so only those
    orders are used (Bun & Steinke's closed form is used only if its optimal order
    1 + sqrt(log(1/delta)/rho) lies in range).

    Returns:
        (epsilon, method name, order used).
    """
    if rho < 0 or math.isnan(rho):
        raise InvalidParameterError(f"rho must be >= 0, got {rho!r}")
    if not 0.0 < delta < 1.0:
        raise InvalidParameterError(f"delta must be in (0, 1), got {delta!r}")
    if rho == 0.0:
        return 0.0, "zCDP, rho = 0", math.inf
    if math.isinf(rho):
        return math.inf, "zCDP, no finite rho", math.nan
    alphas = ZCDP_ALPHAS[ZCDP_ALPHAS <= max_order]
    if alphas.size == 0:
        alphas = np.array([max_order])
    eps = _cks_epsilon(rho, alphas, delta)
    i = int(np.argmin(eps))
    best, method, order = float(eps[i]), "zCDP -> DP, Canonne-Kamath-Steinke 2020 Cor. 13", float(alphas[i])
    a_bs = 1.0 + math.sqrt(math.log(1.0 / delta) / rho)
    if a_bs <= max_order:
        bs = zcdp_to_epsilon_bun_steinke(rho, delta)
        if bs < best:
            best, method, order = bs, "zCDP -> DP, Bun-Steinke 2016 Prop. 1.3", a_bs
    return max(best, 0.0), method, order


def zcdp_to_delta(rho: float, epsilon: float, max_order: float = math.inf) -> float:
    """Smallest delta certified for ``epsilon`` by rho-zCDP (or (rho, max_order)-tCDP):
    log delta = min_alpha (alpha-1)(rho*alpha - epsilon) + (alpha-1) log(1-1/alpha) - log alpha
    (Canonne, Kamath, Steinke 2020, Cor. 13), capped at 1."""
    if rho == 0.0:
        return 0.0
    if math.isinf(rho):
        return 1.0
    a = ZCDP_ALPHAS[ZCDP_ALPHAS <= max_order]
    if a.size == 0:
        a = np.array([max_order])
    with np.errstate(over="ignore", invalid="ignore"):
        logd = (a - 1.0) * (rho * a - epsilon + np.log1p(-1.0 / a)) - np.log(a)
    logd = np.where(np.isnan(logd), np.inf, logd)
    return float(min(math.exp(min(float(np.min(logd)), 0.0)), 1.0))
