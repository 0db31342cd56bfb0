"""Concentrated DP accountants: sound zCDP / truncated CDP (``cdp``) and Yu et al.'s 2019
random-sampling heuristic (``yu2019``, comparison only).

Definitions. A mechanism is rho-zCDP if D_alpha(M(D)||M(D')) <= rho * alpha for all
alpha > 1 (Bun & Steinke 2016, "Concentrated Differential Privacy: Simplifications,
Extensions, and Lower Bounds", TCC, Def. 1.1), and (rho, omega)-tCDP if this holds for
alpha in (1, omega] (Bun, Dwork, Rothblum, Steinke 2018, "Composable and Versatile Privacy
via Truncated CDP", STOC, Def. 1). Both compose additively in rho (B&S Lemma 2.3; BDRS
Lemma 4 -- the minimum omega of the parts; here all parts share the same omega).

Shuffled batching (Yu et al. 2019, "Differentially Private Model Publishing for Deep
Learning", S&P, Sec. IV-B): disjoint batches, so by parallel composition one epoch is one
Gaussian mechanism on each example, rho_e = sensitivity_factor^2 / (2 sigma_e^2)
(B&S Prop. 1.6), exactly zCDP; the run is sum_e rho_e.

Poisson subsampling (sound argument, used by ``cdp``). The subsampled Gaussian is not
rho-zCDP with small rho for all orders, but for each omega it is (rho(omega), omega)-tCDP
with rho(omega) = sup_{1 < alpha <= omega} eps_RDP(alpha) / alpha, where eps_RDP is the
sampled-Gaussian RDP curve of Mironov, Talwar, Zhang 2019 (:mod:`dpaudit.accounting.rdp`),
evaluated exactly at integer orders 2..257 (binomial expansion), bounded in between by
convexity of (alpha - 1) eps_RDP(alpha) in alpha (chord bound, ``_rdp_upper_on_grid``) and,
for fractional orders <= 50, by direct quadrature with a safety margin (``_rdp_numeric``),
whichever is smaller.
We bound the sup on a grid a_0 = 1 < a_1 = 1.01 < ... < a_K = 256 with consecutive ratio
<= 1.02 (:data:`TCDP_ORDERS`): eps_RDP is non-decreasing in alpha (van Erven & Harremoes 2014, Thm 3), so for
alpha in (a_{m-1}, a_m], eps_RDP(alpha)/alpha <= eps_RDP(a_m)/a_{m-1}, giving
rho(a_k) <= max_{m <= k} eps_RDP(a_m)/a_{m-1} (at most 2% above the sup, plus the chord
slack between integer orders). Also, by joint
convexity of exp((alpha-1) D_alpha), the subsampled Gaussian is never worse than the plain
one, so rho <= 1/(2 sigma^2) for every omega (including omega = inf). Because rho(omega) is
non-decreasing in omega, the best omega for a conversion order alpha is the smallest grid
point >= alpha; so the run's bound at order alpha is rho_total(alpha) * alpha.

Conversion to (epsilon, delta): for each admissible alpha, Canonne, Kamath, Steinke 2020
("The Discrete Gaussian for Differential Privacy", NeurIPS, Prop. 12 / Cor. 13):
epsilon = rho*alpha + log(1 - 1/alpha) - (log delta + log alpha)/(alpha - 1), which is never
larger than Bun & Steinke's epsilon = rho + 2 sqrt(rho log(1/delta)) (Prop. 1.3, the
optimum of rho*alpha + log(1/delta)/(alpha - 1)); both are sound and the report gives the
tighter (CKS), with the Bun-Steinke figure in ``extra``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.conversions import ZCDP_ALPHAS, zcdp_to_epsilon_bun_steinke
from dpaudit.accounting.events import DpSgdRun, GaussianSegment, check_delta, check_epsilon
from dpaudit.accounting.extras import add_run_extras
from dpaudit.accounting.rdp import _rdp_cached

#: Truncation orders omega for the Poisson tCDP bound: geometric (ratio <= 1.02) from
#: 1.01 to 50, and every integer from 2 to 256 (consecutive ratio <= 1.02).
TCDP_ORDERS: tuple[float, ...] = tuple(
    sorted(
        set(np.geomspace(1.01, 50.0, int(math.ceil(math.log(50.0 / 1.01) / math.log(1.02))) + 1)[:-1].tolist())
        | {float(k) for k in range(2, 257)}
    )
)
#: Conversion orders: the tCDP grid, then the dense zCDP grid beyond it (omega = inf).
ALPHAS: np.ndarray = np.concatenate([np.asarray(TCDP_ORDERS), ZCDP_ALPHAS[ZCDP_ALPHAS > TCDP_ORDERS[-1]]])
_N_T = len(TCDP_ORDERS)


_INT_ORDERS: tuple[float, ...] = tuple(float(k) for k in range(2, 258))


def _rdp_upper_on_grid(q: float, sigma: float) -> np.ndarray:
    """Upper bound on the sampled-Gaussian RDP at every order of :data:`TCDP_ORDERS`, from
    the exact integer-order values only: f(alpha) = (alpha - 1) eps_RDP(alpha) = log A_alpha
    is convex in alpha (a log-moment-generating function, by Hoelder's inequality; van
    Erven & Harremoes 2014, IEEE Trans. IT, Sec. III) with f(1) = 0, so on [k, k+1] it lies
    below the chord through f(k), f(k+1). Exact at integers, increasing in q (each A_k is),
    and free of series truncation."""
    f = np.asarray(_INT_ORDERS) - 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        f = f * _rdp_cached(q, sigma, _INT_ORDERS)
    f = np.concatenate([[0.0], np.where(np.isnan(f), np.inf, f)])  # index 0 <-> alpha = 1
    a = np.asarray(TCDP_ORDERS)
    k = np.floor(a).astype(int)
    t = a - k
    lo, hi = f[k - 1], f[k]  # f at alpha = k and k + 1
    with np.errstate(invalid="ignore", over="ignore"):
        chord = np.where(t == 0.0, lo, lo + t * (hi - lo))
        out = chord / (a - 1.0)
    return np.where(np.isnan(out), np.inf, out)


_NUMERIC_MAX_ORDER = 50.0  # fractional orders up to here are integrated numerically
_NUMERIC_MIN_SIGMA = 0.3  # below, the quadrature step would be too fine: chord bound only
_LOG_A_ABS_MARGIN = 1e-13  # added to log A: covers rounding of the quadrature sum
_LOG_A_REL_MARGIN = 1e-9   # ... and (generously) its discretisation error


def _rdp_numeric(q: float, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """Sampled-Gaussian RDP at fractional orders by direct quadrature of
    A_alpha = E_{mu0}[(mu/mu0)^alpha] (MTZ 2019, Sec. 3), plus a safety margin.

    The log-integrand log mu0(z) + alpha log(1 - q + q exp((2z-1)/(2 sigma^2))) is analytic in
    a strip of half-width ~ pi sigma^2 around the real axis and decays like a Gaussian, so
    the trapezoidal rule with step h = min(sigma/10, sigma^2/4) on
    [-15 sigma, alpha_max + 1 + 15 sigma] has relative error ~ exp(-2 pi * pi sigma^2 / h)
    < 1e-30 (Trefethen & Weideman 2014, "The exponentially convergent trapezoidal rule",
    SIAM Review, Sec. 5); the result is then raised by
    1e-13 + 1e-9 |log A| to cover rounding. Unlike the two-series expansion, this is not
    loosened by slowly converging alternating tails.
    """
    h = min(sigma / 10.0, sigma * sigma / 4.0)
    z = np.arange(-15.0 * sigma, float(alphas.max()) + 1.0 + 15.0 * sigma + h, h)
    log_mu0 = -z * z / (2.0 * sigma * sigma) - math.log(sigma * math.sqrt(2.0 * math.pi))
    log_ratio = np.logaddexp(math.log1p(-q), math.log(q) + (2.0 * z - 1.0) / (2.0 * sigma * sigma))
    with np.errstate(over="ignore", invalid="ignore"):
        t = log_mu0[None, :] + alphas[:, None] * log_ratio[None, :]
        m = t.max(axis=1)
        log_a = m + np.log(np.sum(np.exp(t - m[:, None]), axis=1)) + math.log(h)
    log_a = log_a + _LOG_A_ABS_MARGIN + _LOG_A_REL_MARGIN * np.abs(log_a)
    out = np.maximum(log_a, 0.0) / (alphas - 1.0)
    return np.where(np.isfinite(out), out, np.inf)


@functools.lru_cache(maxsize=4096)
def _rho_curve_cached(q: float, sigma: float) -> np.ndarray:
    if math.isinf(sigma):
        out = np.zeros(ALPHAS.size)
    else:
        gauss = 1.0 / (2.0 * sigma * sigma)
        out = np.full(ALPHAS.size, gauss)
        if q < 1.0:
            a = np.asarray(TCDP_ORDERS)
            r = _rdp_upper_on_grid(q, sigma)
            frac = (a != np.floor(a)) & (a <= _NUMERIC_MAX_ORDER)
            if sigma >= _NUMERIC_MIN_SIGMA and frac.any():
                r[frac] = np.minimum(r[frac], _rdp_numeric(q, sigma, a[frac]))
            # RDP is non-decreasing in the order: an order's bound also holds for every
            # smaller order (reverse cumulative minimum).
            r = np.minimum.accumulate(r[::-1])[::-1]
            prev = np.concatenate([[1.0], a[:-1]])
            with np.errstate(invalid="ignore"):
                rho_t = np.maximum.accumulate(r / prev)
            out[:_N_T] = np.minimum(rho_t, gauss)
    out.setflags(write=False)
    return out


def rho_curve(q: float, sigma: float) -> np.ndarray:
    """Per-step rho usable at each conversion order in :data:`ALPHAS` for the subsampled
    Gaussian (q < 1: tCDP bound with omega = that order, capped by 1/(2 sigma^2);
    q = 1: exactly 1/(2 sigma^2))."""
    GaussianSegment(q, sigma, 1)
    return _rho_curve_cached(float(q), float(sigma))


def _compose(segments: Iterable[GaussianSegment]) -> np.ndarray:
    total = np.zeros(ALPHAS.size)
    for seg in segments:
        total = total + seg.count * _rho_curve_cached(float(seg.sample_rate), float(seg.noise_multiplier))
    return total


def _convert(rho: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(epsilon_cks, index of order, epsilon_classic) for rho rows over ALPHAS."""
    a = ALPHAS
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        base = rho * a
        cks = base + np.log1p(-1.0 / a) - (math.log(delta) + np.log(a)) / (a - 1.0)
        classic = base - math.log(delta) / (a - 1.0)
    cks = np.where(np.isnan(cks), np.inf, cks)
    classic = np.where(np.isnan(classic), np.inf, classic)
    idx = np.argmin(cks, axis=-1)
    best = np.maximum(np.take_along_axis(cks, np.expand_dims(idx, -1), axis=-1)[..., 0], 0.0)
    return best, idx, np.maximum(np.min(classic, axis=-1), 0.0), np.take_along_axis(
        rho, np.expand_dims(idx, -1), axis=-1
    )[..., 0]


