"""One-run audits: bounds on the number of correct guesses.

Game (Steinke, Nasr, Jagielski 2023, NeurIPS, "Privacy Auditing with One (1) Training Run",
Sec. 2): m canaries, each included independently with probability 1/2 (S in {+-1}^m); after
one run the auditor guesses "in" or "out" for ``r`` of them (abstaining on the rest) and
counts the correct guesses v. Two bounds on P[W >= v] for a private mechanism:

* (eps, delta)-DP -- :func:`steinke_p_value`: their Thm 5.2 as evaluated by their
  appendix's p-value algorithm,
  ``P[W >= v] <= P[W' >= v] + 2 m delta max_{1<=i<=v} P[v > W' >= v - i] / i``,
  ``W' ~ Binomial(r, e^eps / (1 + e^eps))``.
* f-DP -- :func:`fdp_rejects`: Mahloujifar, Melis, Chaudhuri 2025 (ICML, "Auditing
  f-Differential Privacy in One Run", arXiv:2410.22235): the recursion of their auditing
  algorithm ("audit_rh_with_cap" in the authors' code). We restate the argument, because
  we use its per-canary step in a sharper (still implied) form. Guesses "in" only first;
  ``R_i = E[W 1{W >= i}] / m`` and ``H_i = E[(r - W) 1{W >= i}] / m`` (correct and wrong
  guesses on the runs with at least i correct):

    - ``R_i - R_{i+1} = i/(r-i) (H_i - H_{i+1})`` (both count the runs with W = i) and
      ``R_0 + H_0 = r / m`` (exactly r guesses);
    - for canary j, ``F_j = {j guessed in, the other canaries have >= i-1 correct}`` is a
      post-processing of the output given the other canaries, so f-DP
      (``f = T(M_out, M_in)``) gives ``P_out(F_j) >= g(P_in(F_j))`` with the convex,
      non-decreasing ``g(y) = f^{-1}(1 - y)``, ``g(0) = 0``. Canary j is in with
      probability 1/2, so ``R_i = mean_j P_in(F_j) / 2`` and ``H_{i-1} = mean_j P_out(F_j)
      / 2``, and Jensen gives ``H_{i-1} >= phi(R_i)`` with ``phi(y) = g(2y) / 2``. The
      paper uses ``phi = g``, which this implies (``g(2y)/2 >= g(y)`` for convex g with
      g(0) = 0) and which is strictly weaker for curved f (``sharp=False`` keeps it).
      Guesses "out" give ``f(1 - y)`` instead of ``f^{-1}(1 - y)``; with both kinds a
      canary's correct mass mixes ``P_in(F+)/2`` and ``P_out(F-)/2`` and Jensen over the two
      gives only the paper's ``phi = g`` (with the symmetrised curve, below both) -- the
      sharp form is used for "in"-only rules alone (a simulation of randomized response
      rejects at 7% instead of 5% if it is used for both kinds);
    - if ``P[W >= v] >= gamma``: start from ``r_v = gamma v / m``, ``h_v = gamma (r - v) /
      m`` and set ``h_i = max(h_{i+1}, phi(r_{i+1}))``, ``r_i = r_{i+1} + i/(r-i) (h_i -
      h_{i+1})`` down to i = 0. By induction the result G_i(r, h) is non-decreasing in r,
      along (c, 1) for c >= i/(r-i) and along (1, -1), and the true (R_v, H_v) is the start
      moved along (v/(r-v), 1) (since P[W >= v] >= gamma) and along (1, -1) (W > v on the
      event), so ``r_0 + h_0 <= R_0 + H_0 = r / m``. Hence ``r_0 + h_0 > r/m`` rejects
      "f-DP" at level gamma.

The f-DP bound uses the whole curve, so for a Gaussian mechanism it is far tighter than the
(eps, delta) bound, whose ``2 m delta`` term grows with m. With f the (eps, delta) curve
itself it is *not* uniformly tighter: the recursion is a relaxation, and for pure eps-DP
(delta = 0, where Steinke et al.'s bound is the exact binomial tail of randomized
response) it is up to ~2% looser in eps; for delta > 0 and many canaries it is tighter
(tests/stats/test_fdp.py pins both).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.stats.tradeoff import GaussianTradeoff, PiecewiseTradeoff, TradeoffCurve


def _check_counts(m: int, r: int, v: int) -> None:
    if not (0 <= v <= r <= m) or m < 1:
        raise InvalidParameterError(f"need 0 <= v <= r <= m and m >= 1, got v={v}, r={r}, m={m}")


# --------------------------------------------------------------------------- Steinke et al.
def steinke_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Upper bound on P[W >= v] for an (eps, delta)-DP mechanism (Steinke et al. 2023,
    Thm 5.2; module docstring)."""
    from scipy.stats import binom

    _check_counts(m, r, v)
    if v == 0:
        return 1.0
    p = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(binom.sf(v - 1, r, p))
    if delta > 0:
        pmf = binom.pmf(np.arange(v - 1, -1, -1), r, p)  # P[W'=v-1], ..., P[W'=0]
        tail += 2.0 * m * delta * float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(1.0, tail)


