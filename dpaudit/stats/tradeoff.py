"""Trade-off functions (f-DP, Dong, Roth, Su 2022, JRSS-B, "Gaussian Differential Privacy").

A trade-off function ``f = T(P, Q)`` maps a test's type-I error ``alpha`` (rejecting the
null ``P`` when it holds) to the smallest type-II error ``beta`` any test with that type-I
error can have (Def. 2.1); it is convex, continuous, non-increasing and ``f(alpha) <= 1 -
alpha`` (Prop. 2.2). A mechanism is f-DP when ``T(M(D), M(D')) >= f`` for neighbours.

Conventions here: the *null* is "the audited example is out" (world 0) and the
alternative "it is in" (world 1), so a membership test's (FPR, FNR) lies on or above
``T(M_out, M_in)``; a point (FPR, FNR) *below* the claimed curve contradicts the claim.

Two kinds of curve, both evaluated exactly (no interpolation of a smooth curve, which
would lie above it and make violations too easy to declare):

* :class:`GaussianTradeoff` -- mu-GDP, ``G_mu(alpha) = Phi(Phi^{-1}(1 - alpha) - mu)``
  (Def. 2.7); symmetric.
* :class:`PiecewiseTradeoff` -- the trade-off function of a pair of *discrete* distributions
  (the randomised Neyman-Pearson tests between atoms make it piecewise linear), e.g. the
  connect-the-dots PLD of the claimed DP-SGD run (:func:`pld_tradeoff`), or the (eps,
  delta) curve ``max(0, 1 - delta - e^eps alpha, e^-eps (1 - delta - alpha))`` (Kairouz,
  Oh, Viswanath 2015, Thm 2.1; Dong et al. 2022, Prop. 2.5).

Conversions (Dong et al. 2022, Prop. 2.12): a (symmetrised) f is (eps, delta(eps))-DP with
``delta(eps) = 1 + f*(-e^eps) = sup_alpha (1 - e^eps alpha - f(alpha))``; for a piecewise
linear f the supremum sits at a vertex, so ``epsilon(delta)`` is the largest vertex value of
``ln((1 - delta - beta)/alpha)`` over f and its inverse -- the Kairouz bound of a corner,
:func:`dpaudit.stats.bounds.eps_from_rate_bounds`.

Imports numpy and math; scipy only inside the Gaussian curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from dpaudit.errors import InvalidParameterError
from dpaudit.stats.bounds import eps_from_rate_bounds


@runtime_checkable
class TradeoffCurve(Protocol):
    """A trade-off function ``beta = f(alpha)`` on [0, 1] (see the module docstring)."""

    def __call__(self, alpha: np.ndarray | float) -> np.ndarray: ...

    def inverse(self, beta: np.ndarray | float) -> np.ndarray:
        """``f^{-1}(beta) = inf{alpha : f(alpha) <= beta}``: the trade-off function of the
        swapped pair, ``T(Q, P) = T(P, Q)^{-1}`` (Dong et al. 2022, Prop. 2.4 proof)."""
        ...

    def symmetric(self) -> bool:
        """True when ``f = f^{-1}`` (both orders of the pair have the same curve)."""
        ...

    def epsilon(self, delta: float) -> float:
        """Smallest eps with ``f`` and ``f^{-1}`` both (eps, delta)-DP (Prop. 2.12)."""
        ...


# --------------------------------------------------------------------------- Gaussian
@dataclass(frozen=True)
class GaussianTradeoff:
    """mu-GDP: ``G_mu(alpha) = Phi(Phi^{-1}(1 - alpha) - mu)`` (Dong et al. 2022, Def. 2.7),
    the exact trade-off function of N(0, 1) vs N(mu, 1); symmetric."""

    mu: float

    def __post_init__(self) -> None:
        if not (self.mu >= 0.0) or not math.isfinite(self.mu):
            raise InvalidParameterError(f"mu must be finite and >= 0, got {self.mu!r}")

    def __call__(self, alpha: np.ndarray | float) -> np.ndarray:
        from scipy.special import ndtr, ndtri

        a = np.clip(np.asarray(alpha, dtype=np.float64), 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(ndtr(ndtri(1.0 - a) - self.mu))

    def inverse(self, beta: np.ndarray | float) -> np.ndarray:
        return self(beta)

    def symmetric(self) -> bool:
        return True

    def epsilon(self, delta: float) -> float:
        from dpaudit.accounting.gaussian import gaussian_epsilon

        return gaussian_epsilon(self.mu, delta)

    def epsilon_lower(self, delta: float) -> float:
        """A value never above the exact eps(delta) (the bisection's lower bracket end,
        relative gap 1e-12, minus a margin of 1e-9 relative)."""
        return self.epsilon(delta) * (1.0 - 1e-9)


# --------------------------------------------------------------------------- piecewise
@dataclass(frozen=True)
class PiecewiseTradeoff:
    """The trade-off function of a discrete pair: the lower convex boundary through the
    vertices ``(alphas[k], betas[k])`` (alphas non-decreasing from 0 to 1, betas
    non-increasing from ``f(0)`` to 0), linear between them (randomised tests)."""

    alphas: np.ndarray
    betas: np.ndarray
    label: str = ""
    _inv: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    _sym: list[PiecewiseTradeoff] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        a = np.clip(np.asarray(self.alphas, dtype=np.float64), 0.0, 1.0)
        b = np.clip(np.asarray(self.betas, dtype=np.float64), 0.0, 1.0)
        if a.ndim != 1 or a.shape != b.shape or a.size < 2:
            raise InvalidParameterError("a piecewise trade-off curve needs >= 2 vertices (alphas, betas)")
        a = np.maximum.accumulate(a)
        b = np.minimum.accumulate(b)
        a = np.concatenate(([0.0], a, [1.0]))
        b = np.concatenate(([b[0]], b, [0.0]))
        ea, eb = _unique_min(a, b)
        # the inverse's graph is the reflection of the full graph (vertical segment at
        # alpha = 0 from 1 down to f(0), horizontal one at beta = 0 up to alpha = 1)
        ga, gb = np.concatenate(([0.0], ea)), np.concatenate(([1.0], eb))
        ia, ib = _unique_min(gb[::-1], ga[::-1])
        object.__setattr__(self, "alphas", ea)
        object.__setattr__(self, "betas", eb)
        object.__setattr__(self, "_inv", (ia, ib))
        object.__setattr__(self, "_sym", [])

    def __call__(self, alpha: np.ndarray | float) -> np.ndarray:
        return np.asarray(np.interp(np.asarray(alpha, dtype=np.float64), self.alphas, self.betas))

    def inverse(self, beta: np.ndarray | float) -> np.ndarray:
        ia, ib = self._inv
        return np.asarray(np.interp(np.asarray(beta, dtype=np.float64), ia, ib))

    def inverse_curve(self) -> PiecewiseTradeoff:
        """``f^{-1}`` as a curve (the pair in the other order)."""
        return PiecewiseTradeoff(self._inv[0], self._inv[1], label=self.label)

    def symmetric(self) -> bool:
        ia, ib = self._inv
        return bool(np.allclose(np.interp(ia, self.alphas, self.betas), ib, atol=1e-9, rtol=0))

    def delta(self, epsilon: float) -> float:
        """``delta(eps) = max_k (1 - beta_k - e^eps alpha_k)`` over the vertices of f and of
        f^{-1} (Dong et al. 2022, Prop. 2.12; exact for a piecewise linear f)."""
        e = math.exp(min(float(epsilon), 700.0))
        ia, ib = self._inv
        d = max(float(np.max(1.0 - self.betas - e * self.alphas)), float(np.max(1.0 - ib - e * ia)))
        return min(1.0, max(0.0, d))

    def epsilon(self, delta: float) -> float:
        """Smallest eps >= 0 with ``delta(eps) <= delta``: the largest Kairouz bound of a
        vertex, :func:`~dpaudit.stats.bounds.eps_from_rate_bounds` (``inf`` when
        ``1 - f(0) > delta``)."""
        slack = delta * (1.0 + 1e-9) + 1e-15
        if 1.0 - float(self.betas[0]) > slack or 1.0 - float(self._inv[1][0]) > slack:
            return math.inf
        ia, ib = self._inv
        a = np.concatenate((self.alphas, ia))
        b = np.concatenate((self.betas, ib))
        keep = a > 0.0
        return float(np.max(eps_from_rate_bounds(a[keep], b[keep], delta), initial=0.0))

    def coarsened(self, vertices: int = 3000) -> PiecewiseTradeoff:
        """A curve with at most about ``vertices`` vertices that lies *below* this one: the
        upper envelope of the lines through evenly spaced segments (tangents of a convex
        function lie below it), clipped at 0. Testing against it is conservative."""
        a, b = self.alphas, self.betas
        if a.size <= vertices:
            return self
        seg = np.unique(np.linspace(0, a.size - 2, vertices).astype(np.int64))
        da, db = a[seg + 1] - a[seg], b[seg + 1] - b[seg]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            slope = db / da
        # no tangent from (near-)vertical pieces, nor from pieces flattened by rounding near
        # beta = 1 (1 - tiny == 1.0: a "slope 0" there is not below the curve)
        ok = (da > 0) & np.isfinite(slope) & (slope > -1e12) & ((db < 0) | (b[seg] == 0.0))
        seg, slope = seg[ok], slope[ok]
        if seg.size < 2:
            return self
        keep = [0]
        for i in range(1, slope.size):  # strictly increasing slopes (no parallel lines)
            if slope[i] > slope[keep[-1]] + 1e-15:
                keep.append(i)
        seg, slope = seg[keep], slope[keep]
        icpt = b[seg] - slope * a[seg]
        xs = (icpt[1:] - icpt[:-1]) / (slope[:-1] - slope[1:])  # where consecutive lines cross
        xs = np.clip(xs, 0.0, 1.0)
        xs = np.concatenate(([0.0], np.maximum.accumulate(xs), [1.0]))
        lines = np.concatenate(([0], np.arange(len(seg) - 1), [len(seg) - 1]))
        ys = np.maximum(icpt[lines] + slope[lines] * xs - 1e-11, 0.0)  # margin for round-off
        return PiecewiseTradeoff(xs, ys, label=self.label)

    def symmetrized(self) -> PiecewiseTradeoff:
        """The largest symmetric trade-off function below both f and f^{-1}: the lower
        convex envelope of ``min(f, f^{-1})`` (Dong et al. 2022, Prop. F.2 / Sec. 2.3: a
        mechanism that is f-DP for both orders of every neighbouring pair is
        ``conv(min(f, f^{-1}))``-DP). Computed once per curve."""
        if not self._sym:
            ia, _ = self._inv
            xs = np.unique(np.concatenate((self.alphas, ia)))
            ys = np.minimum(self(xs), self.inverse(xs))
            hx, hy = _lower_hull(xs, ys)
            self._sym.append(PiecewiseTradeoff(hx, hy, label=self.label))
        return self._sym[0]


def _unique_min(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted x with repeats, keep each x once with its smallest y."""
    keep = np.ones(x.size, dtype=bool)
    keep[:-1] = x[1:] != x[:-1]  # last of each run of equal x: y is non-increasing in a run
    return x[keep], y[keep]


