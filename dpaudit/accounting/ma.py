"""The moments accountant of Abadi et al. 2016, as published.

Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang 2016, "Deep Learning with
Differential Privacy", CCS. With mu0 = N(0, sigma^2), mu1 = N(1, sigma^2) and
mu = (1-q) mu0 + q mu1, the log moment of one step of the sampled Gaussian mechanism at
integer lambda is (Sec. 3.1 and Appendix B, proof of Lemma 3)

    alpha(lambda) = log max(E1, E2),
    E1 = E_{z~mu0}[(mu0(z)/mu(z))^lambda],   E2 = E_{z~mu}[(mu(z)/mu0(z))^lambda].

Log moments add up over steps (Thm 2.1, composability) and the tail bound (Thm 2.2) gives

    delta = min_lambda exp(alpha_total(lambda) - lambda * epsilon),
    epsilon = min_lambda (alpha_total(lambda) + log(1/delta)) / lambda,

for lambda = 1..32 (the range used in the paper's implementation).

Numerics (independent of :mod:`dpaudit.accounting.rdp`): E1 and E2 are integrated
numerically in log space with the trapezoidal rule. E2 = E_{mu0}[(mu/mu0)^(lambda+1)] is a
positive mixture of Gaussians N(k, sigma^2), k = 0..lambda+1; E1 is concentrated within a
few sigma of [-lambda, 0]. The grid has step sigma/10 over [-33 - 15 sigma, 34 + 15 sigma]
(or windows of +-15 sigma around each integer in that range when sigma < 1/30): for a
Gaussian integrand the trapezoidal rule with h = sigma/10 has relative error
~ 2 exp(-2 pi^2 sigma^2 / h^2), far below double precision, and the mass left outside the
windows is below exp(-112) of the total. The result equals lambda * RDP(lambda + 1) of
Mironov, Talwar, Zhang 2019 (E2 dominates E1), which the tests check.

For q = 1 (shuffled batching's per-epoch Gaussian) alpha(lambda) = lambda (lambda + 1) /
(2 sigma^2) exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import DpSgdRun, GaussianSegment, check_delta, check_epsilon
from dpaudit.accounting.extras import add_run_extras

#: Moment orders lambda = 1..32, as in Abadi et al.'s implementation.
LAMBDAS: tuple[int, ...] = tuple(range(1, 33))

_HALF_WIDTH = 15.0  # grid reaches this many sigma beyond the outer centres
_STEPS_PER_SIGMA = 10.0


def _trapezoid_weights(z: np.ndarray) -> np.ndarray:
    dz = np.diff(z)
    w = np.empty_like(z)
    w[0], w[-1] = dz[0] / 2, dz[-1] / 2
    w[1:-1] = (dz[:-1] + dz[1:]) / 2
    return w


def _grid(sigma: float, lam_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and trapezoidal weights (see the module docstring)."""
    lo, hi = -float(lam_max), float(lam_max + 1)
    h = sigma / _STEPS_PER_SIGMA
    if sigma >= 1.0 / 30.0:
        n = int(math.ceil((hi - lo + 2 * _HALF_WIDTH * sigma) / h)) + 1
        z = np.linspace(lo - _HALF_WIDTH * sigma, hi + _HALF_WIDTH * sigma, n)
        return z, _trapezoid_weights(z)
    # Narrow Gaussians: disjoint windows of +-15 sigma (< 1/2) around each integer centre.
    local = np.linspace(-_HALF_WIDTH * sigma, _HALF_WIDTH * sigma, int(2 * _HALF_WIDTH * _STEPS_PER_SIGMA) + 1)
    lw = _trapezoid_weights(local)
    centres = np.arange(lo, hi + 1.0)
    z = (centres[:, None] + local[None, :]).ravel()
    return z, np.tile(lw, centres.size)