def _bs_inverse(rho: float, epsilon: float) -> float:
    """delta from Bun & Steinke Prop. 1.3 solved for delta: exp(-(eps - rho)^2 / (4 rho))."""
    if rho == 0.0:
        return 0.0
    if epsilon <= rho or math.isinf(rho):
        return 1.0
    return min(1.0, math.exp(-((epsilon - rho) ** 2) / (4.0 * rho)))


class CdpAccountant:
    """Sound zCDP / tCDP accountant (see module docstring)."""

    name = "cdp"

    def rho(self, run: DpSgdRun) -> np.ndarray:
        """rho usable at each order of :data:`ALPHAS` for ``run`` under its own batching."""
        return _compose(run.segments())

    def epsilon(self, run: DpSgdRun, delta: float, *, extras: bool = True) -> EpsilonReport:
        """Upper bound on epsilon at ``delta``; ``extras`` adds the run-level figures of
        shuffled runs (:mod:`~dpaudit.accounting.extras`)."""
        delta = check_delta(delta)
        rho = self.rho(run)
        eps_arr, idx_arr, classic, rho_used = _convert(rho, delta)
        eps, idx = float(eps_arr), int(idx_arr)
        order = float(ALPHAS[idx])
        pure = all(seg.sample_rate == 1.0 for seg in run.segments())
        if pure:
            rho0 = float(rho[0])
            method = "zCDP (parallel composition over epochs) + Canonne-Kamath-Steinke 2020 Cor. 13"
            bs = zcdp_to_epsilon_bun_steinke(rho0, delta)
            notes: tuple[str, ...] = ()
        else:
            method = "truncated CDP bound from the sampled-Gaussian RDP curve + CKS 2020 Cor. 13"
            bs = float(classic)
            notes = (
                f"Poisson: (rho={float(rho_used):.6g}, omega={order:.4g})-tCDP "
                "(Bun-Dwork-Rothblum-Steinke 2018) from the sampled-Gaussian RDP curve",
            )
        if not math.isfinite(eps):
            notes += ("no finite CDP bound (noise too small / overflow): epsilon = inf",)
        rep = EpsilonReport.for_run(
            run, self.name, eps, delta,
            parameter=order if math.isfinite(eps) else None,
            method=method,
            notes=notes,
            extra={"rho": float(rho_used), "epsilon_bun_steinke": float(bs)},
        )
        return add_run_extras(self, run, delta, rep) if extras else rep

    def delta(self, run: DpSgdRun, epsilon: float) -> float:
        """Smallest delta certified at ``epsilon`` (CKS 2020 Cor. 13 over the same orders)."""
        epsilon = check_epsilon(epsilon)
        a = ALPHAS
        rho = self.rho(run)
        with np.errstate(over="ignore", invalid="ignore"):
            logd = (a - 1.0) * (rho * a - epsilon + np.log1p(-1.0 / a)) - np.log(a)
        logd = np.where(np.isnan(logd), np.inf, logd)
        return float(min(math.exp(min(float(np.min(logd)), 0.0)), 1.0))

    def epsilon_curve(self, run: DpSgdRun, delta: float, epochs: Sequence[int] | None = None,
                      progress: Any = None) -> list[float]:
        """Cumulative epsilon after each epoch in ``epochs`` (default every epoch; rho adds
        up over epochs). ``progress`` is accepted and unused (fast)."""
        delta = check_delta(delta)
        per = np.stack([_compose(segs) for segs in run.checkpoint_segments(epochs)])
        eps = _convert(np.cumsum(per, axis=0), delta)[0]
        return [float(e) for e in np.atleast_1d(eps)]