def steinke_epsilon(m: int, r: int, v: int, delta: float, significance: float) -> float:
    """Largest eps whose (eps, delta)-DP is rejected at ``significance`` by v correct of r
    guesses (0 if none is); bisection to 1e-6 on the monotone p-value."""
    if not 0 < significance < 1:
        raise InvalidParameterError("significance must be in (0, 1)")
    if steinke_p_value(m, r, v, 0.0, delta) >= significance:
        return 0.0
    lo, hi = 0.0, 1.0
    while steinke_p_value(m, r, v, hi, delta) < significance:
        lo, hi = hi, 2 * hi
        if hi > 1e3:
            return lo
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if steinke_p_value(m, r, v, mid, delta) < significance:
            lo = mid
        else:
            hi = mid
    return lo


# --------------------------------------------------------------------------- f-DP
def guess_bound(curve: TradeoffCurve, two_sided: bool, sharp: bool = True) -> Callable[[float], float]:
    """The per-canary constraint ``phi`` of the recursion (module docstring).

    Guesses "in" only: ``g(y) = f^{-1}(1 - y)``, and ``phi(y) = g(2y)/2`` (``sharp``; the
    guessed-in canary is in with probability 1/2) or the paper's ``phi = g``. Both kinds of
    guesses: ``phi = g`` with ``g(y) = f_s(1 - y)``, f_s the largest symmetric curve below f
    and f^{-1} -- the sharp form does not hold there (a canary's correct mass mixes its
    in-world and out-world masses, and Jensen over the two gives only g)."""
    g: Callable[[float], float]
    if isinstance(curve, PiecewiseTradeoff):
        curve = curve.coarsened()  # below the curve: conservative, and fast to evaluate
    if two_sided and not curve.symmetric():
        if not isinstance(curve, PiecewiseTradeoff):
            raise InvalidParameterError("two-sided guesses need a symmetric or piecewise-linear curve")
        sym = curve.symmetrized()

        def g(y: float) -> float:
            return float(sym(1.0 - y))
    elif isinstance(curve, GaussianTradeoff):
        from scipy.special import ndtr, ndtri

        mu = curve.mu

        def g(y: float) -> float:
            return float(ndtr(ndtri(y) - mu)) if y < 1.0 else 1.0
    else:
        def g(y: float) -> float:
            return float(curve.inverse(1.0 - y))
    if two_sided or not sharp:
        return g
    return lambda y: 0.5 * g(min(1.0, 2.0 * y))


def fdp_rejects(g: Callable[[float], float], m: int, r: int, v: int, gamma: float) -> bool:
    """True when v correct of r guesses among m canaries reject f-DP at level ``gamma``
    (the recursion of Mahloujifar et al. 2025, module docstring; g from
    :func:`guess_bound`)."""
    _check_counts(m, r, v)
    if v == 0 or r == 0:
        return False
    cap = r / m
    rr = gamma * v / m
    hh = gamma * (r - v) / m
    for i in range(v - 1, -1, -1):
        h_new = max(hh, g(rr))
        if h_new == hh:
            break  # nothing changes any more
        rr += (i / (r - i)) * (h_new - hh)
        hh = h_new
        if rr + hh > cap:
            return True  # both only grow as i decreases
    return rr + hh > cap


def fdp_p_value(g: Callable[[float], float], m: int, r: int, v: int) -> float:
    """Smallest gamma at which :func:`fdp_rejects` rejects (bisection on log gamma,
    relative precision 1e-3; 1 when no gamma < 1 does)."""
    if not fdp_rejects(g, m, r, v, 1.0 - 1e-12):
        return 1.0
    lo, hi = math.log(1e-300), math.log(1.0 - 1e-12)
    if fdp_rejects(g, m, r, v, 1e-300):
        return 0.0
    while hi - lo > 1e-3:
        mid = 0.5 * (lo + hi)
        if fdp_rejects(g, m, r, v, math.exp(mid)):
            hi = mid
        else:
            lo = mid
    return math.exp(hi)
