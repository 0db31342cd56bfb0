"""Testing an f-DP claim with many runs: simultaneous confidence corners (FPR, FNR).

Design (Nasr et al. 2023, USENIX Security, "Tight Auditing of Differentially Private Machine
Learning", Sec. 4, test of a trade-off curve; Dong, Roth, Su 2022, JRSS-B, Def. 2.1-2.3):
``n_in`` runs with the canary and ``n_out`` without give one score per run (higher means
"in"). For a threshold tau, the test "in iff score > tau" has FPR = P_out(score > tau) and
FNR = P_in(score <= tau); if the mechanism is f-DP (null "out"), every such test has
``FNR >= f(FPR)``.

Thresholds: order statistics of the out-scores at ranks fixed before the scores are seen
(:data:`RANK_FRACTIONS` of ``n_out``, plus rank 0). For rank k the threshold is the (k+1)-th
largest out-score; by the quantile coupling ``P_out(S > x_(n-k)) <= 1 - U_(n-k) ~ Beta(k+1,
n-k)``, the one-sided Clopper-Pearson upper bound for k of n bounds its FPR although the
threshold depends on the data (any score law, ties included); the in-scores are independent
of the threshold, so Clopper-Pearson on their count bounds the FNR. With ``K`` ranks every
one of the ``2K`` one-sided bounds is taken at ``alpha / (2K)``: with probability
``>= 1 - alpha`` all corners (FPR̄, FNR̄) are above the true rates simultaneously
(Bonferroni), and then a claim f with ``f(FPR̄) > FNR̄`` at some corner is false, since
``f(FPR̄) <= f(FPR) <= FNR <= FNR̄`` (f non-increasing). Rejecting whenever some corner lies
below f is therefore a level-alpha test of "the mechanism is f-DP" (for this pair of
worlds), whatever f is.

Figures derived from the same corners (so they agree with each other):

* :func:`curve_p_value` -- the Bonferroni p-value of one curve (the smallest alpha at which
  some corner lies below it);
* :func:`family_bound` -- the boundary of the rejected part of a family of curves ordered by
  privacy (a noise scale): every member at least as private as the boundary is rejected;
* the ``cp-bonferroni`` figure: the largest Kairouz bound of a corner,
  ``max(ln((1-delta-FNR̄)/FPR̄), ln((1-delta-FPR̄)/FNR̄))`` (Kairouz et al. 2015, Thm 2.1), which
  certifies epsilon at delta without assuming anything about the curve's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.stats._validate import check_scores
from dpaudit.stats.binomial import cp_upper
from dpaudit.stats.bounds import eps_from_rate_bounds
from dpaudit.stats.tradeoff import TradeoffCurve

#: Ranks of the thresholds, as fractions of the out-world runs (0 is always added): dense
#: in the middle, where Gaussian-like curves are easiest to reject, down to the low-FPR tail
#: that decides large epsilons.
RANK_FRACTIONS: tuple[float, ...] = (0.5, 0.4, 0.3, 0.2, 0.13, 0.08, 0.05, 0.03, 0.015, 0.007, 0.003, 0.001)


@dataclass(frozen=True)
class RateCorners:
    """Simultaneous upper confidence corners of (FPR, FNR) at data-independent ranks.

    ``ranks[i]``: the FP count k of threshold i (``thresholds[i]`` = the (k+1)-th largest
    out-score), ``fn[i]``: in-scores at or below it; ``fpr_upper``/``fnr_upper``: one-sided
    Clopper-Pearson bounds at ``level`` each (= alpha / (2K)); ``alpha``: the family-wise
    error probability (1 - confidence).
    """

    ranks: np.ndarray
    thresholds: np.ndarray
    fn: np.ndarray
    n_in: int
    n_out: int
    fpr_upper: np.ndarray
    fnr_upper: np.ndarray
    alpha: float

    @property
    def level(self) -> float:
        return self.alpha / (2 * self.ranks.size)

    @property
    def fpr(self) -> np.ndarray:
        return self.ranks / self.n_out

    @property
    def fnr(self) -> np.ndarray:
        return self.fn / self.n_in

    def rejects(self, curve: TradeoffCurve) -> bool:
        """True when some corner lies strictly below ``curve``."""
        return bool(np.any(curve(self.fpr_upper) > self.fnr_upper))

    def cp_epsilon(self, delta: float) -> float:
        """The ``cp-bonferroni`` figure: the largest Kairouz bound of a corner."""
        return float(np.max(eps_from_rate_bounds(self.fpr_upper, self.fnr_upper, delta)))

    def to_dict(self) -> dict:
        return {"ranks": self.ranks.tolist(), "thresholds": self.thresholds.tolist(), "fn": self.fn.tolist(),
                "n_in": self.n_in, "n_out": self.n_out, "fpr_upper": self.fpr_upper.tolist(),
                "fnr_upper": self.fnr_upper.tolist(), "alpha": self.alpha}


def rank_set(n_out: int, fractions: Sequence[float] = RANK_FRACTIONS) -> np.ndarray:
    """The FP ranks for ``n_out`` out-runs: 0 and ``floor(f * n_out)`` for each fraction
    (depends on ``n_out`` only, never on scores)."""
    if n_out < 1:
        raise InvalidParameterError("need at least one out-world run")
    ks = {0} | {min(n_out - 1, int(math.floor(f * n_out))) for f in fractions}
    return np.array(sorted(ks), dtype=np.int64)


def rate_corners(in_scores: Sequence[float] | np.ndarray, out_scores: Sequence[float] | np.ndarray,
                 alpha: float, fractions: Sequence[float] = RANK_FRACTIONS) -> RateCorners:
    """Simultaneous (1 - alpha) corners for the tests "in iff score > threshold" (module
    docstring)."""
    if not 0.0 < alpha < 1.0:
        raise InvalidParameterError(f"alpha must be in (0, 1), got {alpha!r}")
    s_in = np.sort(check_scores(in_scores, "in_scores"))
    s_out = np.sort(check_scores(out_scores, "out_scores"))
    n1, n0 = s_in.size, s_out.size
    ks = rank_set(n0, fractions)
    level = alpha / (2 * ks.size)
    taus = s_out[n0 - 1 - ks]
    fn = np.searchsorted(s_in, taus, side="right")
    return RateCorners(ks, taus, fn.astype(np.int64), n1, n0, np.asarray(cp_upper(ks, n0, level)),
                       np.asarray(cp_upper(fn, n1, level)), float(alpha))


def _corner_level(curve: TradeoffCurve, k: int, n0: int, fn: int, n1: int) -> float:
    """Smallest one-sided level a at which the corner (cp_upper(k, n0, a), cp_upper(fn, n1,
    a)) lies below ``curve`` (bisection on log a; 1 when it never does)."""
    def below(a: float) -> bool:
        return bool(curve(cp_upper(k, n0, a)) > cp_upper(fn, n1, a))

    if not below(0.5):
        return 1.0
    lo, hi = -700.0, math.log(0.5)  # below(exp(hi)) holds
    if below(math.exp(lo)):
        return 0.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if below(math.exp(mid)):
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-3:
            break
    return math.exp(hi)


def curve_p_value(curve: TradeoffCurve, corners: RateCorners) -> float:
    """Bonferroni p-value of "the mechanism is ``curve``-DP" from the same ranks and counts
    as ``corners``: ``2K`` times the smallest per-bound level at which some corner falls
    below the curve (capped at 1). ``p < alpha`` exactly when ``corners.rejects(curve)``
    (up to the bisection's 0.1% relative precision)."""
    k2 = 2 * corners.ranks.size
    best = min(_corner_level(curve, int(k), corners.n_out, int(f), corners.n_in)
               for k, f in zip(corners.ranks, corners.fn))
    return min(1.0, k2 * best)


@dataclass(frozen=True)
class FamilyBound:
    """The rejected part of a family of curves ``curve_of(s)`` (privacy increasing with the
    scale s): every member with ``s >= scale`` is rejected. ``scale`` is ``inf`` when no
    member is rejected; ``rejected_all`` when even the smallest scale tried is."""

    scale: float
    rejected_all: bool = False


def family_bound(curve_of: Callable[[float], TradeoffCurve], rejects: Callable[[TradeoffCurve], bool],
                 start: float = 1.0, rel_tol: float = 1e-3, s_max: float = 1e4,
                 s_min: float = 1e-2) -> FamilyBound:
    """Smallest scale whose member is rejected (bisection in log scale to ``rel_tol``),
    assuming rejection is monotone (a more private member -- larger scale, pointwise
    higher curve -- is rejected whenever a less private one is). The returned scale is a
    rejected member (the bracket's rejected end)."""
    s = float(start)
    if rejects(curve_of(s)):
        hi, lo = s, s / 2.0
        while rejects(curve_of(lo)):
            hi, lo = lo, lo / 2.0
            if lo < s_min:
                return FamilyBound(hi, rejected_all=True)
    else:
        lo, hi = s, s * 2.0
        while not rejects(curve_of(hi)):
            lo, hi = hi, hi * 2.0
            if hi > s_max:
                return FamilyBound(math.inf)
    while hi / lo > 1.0 + rel_tol:
        mid = math.sqrt(lo * hi)
        if rejects(curve_of(mid)):
            hi = mid
        else:
            lo = mid
    return FamilyBound(hi)


def gdp_mu_lower(corners: RateCorners) -> float:
    """Largest mu such that every mu'-GDP curve with mu' < mu is rejected by ``corners``:
    ``max_k Phi^{-1}(1 - FPR̄_k) - Phi^{-1}(FNR̄_k)`` (0 when none is positive); the
    closed form of :func:`family_bound` for the mu-GDP family."""
    from scipy.special import ndtri

    with np.errstate(divide="ignore", invalid="ignore"):
        mus = ndtri(1.0 - corners.fpr_upper) - ndtri(corners.fnr_upper)
    mus = mus[np.isfinite(mus)]
    return max(0.0, float(np.max(mus, initial=0.0)))


def perfect_corner(n_in: int, n_out: int, alpha: float, n_ranks: int) -> tuple[float, float]:
    """The corner of a perfectly separating audit (FP = FN = 0) with ``n_ranks`` ranks:
    ``(1 - a^{1/n_out}, 1 - a^{1/n_in})``, ``a = alpha / (2 n_ranks)`` -- the best any data
    of this size can show, so it sets the ceiling of what they can certify."""
    a = alpha / (2 * n_ranks)
    return float(cp_upper(0, n_out, a)), float(cp_upper(0, n_in, a))


def runs_needed(curve: TradeoffCurve, alpha: float, n_ranks: int) -> int:
    """Smallest n (runs per world) whose perfect corner lies below ``curve``: with fewer
    runs no outcome can reject it. Uses the curve's symmetric point ``f(p*) = p*`` and
    ``1 - a^{1/n} < p*``, i.e. ``n > ln(a) / ln(1 - p*)``."""
    lo, hi = 0.0, 0.5
    if float(curve(0.0)) <= 0.0:
        return 1
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if float(curve(mid)) > mid:
            lo = mid
        else:
            hi = mid
    p_star = lo
    if p_star <= 0.0:
        return 2**62
    a = alpha / (2 * n_ranks)
    return int(math.floor(math.log(a) / math.log1p(-p_star))) + 1