def _lower_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the lower convex hull of the points (x, y), x increasing (monotone chain)."""
    hx: list[float] = []
    hy: list[float] = []
    for xi, yi in zip(x.tolist(), y.tolist()):
        while len(hx) >= 2 and (hx[-1] - hx[-2]) * (yi - hy[-2]) - (hy[-1] - hy[-2]) * (xi - hx[-2]) <= 0:
            hx.pop()
            hy.pop()
        hx.append(xi)
        hy.append(yi)
    return np.array(hx), np.array(hy)


def kairouz_tradeoff(epsilon: float, delta: float) -> PiecewiseTradeoff:
    """The (eps, delta)-DP curve ``max(0, 1 - delta - e^eps a, e^-eps (1 - delta - a))``
    (Kairouz et al. 2015, Thm 2.1; Dong et al. 2022, Prop. 2.5): its vertices are (0,
    1 - delta), the corner ((1-delta)/(1+e^eps), (1-delta)/(1+e^eps)) and (1 - delta, 0)."""
    if not epsilon >= 0 or not 0 <= delta < 1:
        raise InvalidParameterError(f"need eps >= 0 and 0 <= delta < 1, got {epsilon!r}, {delta!r}")
    c = (1.0 - delta) / (1.0 + math.exp(min(epsilon, 700.0)))
    return PiecewiseTradeoff(np.array([0.0, c, 1.0 - delta]), np.array([1.0 - delta, c, 0.0]),
                             label=f"({epsilon:g}, {delta:g})-DP")


def pmf_tradeoff(losses: np.ndarray, probs: np.ndarray, inf_mass: float, label: str = "") -> PiecewiseTradeoff:
    """``T(Q, P)`` of a discrete pair given by its privacy loss distribution: ``probs[j]``
    is the P-mass at loss ``losses[j] = log(dP/dQ)`` (increasing), ``inf_mass`` the P-mass
    at +inf (Q-mass 0). The Q-mass of an atom is ``p_j e^{-l_j}``; the likelihood-ratio
    tests ``reject Q iff L > tau`` (randomised at the atoms) give the vertices
    ``alpha = Q(L > tau)``, ``beta = P(L <= tau)`` (Neyman-Pearson lemma)."""
    p = np.maximum(np.asarray(probs, dtype=np.float64), 0.0)[::-1]
    l_ = np.asarray(losses, dtype=np.float64)[::-1]
    with np.errstate(over="ignore", under="ignore"):
        q = np.where(p > 0.0, p * np.exp(np.minimum(-l_, 700.0)), 0.0)
    alphas = np.concatenate(([0.0], np.cumsum(q)))
    betas = 1.0 - max(float(inf_mass), 0.0) - np.concatenate(([0.0], np.cumsum(p)))
    return PiecewiseTradeoff(alphas, betas, label=label)
