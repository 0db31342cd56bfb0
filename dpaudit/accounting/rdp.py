"""Renyi DP accountant for the Poisson-subsampled Gaussian mechanism.

Math (Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy of the Sampled Gaussian
Mechanism", arXiv:1908.10530): with mu0 = N(0, sigma^2), mu1 = N(1, sigma^2) and
mu = (1-q) mu0 + q mu1, the sampled Gaussian mechanism (SGM) under add/remove-one
neighbours satisfies (alpha, eps(alpha))-RDP with

    eps(alpha) = log(A_alpha) / (alpha - 1),    A_alpha = E_{z~mu0}[(mu(z)/mu0(z))^alpha]

(their Thm 4 / Sec. 3: this direction dominates the reverse one).

* Integer alpha (Sec. 3.2, binomial expansion):
      A_alpha = sum_{i=0}^{alpha} C(alpha, i) (1-q)^(alpha-i) q^i exp((i^2 - i) / (2 sigma^2)).
* Fractional alpha (Sec. 3.3, two-series expansion split at
  z0 = sigma^2 log(1/q - 1) + 1/2, where (1-q) mu0 = q mu1):
      A_alpha = sum_i |C(alpha,i)| (1-q)^(alpha-i) q^i exp((i^2-i)/(2 sigma^2)) erfc((i - z0)/(sqrt2 sigma)) / 2
              + sum_i |C(alpha,i)| (1-q)^i q^(alpha-i) exp((j^2-j)/(2 sigma^2)) erfc((z0 - j)/(sqrt2 sigma)) / 2,
  with j = alpha - i. Summing magnitudes of the (eventually alternating) terms can only
  increase the sum, so the value is an upper bound (sound); the series is truncated once
  both term sequences decrease and fall below exp(-30) of the running total (the
  dp_accounting criterion), or the order is skipped after 1000 terms.
* q = 1: the plain Gaussian, eps(alpha) = alpha / (2 sigma^2) exactly.
* sigma = inf: no release, eps = 0.
* Every value is capped by log(1 - q + q exp(alpha (alpha-1) / (2 sigma^2))) / (alpha - 1)
  <= alpha / (2 sigma^2) (joint convexity of (P, Q) -> E_Q[(P/Q)^alpha]; subsampling never
  hurts). This binds only where the fractional series is loose or skipped (large q, small
  sigma); elsewhere the figures equal dp_accounting's.

RDP composes additively (Mironov 2017, Prop. 1), so heterogeneous per-epoch noise is a sum
of per-segment curves. The (epsilon, delta) conversion is Balle et al. 2020 Thm 21 (see
:mod:`dpaudit.accounting.conversions`).

Only ``math`` and numpy are used (no scipy), per-(q, sigma, orders) curves are cached.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.conversions import (
    rdp_to_delta,
    rdp_to_epsilon,
    rdp_to_epsilon_classic,
)
from dpaudit.accounting.events import DpSgdRun, GaussianSegment, check_delta, check_epsilon
from dpaudit.accounting.extras import add_run_extras
from dpaudit.accounting.gaussian import log_erfc
from dpaudit.errors import InvalidParameterError

#: dp_accounting's ``RdpAccountant`` default orders (rdp_privacy_accountant.py,
#: DEFAULT_RDP_ORDERS), so figures match that library.
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + [float(v) for v in range(11, 64)] + [128.0, 256.0, 512.0, 1024.0]
)

#: The order grid of TF-Privacy's ``compute_dp_sgd_privacy`` (used with the classic
#: conversion to reproduce its README figure).
TF_PRIVACY_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + [float(v) for v in range(12, 64)]
)

_MAX_TERMS = 1000  # series length after which a fractional order is skipped (as dp_accounting)
_BLOCKS = (16, 64)  # series lengths tried before _MAX_TERMS (most orders converge early)
_LOG_HALF = math.log(0.5)


def _log_factorials(n: int) -> np.ndarray:
    """log(k!) for k = 0..n."""
    out = np.zeros(n + 1)
    if n >= 1:
        out[1:] = np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))
    return out


def _log_a_int(q: float, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """log A_alpha for integer orders (binomial expansion, MTZ 2019 Sec. 3.2), vectorised
    over all (alpha, i) pairs with a segmented log-sum-exp of the positive terms of A - 1."""
    ints = alphas.astype(np.int64)
    lf = _log_factorials(int(ints.max()))
    lengths = ints + 1
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    owner = np.repeat(np.arange(ints.size), lengths)
    i = np.arange(lengths.sum()) - np.repeat(starts, lengths)
    n = ints[owner]
    log_q, log_1mq = math.log(q), math.log1p(-q)
    # Since sum_i C(n,i) (1-q)^(n-i) q^i = 1, A - 1 = sum_{i>=2} C(n,i) (1-q)^(n-i) q^i
    # (e^{c_i} - 1), c_i = (i^2 - i)/(2 sigma^2) > 0: a sum of positive terms, so log(A - 1)
    # has full relative precision and log A = log(1 + (A - 1)) does too. (Summing the
    # expansion of A directly cancels n log(1-q) against the rest: ~1e-8 relative error,
    # either sign, for RDP ~ 1e-11 at q = 1e-4 -- review finding.)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        c = (i * i - i) / (2.0 * sigma * sigma)
        log_em1 = c + np.log(-np.expm1(-c))  # log(e^c - 1), stable for small and large c
        terms = (
            lf[n] - lf[i] - lf[n - i]
            + i * log_q + (n - i) * log_1mq
            + log_em1
        )
        terms = np.where(i >= 2, np.where(np.isnan(terms), np.inf, terms), -np.inf)
        mx = np.maximum.reduceat(terms, starts)
        mx_rep = np.repeat(mx, lengths)
        e = np.exp(terms - np.where(np.isfinite(mx_rep), mx_rep, 0.0))
        # log(A - 1) = max + log1p(sum of the other terms / max); then
        # log A = logaddexp(0, log(A - 1)) keeps full relative precision for tiny RDP.
        pos = np.flatnonzero(terms == mx_rep)
        first = pos[np.unique(owner[pos], return_index=True)[1]]
        e[first] = 0.0
        rest = np.add.reduceat(e, starts)
        log_am1 = np.where(np.isfinite(mx), mx + np.log1p(rest), mx)  # log(A - 1)
        out = np.logaddexp(0.0, log_am1)
    return out


def _log_erfc_many(x: np.ndarray) -> np.ndarray:
    """Elementwise :func:`log_erfc` on the distinct values of ``x``."""
    u, inv = np.unique(x, return_inverse=True)
    vals = np.array([log_erfc(v) for v in u.tolist()])
    return vals[inv].reshape(x.shape)


def _frac_terms(q: float, sigma: float, alphas: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Log terms s0, s1 (shape (len(alphas), k)) of the two series of MTZ 2019 Sec. 3.3."""
    i = np.arange(k, dtype=float)
    a = alphas[:, None]
    # log|C(alpha, i)| by the recurrence C(alpha, i) = C(alpha, i-1) (alpha - i + 1) / i.
    steps = np.log(np.abs(a - i[1:] + 1.0)) - np.log(i[1:])
    log_coef = np.concatenate([np.zeros((alphas.size, 1)), np.cumsum(steps, axis=1)], axis=1)
    j = a - i
    log_q, log_1mq = math.log(q), math.log1p(-q)
    z0 = sigma * sigma * math.log(1.0 / q - 1.0) + 0.5
    s2 = math.sqrt(2.0) * sigma
    two_var = 2.0 * sigma * sigma
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        log_e0 = _LOG_HALF + _log_erfc_many((i - z0) / s2)
        log_e1 = _LOG_HALF + _log_erfc_many((z0 - j) / s2)
        s0 = log_coef + i * log_q + j * log_1mq + (i * i - i) / two_var + log_e0
        s1 = log_coef + j * log_q + i * log_1mq + (j * j - j) / two_var + log_e1
    s0 = np.where(np.isnan(s0), np.inf, s0)
    s1 = np.where(np.isnan(s1), np.inf, s1)
    return s0, s1