def _log_integral(log_f: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """log sum_k w_k exp(log_f[..., k]) (stable log-sum-exp over the last axis)."""
    t = log_f + log_w
    m = np.max(t, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):
        out = m[..., 0] + np.log(np.sum(np.exp(t - np.where(np.isfinite(m), m, 0.0)), axis=-1))
    return np.where(np.isfinite(m[..., 0]), out, m[..., 0])


@functools.lru_cache(maxsize=1024)
def _log_moments_cached(q: float, sigma: float, lambdas: tuple[int, ...]) -> np.ndarray:
    lam = np.asarray(lambdas, dtype=float)
    if math.isinf(sigma):
        out = np.zeros_like(lam)
    elif q == 1.0:
        with np.errstate(over="ignore"):
            out = lam * (lam + 1.0) / (2.0 * sigma * sigma)
    else:
        z, w = _grid(sigma, int(lam.max()))
        log_w = np.log(w)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            log_mu0 = -z * z / (2.0 * sigma * sigma) - math.log(sigma * math.sqrt(2.0 * math.pi))
            # log(mu/mu0) = log(1 - q + q exp((2z - 1) / (2 sigma^2)))
            log_ratio = np.logaddexp(math.log1p(-q), math.log(q) + (2.0 * z - 1.0) / (2.0 * sigma * sigma))
            l2 = _log_integral(log_mu0[None, :] + (lam[:, None] + 1.0) * log_ratio[None, :], log_w)
            l1 = _log_integral(log_mu0[None, :] - lam[:, None] * log_ratio[None, :], log_w)
        out = np.maximum(l1, l2)
        out = np.where(np.isnan(out), np.inf, out)
    out.setflags(write=False)
    return out


def log_moments(q: float, sigma: float, lambdas: tuple[int, ...] = LAMBDAS) -> np.ndarray:
    """Per-step log moments alpha(lambda) of the sampled Gaussian (Abadi et al. 2016,
    Sec. 3.1), by numerical integration; +inf where it overflows."""
    GaussianSegment(q, sigma, 1)  # validates
    return _log_moments_cached(float(q), float(sigma), tuple(int(v) for v in lambdas))


def _compose(segments: Iterable[GaussianSegment], lambdas: tuple[int, ...]) -> np.ndarray:
    total = np.zeros(len(lambdas))
    for seg in segments:
        with np.errstate(invalid="ignore"):
            total = total + seg.count * _log_moments_cached(
                float(seg.sample_rate), float(seg.noise_multiplier), lambdas
            )
    return np.where(np.isnan(total), np.inf, total)


def _tail_epsilon(alpha_total: np.ndarray, lam: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Abadi et al. Thm 2.2 solved for epsilon (rows of alpha_total = several runs)."""
    eps = (alpha_total + math.log(1.0 / delta)) / lam
    idx = np.argmin(eps, axis=-1)
    best = np.take_along_axis(eps, np.expand_dims(idx, -1), axis=-1)[..., 0]
    return np.maximum(best, 0.0), lam[idx]


class MomentsAccountant:
    """Abadi et al. 2016 moments accountant (numerical log moments, lambda = 1..32)."""

    name = "ma"
    method = "moments accountant (Abadi et al. 2016, Thm 2 tail bound, lambda <= 32)"

    def __init__(self, lambdas: tuple[int, ...] = LAMBDAS) -> None:
        self.lambdas = tuple(int(v) for v in lambdas)

    def log_moments(self, run: DpSgdRun) -> np.ndarray:
        """Composed log moments alpha_total(lambda) of ``run`` under its own batching."""
        return _compose(run.segments(), self.lambdas)

    def epsilon(self, run: DpSgdRun, delta: float, *, extras: bool = True) -> EpsilonReport:
        """Upper bound on epsilon at ``delta``; ``extras`` adds the run-level figures of
        shuffled runs (:mod:`~dpaudit.accounting.extras`)."""
        delta = check_delta(delta)
        lam = np.asarray(self.lambdas, dtype=float)
        alpha = self.log_moments(run)
        eps_arr, best = _tail_epsilon(alpha, lam, delta)
        eps = float(eps_arr)
        notes: tuple[str, ...] = ()
        if not math.isfinite(eps):
            notes = ("no moment order lambda <= 32 gives a finite bound (noise too small): epsilon = inf",)
        rep = EpsilonReport.for_run(
            run, self.name, eps, delta,
            parameter=float(best) if math.isfinite(eps) else None,
            method=self.method,
            notes=notes,
        )
        return add_run_extras(self, run, delta, rep) if extras else rep

    def delta(self, run: DpSgdRun, epsilon: float) -> float:
        epsilon = check_epsilon(epsilon)
        lam = np.asarray(self.lambdas, dtype=float)
        with np.errstate(invalid="ignore"):
            logd = self.log_moments(run) - lam * epsilon
        logd = np.where(np.isnan(logd), np.inf, logd)
        return float(min(math.exp(min(float(np.min(logd)), 0.0)), 1.0))

    def epsilon_curve(self, run: DpSgdRun, delta: float, epochs: Sequence[int] | None = None,
                      progress: Any = None) -> list[float]:
        """Cumulative epsilon after each epoch in ``epochs`` (default every epoch; log
        moments add up over epochs). ``progress`` is accepted and unused (fast)."""
        delta = check_delta(delta)
        lam = np.asarray(self.lambdas, dtype=float)
        per = np.stack([_compose(segs, self.lambdas) for segs in run.checkpoint_segments(epochs)])
        with np.errstate(invalid="ignore"):
            cum = np.cumsum(per, axis=0)
        eps, _ = _tail_epsilon(cum, lam, delta)
        return [float(e) for e in np.atleast_1d(eps)]


#: The moments accountant (registry name ``"ma"``).
ACCOUNTANT = MomentsAccountant()
