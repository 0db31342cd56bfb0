"""Exact binomial confidence bounds (Clopper & Pearson 1934, Biometrika 26(4)).

``lo = B^{-1}(a; k, n-k+1)``, ``hi = B^{-1}(1-a; k+1, n-k)`` with B^{-1} the Beta quantile:
P(p > hi) <= a and P(p < lo) <= a for every true proportion p. scipy is imported lazily.
"""

from __future__ import annotations

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.stats._validate import check_confidence


def cp_upper(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided upper Clopper-Pearson bound: P(p > hi) <= alpha.  ``hi = 1`` when k = n."""
    from scipy.special import betaincinv

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        hi = betaincinv(k + 1.0, np.maximum(n - k, 1e-300), 1.0 - alpha)
    return np.where(k >= n, 1.0, hi)


def cp_lower(k: np.ndarray | int, n: np.ndarray | int, alpha: float) -> np.ndarray:
    """One-sided lower Clopper-Pearson bound: P(p < lo) <= alpha.  ``lo = 0`` when k = 0."""
    from scipy.special import betaincinv

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = betaincinv(np.maximum(k, 1e-300), n - k + 1.0, alpha)
    return np.where(k <= 0, 0.0, lo)


def clopper_pearson(
    k: int, n: int, confidence: float = 0.95, two_sided: bool = True
) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) confidence interval for a binomial proportion ``k/n``.

    ``two_sided=True``: ``P(lo <= p <= hi) >= confidence``, each tail ``(1-confidence)/2``.
    ``two_sided=False``: both ends are one-sided bounds at level ``confidence`` each
    (``P(p <= hi) >= confidence`` and, separately, ``P(p >= lo) >= confidence``).
    Returns ``(lo, hi)`` as floats in [0, 1].
    """
    c = check_confidence(confidence)
    if int(n) != n or int(k) != k or n < 1 or not (0 <= k <= n):
        raise InvalidParameterError(f"need integers 0 <= k <= n, n >= 1; got k={k!r}, n={n!r}")
    alpha = (1.0 - c) / 2.0 if two_sided else 1.0 - c
    return float(cp_lower(k, n, alpha)), float(cp_upper(k, n, alpha))