def _log_a_frac(q: float, sigma: float, alphas: np.ndarray, max_terms: int = _MAX_TERMS) -> np.ndarray:
    """log A_alpha for fractional orders (two-series expansion, MTZ 2019 Sec. 3.3); +inf for
    orders whose series has not converged within ``max_terms`` terms."""
    out = np.full(alphas.size, np.inf)
    todo = np.arange(alphas.size)
    for k in sorted({*(min(b, max_terms) for b in _BLOCKS), max_terms}):
        if todo.size == 0:
            break
        s0, s1 = _frac_terms(q, sigma, alphas[todo], k)
        with np.errstate(invalid="ignore"):
            total = np.logaddexp.accumulate(np.logaddexp(s0, s1), axis=1)
            dec = np.zeros_like(s0, dtype=bool)
            dec[:, 1:] = (s0[:, 1:] < s0[:, :-1]) & (s1[:, 1:] < s1[:, :-1])
            stop = dec & (np.maximum(s0, s1) < total - 30.0)
        hit = stop.any(axis=1)
        first = np.argmax(stop, axis=1)
        vals = total[np.arange(todo.size), first]
        out[todo[hit]] = vals[hit]
        todo = todo[~hit]
    return out  # orders still in `todo` stay +inf: skipped (no finite bound established)


