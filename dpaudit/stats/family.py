"""The claimed DP-SGD mechanism as a family of trade-off curves, indexed by a noise scale.

A claim names a mechanism: Poisson-subsampled Gaussian releases (sample rate q, noise
multiplier sigma, T steps; or whatever segments the accountant uses, e.g. one unsubsampled
Gaussian per epoch for shuffled batches). The audit's family replaces every sigma by
``s * sigma`` (s > 0): ``s = 1`` is the claim, ``s < 1`` leaks more. Rejecting the member
``s`` means "the trainer is not the claimed mechanism with noise ``s * sigma`` or more",
and, *within the family*, that its epsilon at the claimed delta is above eps(s).

Each member's curve is ``T(M_out, M_in)`` of the claimed mechanism, the null being "the
canary is out":

* only unsubsampled segments: mu-GDP with ``mu = sqrt(sum_i count_i / sigma_i^2)`` (exact;
  Dong, Roth, Su 2022, Cor. 3.3);
* otherwise the remove-direction PLD of the composition (P = with the canary: the mixture
  (1-q) N(0, 1) + q N(1/sigma, 1) per step; Q = without: N(0, 1)), discretised by connect
  the dots and composed by FFT (:mod:`dpaudit.accounting.pld_pmf`,
  :mod:`dpaudit.accounting.pld_compose`). That discrete pair *dominates* the true one
  (Doroshenko et al. 2022, PoPETs, Sec. 3-4; Zhu, Dong, Wang 2022, AISTATS, Thm 10), i.e.
  its trade-off curve is pointwise <= the exact one: testing against it can only make a
  violation harder to declare, never a false alarm from discretisation. The mass the
  composition sets aside (infinity atom, Chernoff tail bound above the window, FFT
  rounding allowance) is treated as P-mass at +inf, which lowers the curve again.

Epsilon of a member, in both directions:

* :meth:`NoiseFamily.epsilon` -- an upper bound (the PLD accountant,
  :func:`dpaudit.accounting.pld.epsilon_from_segments`), used to locate the claim's member;
* :meth:`NoiseFamily.epsilon_lower` -- a lower bound, used for the certified eps_lb (never
  optimistic): the remove-direction PLD discretised *optimistically* (every loss rounded
  down to the grid, which lowers ``delta(eps) = E_P[(1 - e^{eps - L})_+]`` since the
  integrand increases with L; Meiser & Mohammadi 2018, CCS; the ``pessimistic_estimate=
  False`` mode of dp_accounting), composed by FFT, minus the Chernoff bound on the mass
  that wraps from below the window and the FFT rounding allowance. The remove direction
  alone is a lower bound on the max over both directions (it is the larger one for the
  subsampled Gaussian in every configuration we met).

Imports numpy/math (and the accounting modules, which import no scipy).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dpaudit.accounting.events import GaussianSegment
from dpaudit.accounting.gaussian import interval_masses
from dpaudit.accounting.pld_compose import (
    MAX_WINDOW,
    ComposedPld,
    PrefixComposer,
    WindowTooLarge,
    epsilon_of,
)
from dpaudit.accounting.pld_pmf import (
    LossPmf,
    gaussian_cells,
    gaussian_pmf,
    subsampled_gaussian_cells,
    subsampled_gaussian_pmf,
)
from dpaudit.errors import InvalidParameterError
from dpaudit.stats.tradeoff import GaussianTradeoff, PiecewiseTradeoff, TradeoffCurve, pmf_tradeoff

#: log of the probability mass each composition may leave outside its window.
_LOG_TARGET = math.log(1e-13)
#: Grid cells per standard deviation of the composed loss (curve resolution).
_CELLS_PER_SD = 4000
#: Target relative bias of the optimistic (rounded-down) epsilon lower bound.
_LOWER_REL = 2e-3


def _split(segments: Sequence[GaussianSegment]) -> tuple[float, list[GaussianSegment]]:
    mu2 = 0.0
    sub: list[GaussianSegment] = []
    for s in segments:
        if math.isinf(s.noise_multiplier):
            continue
        if s.sample_rate >= 1.0:
            mu2 += s.count / s.noise_multiplier**2
        else:
            sub.append(s)
    return mu2, sub


def _loss_sd(segments: Sequence[GaussianSegment], mu2: float) -> float:
    """Standard deviation of the composed remove-direction loss (one coarse pass)."""
    var = mu2
    for s in segments:
        h = _fit_grid([s], 0.0, 1e-3, math.log(1e-16))
        pmf = subsampled_gaussian_pmf(s.sample_rate, s.noise_multiplier, h, "remove", math.log(1e-16))
        var += s.count * pmf.moments()[1]
    return math.sqrt(max(var, 1e-300))


def _fit_grid(sub: Sequence[GaussianSegment], mu2: float, h: float, log_tail: float) -> float:
    """Coarsen ``h`` until every single-release PMF fits in half the FFT window (checked in
    closed form, before anything is allocated: tiny noise gives losses of 10^6 nats)."""
    limit = MAX_WINDOW // 2
    for _ in range(60):
        cells = max((subsampled_gaussian_cells(s.sample_rate, s.noise_multiplier, h, "remove", log_tail)
                     for s in sub), default=1)
        if mu2 > 0:
            cells = max(cells, gaussian_cells(math.sqrt(mu2), h, log_tail))
        if cells <= limit:
            return h
        h *= 1.1 * cells / limit
    return h


def _log_tail(segments: Sequence[GaussianSegment]) -> float:
    total = sum(s.count for s in segments)
    return min(_LOG_TARGET, -20.0) - math.log(total + 1)


# --------------------------------------------------------------------------- curves
def segments_tradeoff(segments: Sequence[GaussianSegment], interval: float | None = None) -> TradeoffCurve:
    """``T(M_out, M_in)`` of the composition of ``segments`` (see the module docstring):
    exact mu-GDP when nothing is subsampled, else the (dominating) connect-the-dots PLD
    pair's piecewise-linear curve on a grid of ``interval`` nats (default: 1/4000 of the
    composed loss's standard deviation)."""
    mu2, sub = _split(segments)
    if not sub:
        return GaussianTradeoff(math.sqrt(mu2))
    log_tail = _log_tail(segments)
    h = _fit_grid(sub, mu2, interval or min(1e-2, max(1e-7, _loss_sd(sub, mu2) / _CELLS_PER_SD)), log_tail)
    for _ in range(40):
        try:
            items: list[tuple[LossPmf, int]] = [
                (subsampled_gaussian_pmf(s.sample_rate, s.noise_multiplier, h, "remove", log_tail), s.count)
                for s in sub
            ]
            if mu2 > 0:
                items.append((gaussian_pmf(math.sqrt(mu2), h, log_tail), 1))
            comp = next(iter(PrefixComposer([items], h, _LOG_TARGET)))
            return pmf_tradeoff(comp.losses, comp.probs, comp.const, label="claimed mechanism (PLD)")
        except WindowTooLarge as exc:
            h *= max(2.0, 1.1 * exc.factor)
    raise InvalidParameterError("the privacy loss range is too wide for a trade-off curve")