def _yu_rho(segments: Iterable[GaussianSegment]) -> float:
    """Yu et al. 2019 per-step rule: a Poisson step with rate q < 1 counts
    rho = q^2 / sigma^2 (= 2 q^2 * 1/(2 sigma^2); the authors' code, "approximate bound 2",
    from the small-q expansion of the log moment, Abadi et al. 2016 Lemma 3); a q = 1 step
    counts exactly 1/(2 sigma^2)."""
    rho = 0.0
    for seg in segments:
        s, q = float(seg.noise_multiplier), float(seg.sample_rate)
        if math.isinf(s):
            continue
        per = 1.0 / (2.0 * s * s) if q == 1.0 else q * q / (s * s)
        rho += seg.count * per
    return rho


class Yu2019Accountant:
    """Yu et al. 2019 zCDP accounting with their random-sampling rule (heuristic).

    Shuffled runs: identical to the sound zCDP analysis (parallel composition), converted
    with Bun & Steinke Prop. 1.3. Poisson runs: rho = sum q^2/sigma^2 per step -- an
    asymptotic approximation, not a proven bound; it under-reports in some regimes (e.g.
    larger q or small sigma). Each report compares against the sound RDP figure and sets
    ``sound=False`` with a note when it is lower. Never a default.
    """

    name = "yu2019"
    method = "zCDP, Yu et al. 2019 random-sampling rule (heuristic) + Bun-Steinke 2016 Prop. 1.3"

    def epsilon(self, run: DpSgdRun, delta: float, *, extras: bool = True) -> EpsilonReport:
        """Yu et al.'s figure (``sound`` says whether it is a proven bound here);
        ``extras`` adds the run-level figures of shuffled runs."""
        from dpaudit.accounting.rdp import ACCOUNTANT as RDP

        delta = check_delta(delta)
        rho = _yu_rho(run.segments())
        eps = zcdp_to_epsilon_bun_steinke(rho, delta)
        sound_eps = RDP.epsilon(run, delta, extras=False).epsilon
        # Without subsampled segments (shuffled runs) Yu et al.'s analysis is exact zCDP,
        # sound by B&S Prop. 1.3; otherwise it is proven only when above a sound bound.
        sampled = any(seg.sample_rate < 1.0 for seg in run.segments())
        sound = not sampled or eps >= sound_eps * (1.0 - 1e-9)
        notes: tuple[str, ...] = ()
        if sampled:
            notes = ("heuristic: Yu et al.'s sampling rule is an approximation, not a proven bound",)
            if not sound:
                notes += (
                    f"under-reports: below the sound RDP bound {sound_eps:.6g}; do not quote this figure",
                )
        rep = EpsilonReport.for_run(
            run, self.name, eps, delta,
            parameter=1.0 + math.sqrt(math.log(1.0 / delta) / rho) if rho > 0 else None,
            sound=sound,
            method=self.method,
            notes=notes,
            extra={"rho": rho, "epsilon_sound_rdp": float(sound_eps)},
        )
        return add_run_extras(self, run, delta, rep) if extras else rep

    def delta(self, run: DpSgdRun, epsilon: float) -> float:
        return _bs_inverse(_yu_rho(run.segments()), check_epsilon(epsilon))

    def epsilon_curve(self, run: DpSgdRun, delta: float, epochs: Sequence[int] | None = None,
                      progress: Any = None) -> list[float]:
        """Cumulative figure after each epoch in ``epochs`` (default every epoch)."""
        delta = check_delta(delta)
        out, rho = [], 0.0
        for segs in run.checkpoint_segments(epochs):
            rho += _yu_rho(segs)
            out.append(zcdp_to_epsilon_bun_steinke(rho, delta))
        return out


#: Sound zCDP/tCDP accountant (registry name ``"cdp"``).
ACCOUNTANT = CdpAccountant()
#: Yu et al. 2019 heuristic (registry name ``"yu2019"``), for comparison only.
YU2019_ACCOUNTANT = Yu2019Accountant()