def _validate_orders(orders: Iterable[float]) -> tuple[float, ...]:
    t = tuple(float(a) for a in orders)
    if not t:
        raise InvalidParameterError("need at least one RDP order")
    for a in t:
        if not (a > 1.0) or math.isnan(a) or math.isinf(a):
            raise InvalidParameterError(f"RDP orders must be finite and > 1, got {a!r}")
    return t


@functools.lru_cache(maxsize=4096)
def _rdp_cached(q: float, sigma: float, orders: tuple[float, ...]) -> np.ndarray:
    a = np.asarray(orders, dtype=float)
    if math.isinf(sigma):
        out = np.zeros_like(a)
    elif q == 1.0:
        with np.errstate(over="ignore", divide="ignore"):
            out = a / (2.0 * sigma * sigma)
    else:
        log_a = np.empty_like(a)
        is_int = a == np.floor(a)
        if is_int.any():
            log_a[is_int] = _log_a_int(q, sigma, a[is_int])
        if (~is_int).any():
            log_a[~is_int] = _log_a_frac(q, sigma, a[~is_int])
        out = log_a / (a - 1.0)
        out = np.where(np.isnan(out), np.inf, out)
        # Joint convexity of (P, Q) -> E_Q[(P/Q)^alpha] (perspective of t^alpha) gives
        # A_alpha <= (1 - q) + q exp(alpha (alpha - 1) / (2 sigma^2)), hence at most the plain
        # Gaussian's alpha / (2 sigma^2). The cap only binds where the fractional series is
        # loose or skipped (large q, small sigma).
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            x = a * (a - 1.0) / (2.0 * sigma * sigma)
            cap = np.logaddexp(math.log1p(-q), math.log(q) + x) / (a - 1.0)
            out = np.minimum(out, np.where(np.isnan(cap), np.inf, cap))
    out.setflags(write=False)
    return out


def compute_rdp(q: float, sigma: float, orders: Sequence[float] = DEFAULT_ORDERS) -> np.ndarray:
    """Per-step RDP eps(alpha) of the Poisson-subsampled Gaussian with sample rate ``q`` and
    noise multiplier ``sigma`` at each order (nats; +inf where no finite bound is known).

    The returned array is read-only (it is cached per (q, sigma, orders)).
    """
    GaussianSegment(q, sigma, 1)  # validates q in (0, 1], sigma > 0
    return _rdp_cached(float(q), float(sigma), _validate_orders(orders))