# --------------------------------------------------------------------------- optimistic PLD
def _mixture_z(losses: np.ndarray, q: float, d: float) -> np.ndarray:
    """z with log(1 - q + q e^{d z - d^2/2}) = loss (-inf where loss <= log(1 - q))."""
    lq, l1q = math.log(q), math.log1p(-q)
    x = np.full(losses.shape, -np.inf)
    pos = losses > 0.0
    x[pos] = losses[pos] + np.log1p(-(1.0 - q) * np.exp(-losses[pos])) - lq
    mid = ~pos & (losses > l1q)
    with np.errstate(divide="ignore"):
        x[mid] = np.log(np.expm1(losses[mid]) + q) - lq
    return (x + 0.5 * d * d) / d


def _remove_pmf_floor(q: float, sigma: float, h: float, log_tail: float) -> LossPmf:
    """Remove-direction PLD of one subsampled Gaussian release with every loss rounded
    *down* to the grid h*Z (mass above the top grid point goes to the top point)."""
    d = 1.0 / sigma
    zt = math.sqrt(-2.0 * log_tail)
    l1q = math.log1p(-q)
    i_lo = math.floor(l1q / h)
    l_top = float(np.logaddexp(l1q, math.log(q) + d * (d + zt) - 0.5 * d * d))
    i_hi = max(math.ceil(l_top / h), i_lo + 1)
    z = _mixture_z(np.arange(i_lo, i_hi + 1) * h, q, d)
    zb = np.append(z, np.inf)
    pm = (1.0 - q) * interval_masses(zb) + q * interval_masses(zb - d)
    return LossPmf(i_lo, pm, 0.0, h)


