"""The normal law and the exact privacy curve of the Gaussian mechanism.

* :func:`norm_sf`, :func:`norm_cdf`, :func:`interval_masses`: the standard normal law in
  full double precision in both tails (``math.erfc``, no scipy import, so the CLI starts fast).
* :func:`log_erfc`, :func:`log_norm_cdf`: logarithms of the same, accurate far into the
  tails (asymptotic series where erfc underflows);
* :func:`gaussian_delta` / :func:`gaussian_epsilon`: the exact (epsilon, delta) curve of the
  Gaussian mechanism with sensitivity/noise ratio mu, i.e. of mu-GDP:
  delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Balle & Wang 2018, ICML,
  Thm 8; Dong, Roth, Su 2022, JRSS-B, Cor. 2.13).

This is the one implementation of that curve in dpaudit: the PLD accountant, the shuffle
lower bound and the attack/audit statistics (:mod:`dpaudit.stats`) all use it.
"""

from __future__ import annotations

import math

import numpy as np

_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_PI = 0.5 * math.log(math.pi)
_LOG2 = math.log(2.0)
_erfc_ufunc = np.frompyfunc(math.erfc, 1, 1)


# ---------------------------------------------------------------------------- normal law
def _erfc(x: np.ndarray) -> np.ndarray:
    """Vectorised ``math.erfc`` (full double precision, no scipy import)."""
    return np.asarray(_erfc_ufunc(np.asarray(x, dtype=float)), dtype=float)


def norm_sf(z: np.ndarray | float) -> np.ndarray:
    """Standard normal survival function 1 - Phi(z), accurate in the upper tail."""
    return 0.5 * _erfc(np.asarray(z, dtype=float) / _SQRT2)


def norm_cdf(z: np.ndarray | float) -> np.ndarray:
    """Standard normal CDF Phi(z), accurate in the lower tail."""
    return 0.5 * _erfc(-np.asarray(z, dtype=float) / _SQRT2)


def interval_masses(z: np.ndarray) -> np.ndarray:
    """P(z[k] < Z <= z[k+1]) for increasing breakpoints z (may hold +-inf), computed from
    whichever tail keeps the difference well conditioned (one erfc per breakpoint)."""
    t = norm_sf(np.abs(z))  # the small tail, accurate
    pos = z >= 0.0
    s = np.where(pos, t, 1.0 - t)  # 1 - Phi(z), accurate for z >= 0
    c = np.where(pos, 1.0 - t, t)  # Phi(z), accurate for z < 0
    upper = s[:-1] - s[1:]
    lower = c[1:] - c[:-1]
    return np.maximum(np.where(pos[:-1], upper, lower), 0.0)


def log_erfc(x: float) -> float:
    """Natural log of the complementary error function, accurate for large ``x``.

    ``math.erfc`` keeps full relative precision until it underflows near x ~ 26.5; beyond
    x > 25 we use the asymptotic (Laurent) expansion at infinity (Abramowitz & Stegun 7.1.23):

        erfc(x) = exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6) + 105/(16x^8) - ...)

    whose truncation error after the x^-8 term is below 945/(32 x^10) < 4e-13 at x = 25.
    """
    x = float(x)
    if math.isnan(x):
        return math.nan
    if x <= 25.0:
        return math.log(math.erfc(x))
    if math.isinf(x):
        return -math.inf
    y = 1.0 / (x * x)
    series = 1.0 + y * (-0.5 + y * (0.75 + y * (-1.875 + y * 6.5625)))
    return -x * x - math.log(x) - _LOG_SQRT_PI + math.log(series)


_log_erfc_ufunc = np.frompyfunc(log_erfc, 1, 1)


def log_norm_cdf(z: np.ndarray | float) -> np.ndarray:
    """log Phi(z) in full relative precision in both tails: log1p(-(1 - Phi(z))) for
    z >= -1, log(erfc(-z/sqrt 2)) - log 2 (:func:`log_erfc`) below, so that even
    z = -10^4 gives a finite value."""
    z = np.asarray(z, dtype=float)
    upper = z >= -1.0
    out = np.empty(z.shape)
    out[upper] = np.log1p(-norm_sf(z[upper]))
    out[~upper] = np.asarray(_log_erfc_ufunc(-z[~upper] / _SQRT2), dtype=float) - _LOG2
    return out


def _mills(x: float) -> float:
    """Mills ratio R(x) = (1 - Phi(x)) / phi(x) for x >= 0 (continued fraction beyond 8)."""
    if x < 8.0:
        return 0.5 * math.erfc(x / _SQRT2) * math.exp(0.5 * x * x + _LOG_SQRT_2PI)
    # Laplace continued fraction R(x) = 1/(x+1/(x+2/(x+3/(x+...)))), evaluated backwards.
    acc = x
    for k in range(60, 0, -1):
        acc = x + k / acc
    return 1.0 / acc


def gaussian_delta(mu: float, epsilon: float) -> float:
    """Exact delta(eps) of the Gaussian mechanism with sensitivity/noise ratio ``mu``.

    delta = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Balle & Wang 2018, Thm 8),
    the second term evaluated as phi(a) * R(-b) with R the Mills ratio, using
    e^eps phi(b) = phi(a) for a = -eps/mu + mu/2, b = a - mu, so nothing overflows.
    """
    if mu <= 0.0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    a = -epsilon / mu + 0.5 * mu
    b = a - mu
    first = 0.5 * math.erfc(-a / _SQRT2)
    log_phi_a = -0.5 * a * a - _LOG_SQRT_2PI
    if b <= 0.0:
        second = math.exp(log_phi_a) * _mills(-b)
    else:  # e^eps Phi(b), b > 0: only when eps < mu^2/2 - ... small; direct is fine
        second = math.exp(epsilon) * 0.5 * math.erfc(-b / _SQRT2)
    return max(0.0, first - second)


def gaussian_epsilon(mu: float, delta: float) -> float:
    """Smallest eps with ``gaussian_delta(mu, eps) <= delta`` (bisection; the returned
    value is the upper end of the final bracket, so it is never below the exact root)."""
    if mu <= 0.0:
        return 0.0
    if math.isinf(mu):
        return math.inf
    if gaussian_delta(mu, 0.0) <= delta:
        return 0.0
    lo, hi = 0.0, max(1.0, 0.5 * mu * mu + mu * (2.0 + math.sqrt(2.0 * math.log(1.0 / delta))))
    while gaussian_delta(mu, hi) > delta:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if gaussian_delta(mu, mid) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return hi