def rdp_of_segments(segments: Iterable[GaussianSegment], orders: Sequence[float] = DEFAULT_ORDERS) -> np.ndarray:
    """Composed RDP curve of ``segments`` (sum of count * per-step curve; Mironov 2017 Prop. 1)."""
    return _compose(segments, _validate_orders(orders))


def _compose(segments: Iterable[GaussianSegment], o: tuple[float, ...]) -> np.ndarray:
    total = np.zeros(len(o))
    for seg in segments:
        with np.errstate(invalid="ignore"):
            total = total + seg.count * _rdp_cached(float(seg.sample_rate), float(seg.noise_multiplier), o)
    return np.where(np.isnan(total), np.inf, total)


def _skip_notes(curve: np.ndarray, orders: Sequence[float]) -> tuple[str, ...]:
    bad = int(np.sum(~np.isfinite(curve)))
    if bad == 0:
        return ()
    if bad == len(orders):
        return ("no RDP order gives a finite bound (noise too small / overflow): epsilon = inf",)
    return (f"{bad} of {len(orders)} RDP orders gave no finite bound (overflow or series "
            "non-convergence) and were skipped",)


class RdpAccountant:
    """Renyi-DP accountant (Mironov, Talwar, Zhang 2019 for the sampled Gaussian; Balle et
    al. 2020 Thm 21 conversion). Matches dp_accounting's ``RdpAccountant`` on the same orders.

    Attributes:
        name: registry name, ``"rdp"``.
        orders: RDP orders (all > 1).
    """

    name = "rdp"
    method = "RDP (Mironov-Talwar-Zhang 2019) + Balle et al. 2020 Thm 21 conversion"

    def __init__(self, orders: Sequence[float] = DEFAULT_ORDERS) -> None:
        self.orders = _validate_orders(orders)

    def curve(self, run: DpSgdRun) -> np.ndarray:
        """Composed RDP curve of ``run`` at :attr:`orders`."""
        return _compose(run.segments(), self.orders)

    def epsilon(self, run: DpSgdRun, delta: float, *, extras: bool = True) -> EpsilonReport:
        """Upper bound on epsilon at ``delta`` for ``run`` under its own batching;
        ``extras`` adds the run-level figures of shuffled runs (:mod:`~dpaudit.accounting.extras`)."""
        delta = check_delta(delta)
        curve = self.curve(run)
        eps, order = rdp_to_epsilon(self.orders, curve, delta)
        rep = EpsilonReport.for_run(
            run, self.name, eps, delta,
            parameter=order if math.isfinite(eps) else None,
            method=self.method,
            notes=_skip_notes(curve, self.orders),
        )
        return add_run_extras(self, run, delta, rep) if extras else rep

    def epsilon_classic(self, run: DpSgdRun, delta: float) -> float:
        """Epsilon with the classic conversion (Mironov 2017 Prop. 3); looser."""
        return rdp_to_epsilon_classic(self.orders, self.curve(run), check_delta(delta))[0]

    def delta(self, run: DpSgdRun, epsilon: float) -> float:
        """Smallest delta certified at ``epsilon`` (inverse conversion, capped at 1)."""
        return rdp_to_delta(self.orders, self.curve(run), check_epsilon(epsilon))[0]

    def epsilon_curve(self, run: DpSgdRun, delta: float, epochs: Sequence[int] | None = None,
                      progress: Any = None) -> list[float]:
        """Cumulative epsilon after each epoch in ``epochs`` (default every epoch; RDP
        curves add up epoch by epoch). ``progress`` is accepted and unused (fast)."""
        delta = check_delta(delta)
        per_epoch = np.stack([_compose(segs, self.orders) for segs in run.checkpoint_segments(epochs)])
        with np.errstate(invalid="ignore"):
            cum = np.cumsum(per_epoch, axis=0)
        eps, _ = rdp_to_epsilon(self.orders, cum, delta)
        return [float(e) for e in np.atleast_1d(eps)]


#: The default RDP accountant (registry name ``"rdp"``).
ACCOUNTANT = RdpAccountant()