def _gaussian_pmf_floor(mu: float, h: float, log_tail: float) -> LossPmf:
    """PLD of N(mu, 1) vs N(0, 1) rounded down to the grid (lower tail dropped)."""
    zt = math.sqrt(-2.0 * log_tail)
    i_lo = math.floor((0.5 * mu * mu - mu * zt) / h)
    i_hi = max(math.ceil((0.5 * mu * mu + mu * zt) / h), i_lo + 1)
    z = (np.arange(i_lo, i_hi + 1) * h + 0.5 * mu * mu) / mu
    zb = np.append(z, np.inf)
    return LossPmf(i_lo, interval_masses(zb - mu), 0.0, h)


def segments_epsilon_lower(segments: Sequence[GaussianSegment], delta: float,
                           interval: float | None = None, epsilon_hint: float = 1.0) -> float:
    """A lower bound on the exact epsilon at ``delta`` of the composition (module
    docstring): optimistic discretisation on a grid of ``interval`` nats.

    Rounding every release's loss down costs up to one grid interval per release, so the
    default grid is ``_LOWER_REL * epsilon_hint / releases`` (``epsilon_hint``: roughly the
    epsilon, e.g. the upper bound), capped by 1/4000 of the loss's standard deviation and
    coarsened only as far as the FFT window needs (then the bound is looser, never wrong)."""
    mu2, sub = _split(segments)
    if not sub:
        return GaussianTradeoff(math.sqrt(mu2)).epsilon_lower(delta)
    releases = sum(s.count for s in sub) + (1 if mu2 > 0 else 0)
    log_tail = _log_tail(segments)
    h = _fit_grid(sub, mu2, interval or max(1e-9, min(_loss_sd(sub, mu2) / _CELLS_PER_SD,
                                                      _LOWER_REL * max(epsilon_hint, 1e-3) / releases)), log_tail)
    for _ in range(40):
        try:
            items = [(_remove_pmf_floor(s.sample_rate, s.noise_multiplier, h, log_tail), s.count) for s in sub]
            if mu2 > 0:
                items.append((_gaussian_pmf_floor(math.sqrt(mu2), h, log_tail), 1))
            composer = PrefixComposer([items], h, _LOG_TARGET, max_window=MAX_WINDOW // 2)
            comp = next(iter(composer))
            break
        except WindowTooLarge as exc:
            h *= max(2.0, 1.1 * exc.factor)
    else:
        return 0.0
    neg = composer.lams < 0
    k_tot = composer.stats[0][2]
    wrap = math.exp(min(0.0, float(np.min(k_tot[neg] - composer.lams[neg] * composer.lo * h))))
    low = ComposedPld(comp.lo, comp.probs, -(wrap + comp.fp_allowance + 1e-15), h)
    eps = epsilon_of(low, delta)
    return 0.0 if not math.isfinite(eps) else max(0.0, eps)


# --------------------------------------------------------------------------- family
@dataclass(frozen=True)
class NoiseFamily:
    """The claimed mechanism with every noise multiplier scaled by ``s`` (module
    docstring). ``segments``: the claim's segments (``s = 1``)."""

    segments: tuple[GaussianSegment, ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise InvalidParameterError("a noise family needs at least one segment")

    def member(self, scale: float) -> tuple[GaussianSegment, ...]:
        if not scale > 0 or not math.isfinite(scale):
            raise InvalidParameterError(f"noise scale must be finite and > 0, got {scale!r}")
        return tuple(GaussianSegment(s.sample_rate, s.noise_multiplier * scale, s.count) for s in self.segments)

    @property
    def gaussian(self) -> bool:
        """True when every release is an unsubsampled Gaussian (the family is mu-GDP)."""
        return not _split(self.segments)[1]

    def mu(self, scale: float = 1.0) -> float:
        """mu of the GDP member (``gaussian`` families); for subsampled families, the mu of
        the same releases without subsampling amplification is not meaningful: ``nan``."""
        mu2, sub = _split(self.member(scale))
        return math.sqrt(mu2) if not sub else math.nan

    def curve(self, scale: float) -> TradeoffCurve:
        return _curve(self.segments, round(float(scale), 12))

    def epsilon(self, scale: float, delta: float) -> float:
        """Upper bound on the member's epsilon at ``delta`` (PLD accountant)."""
        return _epsilon_upper(self.segments, round(float(scale), 12), float(delta))

    def epsilon_lower(self, scale: float, delta: float) -> float:
        """Lower bound on the member's epsilon at ``delta`` (optimistic PLD)."""
        return _epsilon_lower(self.segments, round(float(scale), 12), float(delta),
                              self.epsilon(scale, delta))

    def scale_for_epsilon(self, epsilon: float, delta: float, tol: float = 1e-5) -> float:
        """The scale whose member has (upper-bound) epsilon ``epsilon`` at ``delta``
        (bisection in log scale; eps decreases with the scale). Relative precision ``tol``."""
        if not epsilon > 0:
            return math.inf
        lo, hi = 0.5, 2.0
        while self.epsilon(lo, delta) < epsilon:
            lo /= 2.0
            if lo < 1e-6:
                return lo
        while self.epsilon(hi, delta) > epsilon:
            hi *= 2.0
            if hi > 1e6:
                return hi
        while hi / lo > 1.0 + tol:
            mid = math.sqrt(lo * hi)
            if self.epsilon(mid, delta) > epsilon:
                lo = mid
            else:
                hi = mid
        return math.sqrt(lo * hi)


def _scaled(segments: tuple[GaussianSegment, ...], scale: float) -> tuple[GaussianSegment, ...]:
    return tuple(GaussianSegment(s.sample_rate, s.noise_multiplier * scale, s.count) for s in segments)


@functools.lru_cache(maxsize=256)
def _curve(segments: tuple[GaussianSegment, ...], scale: float) -> TradeoffCurve:
    return segments_tradeoff(_scaled(segments, scale))


@functools.lru_cache(maxsize=1024)
def _epsilon_upper(segments: tuple[GaussianSegment, ...], scale: float, delta: float) -> float:
    from dpaudit.accounting.pld import epsilon_from_segments

    return float(epsilon_from_segments(_scaled(segments, scale), delta)[0])


@functools.lru_cache(maxsize=256)
def _epsilon_lower(segments: tuple[GaussianSegment, ...], scale: float, delta: float, hint: float) -> float:
    return segments_epsilon_lower(_scaled(segments, scale), delta, epsilon_hint=hint)


__all__ = [
    "NoiseFamily",
    "PiecewiseTradeoff",
    "segments_epsilon_lower",
    "segments_tradeoff",
]
