"""Tight privacy-loss-distribution (PLD) accountant -- the reference upper bound.

The privacy loss of a pair (P, Q) is L = log(dP/dQ)(X), X ~ P. Its distribution (the PLD)
characterises the whole privacy curve, delta(eps) = E_P[(1 - e^{eps - L})_+] + P(L = inf)
(Meiser & Mohammadi 2018, "Tight on budget?", CCS, Sec. 3; Sommer, Meiser, Mohammadi 2019,
PoPETs, Thm 1), and composition of mechanisms is convolution of PLDs (Sommer et al. 2019,
Thm 1; Koskela, Jälkö, Honkela 2020, AISTATS, Sec. 3). This module

1. discretises the PLD of one release on the grid h*Z with the *connect-the-dots*
   construction (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022, "Connect the dots",
   PoPETs, Sec. 3-4): the outcomes whose loss lies in (l_{k-1}, l_k] are replaced by two
   atoms at the grid points that keep their P- and Q-mass. The privacy profile of the result
   is the chord of the true (convex in e^eps) profile between consecutive grid points, hence
   pointwise >= the true profile: the discrete pair *dominates* the real one. Outcomes
   beyond the truncation point go to the infinity atom (loss +inf) or are moved up to the
   lowest grid point -- both only raise the profile;
2. composes by FFT: the characteristic function of a sum of independent losses is the
   product of theirs, so ``count`` releases cost one complex power (Koskela et al. 2020,
   Sec. 4; Koskela, Jälkö, Prediger, Honkela 2021, AISTATS, "Tight differential privacy
   for discrete-valued mechanisms and for the subsampled Gaussian mechanism using FFT").
   Dominating pairs compose into a dominating pair (Zhu, Dong, Wang 2022, AISTATS, Thm 10);
3. keeps the FFT sound: the circular result equals the true PMF folded modulo the window
   length N, so inside the window it is >= the true PMF (folded mass only adds, which can
   only raise delta); the mass that leaves the window at the top is bounded by a Chernoff
   bound on the discrete losses, P(S > U) <= exp(K(lambda) - lambda U), and added to delta
   in full. No step of the pipeline can under-report (up to floating point; the one
   empirical margin is the rounding allowance below).

Both directions of the add/remove relation are composed (the Poisson subsampled Gaussian is
not symmetric) and the larger delta is reported, as in dp_accounting (Doroshenko et al.
2022, Sec. 5). Segments without subsampling (q = 1) are Gaussian mechanisms and are merged
exactly: k Gaussians with noise multipliers s_i are one Gaussian with
mu = sqrt(sum_i k_i / s_i^2) (mu-GDP composition, Dong, Roth, Su 2019, Cor. 2), whose curve
delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) is exact (Balle & Wang 2018,
ICML, Thm 8). When every segment is unsubsampled that formula is used directly.

Accuracy/speed knob: ``value_discretization_interval`` h (loss units, nats). The
connect-the-dots excess is O(h^2) (measured: halving h divides the excess by ~4). Default
``None`` = automatic: passes at h = 4e-3 and 2e-3 give a Richardson estimate of the excess,
(eps_{4e-3} - eps_{2e-3}) / 3, and further passes use the h predicted to bring it to
``rel_tol`` (default 0.25%), re-estimating from the last two passes until the estimate is
met (a single prediction can be far off before the O(h^2) regime is reached, e.g. for
10^7 steps at q = 1e-4); the smallest of the candidate epsilons is reported (each is an
upper bound). A fixed h costs one pass: 1e-3 is within ~0.4% on the standard configs,
5e-4 within ~0.1% at ~2-3x the time. Every setting gives an upper bound.

Numerical floor: the FFT's rounding error (summed over the window, measured ~k 2^-52 for
k releases) is covered by an allowance 4 k 2^-52 log2(N) added to delta (``_fp_allowance``);
delta < 1e-11, or within 20x of the allowance, is refused with
:class:`~dpaudit.errors.OutOfValidityError` on the FFT path -- use ``rdp`` there. The
analytic Gaussian path has no such floor.

Imports: numpy and math only (no scipy), so the CLI starts fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dpaudit.accounting.base import EpsilonReport
from dpaudit.accounting.events import DpSgdRun, GaussianSegment, check_delta, check_epsilon
from dpaudit.accounting.gaussian import (  # noqa: F401 - re-exported
    _LOG_SQRT_2PI,
    _SQRT2,
    gaussian_delta,
    gaussian_epsilon,
    norm_cdf,
    norm_sf,
)
from dpaudit.accounting.gaussian import (
    interval_masses as _interval_masses,
)
from dpaudit.errors import InvalidParameterError, OutOfValidityError

#: Default relative accuracy target of the automatic discretisation (estimated excess).
DEFAULT_REL_TOL = 2.5e-3
#: First grid interval of the automatic mode (nats); the second pass halves it.
AUTO_START_INTERVAL = 4e-3
#: Finest grid interval the automatic refinement goes to (nats).
MIN_AUTO_INTERVAL = 1e-4
#: Further Richardson-guided refinements of the automatic mode after the first two passes.
_MAX_REFINEMENTS = 4
#: Largest FFT window (cells); the interval is coarsened beyond it (still an upper bound).
MAX_WINDOW = 1 << 21
#: Smallest delta the FFT path accepts (its absolute numerical floor is ~1e-14).
MIN_DELTA_FFT = 1e-11

# ---------------------------------------------------------------------------- single release
@dataclass(frozen=True)
class _Pmf:
    """A discretised PLD: ``probs[j]`` is the P-mass at loss ``(start + j) * h``;
    ``inf_mass`` the mass at +inf. Finite masses sum to 1 - inf_mass (up to rounding)."""

    start: int
    probs: np.ndarray
    inf_mass: float
    h: float

    @property
    def losses(self) -> np.ndarray:
        return (self.start + np.arange(self.probs.size)) * self.h

    def moments(self) -> tuple[float, float]:
        p, l_ = self.probs, self.losses
        tot = max(float(p.sum()), 1e-300)
        m = float(np.sum(p * l_)) / tot  # elementwise: no BLAS threads
        v = float(np.sum(p * (l_ - m) ** 2)) / tot
        return m, v

    def log_mgf(self, lams: np.ndarray) -> np.ndarray:
        """log sum_j p_j exp(lambda l_j) for each lambda (finite part only)."""
        nz = self.probs > 1e-300
        lp = np.log(self.probs[nz])
        l_ = self.losses[nz]
        out = np.empty(lams.size)
        for i, lam in enumerate(lams):  # 1-D passes: contiguous, no (n, m) temporaries
            x = lp + lam * l_
            mx = float(x.max())
            out[i] = mx + math.log(float(np.exp(x - mx).sum()))
        return out


def _connect_dots(i_lo: int, pm: np.ndarray, qm: np.ndarray, h: float) -> np.ndarray:
    """Atoms on grid points i_lo..i_lo+len(pm) from bucket masses (Doroshenko et al. 2022).

    Bucket k holds the outcomes with loss in (l_k, l_{k+1}], P-mass pm[k], Q-mass qm[k].
    Split into b at l_{k+1} and a at l_k with a + b = pm, a e^{-l_k} + b e^{-l_{k+1}} = qm,
    i.e. b = (pm - qm e^{l_k}) / (1 - e^{-h}); clipping to [0, pm] only moves mass upward
    when rounding made the ratio fall outside [e^{-l_{k+1}}, e^{-l_k}].
    """
    l_left = (i_lo + np.arange(pm.size)) * h
    num = pm - qm * np.exp(l_left)
    b = np.clip(num / (-math.expm1(-h)), 0.0, pm)
    a = pm - b
    out = np.zeros(pm.size + 1)
    out[1:] += b
    out[:-1] += a
    return out


def _subsampled_pmf(q: float, sigma: float, h: float, direction: str, log_tail: float) -> _Pmf:
    """Connect-the-dots PLD of one Poisson-subsampled Gaussian release (sensitivity 1).

    In noise-std units with d = 1/sigma: remove pair P = (1-q) N(0,1) + q N(d,1),
    Q = N(0,1), loss l(z) = log(1 - q + q e^{d z - d^2/2}) increasing in z; add pair
    P = N(0,1), Q = the mixture, loss -l(z) (Mironov, Talwar, Zhang 2019, Sec. 3; Koskela et
    al. 2021, Sec. 5). ``log_tail`` = log of the P-mass allowed outside the grid.
    """
    d = 1.0 / sigma
    lq, l1q = math.log(q), math.log1p(-q)
    zt = math.sqrt(-2.0 * log_tail)  # 1 - Phi(zt) <= exp(-zt^2/2) / 2 <= e^{log_tail}
    if direction == "remove":
        z_hi = d + zt
        l_top = float(np.logaddexp(l1q, lq + d * z_hi - 0.5 * d * d))
        i_lo = math.floor(l1q / h)
        i_hi = max(math.ceil(l_top / h), i_lo + 1)
        losses = np.arange(i_lo, i_hi + 1) * h
        with np.errstate(divide="ignore", invalid="ignore"):
            inner = np.expm1(losses) + q
            z = np.where(inner > 0, (np.log(np.where(inner > 0, inner, 1.0)) - lq + 0.5 * d * d) / d, -np.inf)
        zb = np.append(z, np.inf)
        n0 = _interval_masses(zb)
        nd = _interval_masses(zb - d)
        pm_all = (1.0 - q) * n0 + q * nd
        qm = n0[:-1]
        pm = pm_all[:-1]
        inf_mass = float(pm_all[-1])  # outcomes beyond the top grid point
        # bucket k is (l_k, l_{k+1}]; no loss lies below l_{i_lo} <= log(1-q) (z_0 = -inf)
        probs = _connect_dots(i_lo, pm, qm, h)
        return _Pmf(i_lo, probs, inf_mass, h)
    if direction == "add":
        l_bot = -float(np.logaddexp(l1q, lq + d * zt - 0.5 * d * d))
        i_hi = math.ceil(-l1q / h)
        i_lo = min(math.floor(l_bot / h), i_hi - 1)
        losses = np.arange(i_lo, i_hi + 1) * h
        with np.errstate(divide="ignore", invalid="ignore"):
            inner = np.expm1(-losses) + q
            z = np.where(inner > 0, (np.log(np.where(inner > 0, inner, 1.0)) - lq + 0.5 * d * d) / d, -np.inf)
        # z decreases with the loss; bucket (l_k, l_{k+1}] <-> z in [z_{k+1}, z_k).
        zr = np.append(z[::-1], np.inf)  # increasing: z_{n}, ..., z_0, +inf
        n0 = _interval_masses(zr)[::-1]  # n0[0]: z > z_0 (loss below grid); n0[k+1]: bucket k
        nd = _interval_masses(zr - d)[::-1]
        below = float(n0[0])
        pm = n0[1:]
        qm = (1.0 - q) * n0[1:] + q * nd[1:]
        probs = _connect_dots(i_lo, pm, qm, h)
        probs[0] += below  # losses below the grid moved up to its lowest point
        return _Pmf(i_lo, probs, 0.0, h)
    raise ValueError(direction)


def _gaussian_pmf(mu: float, h: float, log_tail: float) -> _Pmf:
    """Connect-the-dots PLD of the Gaussian pair P = N(mu, 1), Q = N(0, 1): the loss
    mu z - mu^2/2 is N(mu^2/2, mu^2) under P (symmetric pair, one PLD for both directions)."""
    zt = math.sqrt(-2.0 * log_tail)
    i_lo = math.floor((0.5 * mu * mu - mu * zt) / h)
    i_hi = max(math.ceil((0.5 * mu * mu + mu * zt) / h), i_lo + 1)
    losses = np.arange(i_lo, i_hi + 1) * h
    z = (losses + 0.5 * mu * mu) / mu
    zb = np.concatenate(([-np.inf], z, [np.inf]))
    p_all = _interval_masses(zb - mu)
    q_all = _interval_masses(zb)
    probs = _connect_dots(i_lo, p_all[1:-1], q_all[1:-1], h)
    probs[0] += p_all[0]
    return _Pmf(i_lo, probs, float(p_all[-1]), h)


# ---------------------------------------------------------------------------- composition
_FAST_LENS: list[int] = []


def _next_fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (cheap FFT sizes for numpy's pocketfft)."""
    import bisect

    if not _FAST_LENS:
        vals = set()
        p2 = 1
        while p2 <= 2 * MAX_WINDOW:
            p23 = p2
            while p23 <= 2 * MAX_WINDOW:
                p235 = p23
                while p235 <= 2 * MAX_WINDOW:
                    vals.add(p235)
                    p235 *= 5
                p23 *= 3
            p2 *= 2
        _FAST_LENS.extend(sorted(vals))
    i = bisect.bisect_left(_FAST_LENS, n)
    return _FAST_LENS[i] if i < len(_FAST_LENS) else n


#: Orders lambda of the Chernoff bounds on the composed loss (negative: lower tail).
_LAMS = np.concatenate((-np.geomspace(0.1, 10.0, 3), np.geomspace(0.1, 100.0, 7)))


@dataclass(frozen=True)
class _Composed:
    """The composed PLD in a window: mass ``probs[j]`` at loss ``(lo + j) h`` (>= the true
    folded PMF), plus ``const`` = infinity mass + bound on the mass above the window."""

    lo: int
    probs: np.ndarray
    const: float
    h: float
    fp_allowance: float = 0.0


class _NeedCoarser(Exception):
    pass


def _window(
    stats: list[tuple[float, float, np.ndarray]], h: float, log_target: float
) -> tuple[int, int]:
    """Window [lo, hi] (grid indices) holding all prefixes' mass up to ~e^{log_target} in
    each tail, from means/variances and the Chernoff bound (only tightness depends on it)."""
    lo_i, hi_i = math.inf, -math.inf
    for m, v, k_tot in stats:
        sd = math.sqrt(max(v, 0.0))
        w = math.sqrt(-2.0 * log_target)
        up, low = m + w * sd + 10 * h, m - w * sd - 10 * h
        pos, neg = _LAMS > 0, _LAMS < 0
        for _ in range(60):  # widen until the Chernoff bound certifies the upper tail
            if np.min(k_tot[pos] - _LAMS[pos] * up) <= log_target:
                break
            up = m + 2.0 * (up - m) + h
        for _ in range(60):
            if np.min(k_tot[neg] - _LAMS[neg] * low) <= log_target:
                break
            low = m - 2.0 * (m - low) - h
        lo_i = min(lo_i, math.floor(low / h))
        hi_i = max(hi_i, math.ceil(up / h))
    return int(lo_i), int(hi_i)


def _cpow(x: np.ndarray, k: int) -> np.ndarray:
    """x**k for a complex array by binary exponentiation (a few multiplications; numpy's
    complex power goes through exp/log and is ~10x slower). Relative error ~k 2^-52."""
    out = np.ones_like(x)
    base = x.copy()
    while k:
        if k & 1:
            out *= base
        k >>= 1
        if k:
            base *= base
    return out


def _fp_allowance(n: int, total_count: int) -> float:
    """Allowance for the FFT's rounding error, added to delta.

    The summed absolute error of the window masses measured against an independent power
    evaluation (polar form) is ~k * 2^-52 (k = number of composed releases; 2e-11 for
    k = 1e5, n = 3e4). The allowance 4 k 2^-52 log2(n) is >= 50x that. It is an
    empirical margin, not a proof; it keeps the figures upper bounds for delta well above
    it, and deltas it would distort (allowance > delta / 20) are refused.
    """
    return 4.0 * (total_count + 10) * 2.2e-16 * math.log2(max(n, 2))


def _compose_prefixes(
    checkpoints: list[list[tuple[_Pmf, int]]], h: float, log_target: float
) -> list[_Composed]:
    """Compose PLDs; checkpoints[c] lists the (pmf, count) added after checkpoint c-1.
    Returns the composed PLD at each checkpoint (all on one window)."""
    stats: list[tuple[float, float, np.ndarray]] = []
    m = v = 0.0
    k_tot = np.zeros(_LAMS.size)
    infs = []
    log_fin = 0.0
    counts = 0
    cache: dict[int, tuple[float, float, np.ndarray]] = {}
    for group in checkpoints:
        for pmf, k in group:
            key = id(pmf)
            if key not in cache:
                mm, vv = pmf.moments()
                cache[key] = (mm, vv, pmf.log_mgf(_LAMS))
            mm, vv, kk = cache[key]
            m += k * mm
            v += k * vv
            k_tot = k_tot + k * kk
            log_fin += k * math.log1p(-min(pmf.inf_mass, 1.0 - 1e-16))
            counts += k
        stats.append((m, v, k_tot.copy()))
        infs.append((-math.expm1(log_fin), counts))
    lo, hi = _window(stats, h, log_target)
    # The window must also hold every single-release PMF (a long, light lower tail, e.g.
    # down to log(1 - q) for q -> 1, can outrun the moment-based window); otherwise the
    # grid was coarsened below -- sound but loose (12% at q = 1 - 1e-9, sigma = 1).
    widest = max((pmf.probs.size for group in checkpoints for pmf, _ in group), default=1)
    n = _next_fast_len(max(hi - lo + 1, widest))
    if n > MAX_WINDOW:
        raise _NeedCoarser
    ffts: dict[int, np.ndarray] = {}
    spec = np.ones(n // 2 + 1, dtype=complex)
    out = []
    top = (lo + n - 1) * h
    pos = _LAMS > 0
    for c, group in enumerate(checkpoints):
        for pmf, k in group:
            key = id(pmf)
            if key not in ffts:
                if pmf.probs.size > n:
                    raise _NeedCoarser
                # absolute grid index i sits in cell i mod n; sums of indices then
                # land in their own cell modulo n (circular convolution)
                idx = (pmf.start + np.arange(pmf.probs.size)) % n
                ffts[key] = np.fft.rfft(np.bincount(idx, weights=pmf.probs, minlength=n))
            spec = spec * _cpow(ffts[key], k)
        probs = np.roll(np.fft.irfft(spec, n=n), -(lo % n))  # cell j <-> index lo + j
        np.maximum(probs, 0.0, out=probs)
        _, _, kt = stats[c]
        tail = math.exp(min(0.0, float(np.min(kt[pos] - _LAMS[pos] * top))))
        inf_tot, cnt = infs[c]
        fpa = _fp_allowance(n, cnt)
        out.append(_Composed(lo, probs, inf_tot + tail + fpa, h, fpa))
    return out


def _delta_at(comp: _Composed, epsilon: float) -> float:
    """delta(eps) = const + sum_j p_j (1 - e^{eps - l_j})_+ for the composed PLD."""
    l_ = (comp.lo + np.arange(comp.probs.size)) * comp.h
    sel = l_ > epsilon
    val = comp.const + float(np.sum(comp.probs[sel] * -np.expm1(epsilon - l_[sel])))
    return min(1.0, val)


def _epsilon_of(comp: _Composed, delta: float) -> float:
    """Smallest eps >= 0 with delta(eps) <= delta, exact for the discrete PLD."""
    if comp.const >= delta:
        return math.inf
    l_ = (comp.lo + np.arange(comp.probs.size)) * comp.h
    first = int(np.searchsorted(l_, 0.0, side="right"))  # first index with l > 0
    p = comp.probs[first:]
    lp = l_[first:]
    if p.size == 0:
        return 0.0
    # A_j = sum_{i>=j} p_i, B_j = sum_{i>=j} p_i e^{-l_i} (l_i > 0 so no overflow).
    a = np.cumsum(p[::-1])[::-1]
    b = np.cumsum((p * np.exp(-lp))[::-1])[::-1]
    # delta just below grid point j (eps in (l_{j-1}, l_j]): const + A_j - e^eps B_j.
    # delta at eps = l_{j}: const + A_{j+1} - e^{l_j} B_{j+1}.
    a_next = np.append(a[1:], 0.0)
    b_next = np.append(b[1:], 0.0)
    with np.errstate(divide="ignore"):  # log(0) = -inf -> term 0; no overflow for big l
        d_grid = comp.const + a_next - np.exp(lp + np.log(b_next))
    if comp.const + a[0] - b[0] <= delta:  # delta(0) <= target
        return 0.0
    ok = np.nonzero(d_grid <= delta)[0]
    if ok.size == 0:
        return math.inf
    j = int(ok[0])
    left = lp[j - 1] if j > 0 else 0.0
    # On (left, l_j]: delta(eps) = const + A_j - e^eps B_j.
    num = comp.const + a[j] - delta
    eps = math.log(num / b[j]) if num > 0 and b[j] > 0 else float(lp[j])
    return float(min(max(eps, left), lp[j]))


# ---------------------------------------------------------------------------- front ends
def _split(segments: Sequence[GaussianSegment]) -> tuple[float, list[GaussianSegment]]:
    """(mu^2 of the merged unsubsampled part, the subsampled segments); sigma = inf dropped."""
    mu2 = 0.0
    sub = []
    for s in segments:
        if math.isinf(s.noise_multiplier):
            continue
        if s.sample_rate >= 1.0:
            mu2 += s.count / s.noise_multiplier**2
        else:
            sub.append(s)
    return mu2, sub


def _check_fft_delta(delta: float, comps: Sequence[_Composed] = ()) -> None:
    if delta < MIN_DELTA_FFT:
        raise OutOfValidityError(
            f"the PLD accountant's FFT path is numerically sound only for delta >= "
            f"{MIN_DELTA_FFT:g} (got {delta:g}); use --accountant rdp for smaller delta"
        )
    for c in comps:
        if c.fp_allowance > delta / 20.0:
            raise OutOfValidityError(
                f"delta = {delta:g} is too close to the PLD accountant's numerical floor "
                f"({c.fp_allowance:.1e}) for this many releases; use --accountant rdp"
            )


def _pmfs(
    segments: Sequence[GaussianSegment], h: float, log_tail: float, direction: str
) -> dict[tuple[float, float], _Pmf]:
    out: dict[tuple[float, float], _Pmf] = {}
    for s in segments:
        key = (s.sample_rate, s.noise_multiplier)
        if key not in out:
            out[key] = _subsampled_pmf(s.sample_rate, s.noise_multiplier, h, direction, log_tail)
    return out


def _compose_run(
    checkpoints: list[list[GaussianSegment]], h: float, log_target: float
) -> tuple[list[_Composed], list[_Composed], float]:
    """Compose checkpoints of segments under both directions, coarsening h if the window
    would exceed MAX_WINDOW. Returns (remove-direction PLDs, add-direction PLDs, h used)."""
    total = sum(s.count for grp in checkpoints for s in grp)
    log_tail = min(log_target, -20.0) - math.log(total + 1)
    for _ in range(16):
        try:
            results = []
            for direction in ("remove", "add"):
                flat = [s for grp in checkpoints for s in _split(grp)[1]]
                table = _pmfs(flat, h, log_tail, direction)
                # Unsubsampled (q = 1) segments: one Gaussian per checkpoint group.
                groups: list[list[tuple[_Pmf, int]]] = []
                for grp in checkpoints:
                    mu2, sub = _split(grp)
                    items = [(table[(s.sample_rate, s.noise_multiplier)], s.count) for s in sub]
                    if mu2 > 0:
                        items.append((_gaussian_pmf(math.sqrt(mu2), h, log_tail), 1))
                    groups.append(items)
                if max((p.probs.size for g in groups for p, _ in g), default=0) > MAX_WINDOW // 2:
                    raise _NeedCoarser
                results.append(_compose_prefixes(groups, h, log_target))
            return results[0], results[1], h
        except _NeedCoarser:
            h *= 2.0
    raise OutOfValidityError("privacy loss range too wide for the PLD accountant; use rdp")


def _eps_pair(rem: _Composed, add: _Composed, delta: float) -> float:
    return max(_epsilon_of(rem, delta), _epsilon_of(add, delta))


def _auto_epsilon(
    checkpoints: list[list[GaussianSegment]], delta: float, interval: float | None, rel_tol: float
) -> tuple[list[float], float, tuple[str, ...]]:
    """Epsilon at each checkpoint. ``interval=None``: start at h = 4e-3, then 2e-3, then
    refine (at least halving each time, at most ``_MAX_REFINEMENTS`` times, down to
    ``MIN_AUTO_INTERVAL``) until the Richardson estimate of the discretisation excess of the
    last checkpoint, (eps_{h'} - eps_h) / ((h'/h)^2 - 1) (the excess is O(h^2), Doroshenko
    et al. 2022 Sec. 4), is at most ``rel_tol * eps_h``. Every candidate is an upper bound;
    refinement only tightens."""
    log_target = math.log(1e-3 * delta)
    notes: list[str] = []
    if interval is not None:
        rem, add, h = _compose_run(checkpoints, interval, log_target)
        _check_fft_delta(delta, [*rem, *add])
        if h != interval:
            notes.append(f"loss grid coarsened from {interval:g} to {h:g} nats to fit the window")
        return [_eps_pair(r, a, delta) for r, a in zip(rem, add)], h, tuple(notes)
    # Passes on the final checkpoint only estimate the O(h^2) excess by Richardson
    # extrapolation from the last two passes (h_prev, h): excess(h) ~ (eps_prev - eps) /
    # (r^2 - 1), r = h_prev / h; while it exceeds rel_tol the grid is refined to the h that
    # the estimate predicts. The estimate is only trusted once the O(h^2) regime is reached,
    # hence the repetition: with many tiny per-step losses (q = 1e-4, 10^7 steps) a single
    # prediction from h = 4e-3, 2e-3 stopped at an epsilon 24% above the converged one
    # (review finding). A last pass over every checkpoint uses the final h. The final
    # point is the minimum of the candidates (each is an upper bound, so is the min).
    merged = [[s for grp in checkpoints for s in grp]]
    finals: list[float] = []
    hs: list[float] = []
    h = AUTO_START_INTERVAL
    h_used = h
    for step in range(2 + _MAX_REFINEMENTS):
        if step >= 2:
            r = hs[-2] / hs[-1]
            excess = (finals[-2] - finals[-1]) / (r * r - 1.0)
            if excess <= rel_tol * finals[-1]:
                break
            if hs[-1] <= MIN_AUTO_INTERVAL:
                notes.append(f"discretisation refinement stopped at interval {MIN_AUTO_INTERVAL:g}")
                break
            h = 0.9 * hs[-1] * math.sqrt(rel_tol * finals[-1] / excess)
            h = max(MIN_AUTO_INTERVAL, min(h, hs[-1] / 2.0))
        elif step == 1:
            h = hs[-1] / 2.0
        rem, add, h_used = _compose_run(merged, h, log_target)
        _check_fft_delta(delta, [*rem, *add])
        finals.append(_eps_pair(rem[0], add[0], delta))
        hs.append(h)
        if h_used != h or not math.isfinite(finals[-1]) or finals[-1] == 0.0:
            break
    if len(checkpoints) == 1:
        return [min(finals)], h_used, tuple(notes)
    h = hs[-1]
    rem, add, h_used = _compose_run(checkpoints, h, log_target)
    _check_fft_delta(delta, [*rem, *add])
    eps = [_eps_pair(r, a, delta) for r, a in zip(rem, add)]
    if h_used != h:
        notes.append(f"loss grid coarsened to {h_used:g} nats to fit the FFT window")
    eps[-1] = min([eps[-1], *finals])
    return eps, h_used, tuple(notes)


def epsilon_from_segments(
    segments: Sequence[GaussianSegment],
    delta: float,
    *,
    interval: float | None = None,
    rel_tol: float = DEFAULT_REL_TOL,
) -> tuple[float, tuple[str, ...]]:
    """Upper bound on epsilon at ``delta`` for the composition of ``segments`` (add/remove
    for subsampled segments; the Gaussian mechanism for q = 1). Returns (eps, notes)."""
    check_delta(delta)
    mu2, sub = _split(segments)
    if not sub:
        return gaussian_epsilon(math.sqrt(mu2), delta), ("exact Gaussian (mu-GDP) curve",)
    _check_fft_delta(delta)
    eps, h, notes = _auto_epsilon([list(segments)], delta, interval, rel_tol)
    if math.isinf(eps[-1]):
        notes = notes + ("no finite epsilon: infinity/tail mass of the PLD exceeds delta",)
    return eps[-1], notes + (f"loss grid interval {h:g} nats",)


def delta_from_segments(
    segments: Sequence[GaussianSegment], epsilon: float, *, interval: float | None = None
) -> float:
    """Upper bound on delta at ``epsilon`` for the composition of ``segments``
    (grid interval ``interval``, default 5e-4 nats when not given)."""
    check_epsilon(epsilon)
    mu2, sub = _split(segments)
    if not sub:
        return gaussian_delta(math.sqrt(mu2), epsilon)
    rem, add, _ = _compose_run([list(segments)], interval or 5e-4, math.log(1e-15))
    return max(_delta_at(rem[0], epsilon), _delta_at(add[0], epsilon))


def _epoch_groups(run: DpSgdRun) -> list[list[GaussianSegment]]:
    """Per-epoch segments of the run under its own batching; extra segments join the last."""
    groups: list[list[GaussianSegment]] = []
    f = run.sensitivity_factor
    for e, s in enumerate(run.noise_multipliers):
        if run.batching == "poisson":
            groups.append([GaussianSegment(run.sample_rate, s, run.steps_in_epoch(e))])
        else:
            groups.append([GaussianSegment(1.0, s / f, 1)])
    groups[-1] = groups[-1] + list(run.extra_segments)
    return groups


@dataclass(frozen=True)
class PldAccountant:
    """Tight PLD accountant (see the module docstring).

    ``value_discretization_interval``: grid interval of the privacy loss in nats; ``None``
    (default) refines automatically until the estimated excess is below ``rel_tol``
    (relative). Every value is an upper bound whatever the setting.
    """

    name: str = "pld"
    value_discretization_interval: float | None = None
    rel_tol: float = DEFAULT_REL_TOL

    def __post_init__(self) -> None:
        h = self.value_discretization_interval
        if h is not None and not (math.isfinite(h) and 0.0 < h <= 1.0):
            raise InvalidParameterError(f"discretisation interval must be in (0, 1], got {h!r}")
        if not 0.0 < self.rel_tol < 1.0:
            raise InvalidParameterError(f"rel_tol must be in (0, 1), got {self.rel_tol!r}")

    def epsilon(self, run: DpSgdRun, delta: float) -> EpsilonReport:
        delta = check_delta(delta)
        segments = run.segments()
        eps, notes = epsilon_from_segments(
            segments, delta, interval=self.value_discretization_interval, rel_tol=self.rel_tol
        )
        extra: dict[str, float] = {}
        if any(s.sample_rate < 1.0 for s in segments):
            method = (
                "PLD: connect-the-dots discretisation (Doroshenko et al. 2022) + FFT "
                "composition (Koskela et al. 2021), max over add/remove"
            )
        else:
            method = "exact Gaussian composition (mu-GDP; Balle & Wang 2018 Thm 8)"
        if run.batching == "shuffle":
            from dpaudit.accounting import shuffle

            extra["epsilon_lower"] = shuffle.epsilon_lower(run, delta)
            extra["epsilon_if_poisson"] = self.epsilon(run.with_batching("poisson"), delta).epsilon
            notes = notes + (
                "shuffled batches: no amplification claimed (one Gaussian per epoch); "
                "epsilon_lower is a proven lower bound (Chua et al. 2024)",
            )
        return EpsilonReport.for_run(
            run, self.name, eps, delta,
            parameter=None,
            sound=True,
            method=method,
            notes=notes,
            extra=extra,
        )

    def delta(self, run: DpSgdRun, epsilon: float) -> float:
        return delta_from_segments(
            run.segments(), check_epsilon(epsilon), interval=self.value_discretization_interval
        )

    def epsilon_curve(self, run: DpSgdRun, delta: float) -> list[float]:
        """Cumulative epsilon after each epoch (extra segments counted in the last point),
        composing the epochs' PLDs incrementally on one FFT window (one inverse FFT per
        epoch)."""
        delta = check_delta(delta)
        groups = _epoch_groups(run)
        if all(s.sample_rate >= 1.0 or math.isinf(s.noise_multiplier) for g in groups for s in g):
            out, mu2 = [], 0.0
            for g in groups:
                mu2 += _split(g)[0]
                out.append(gaussian_epsilon(math.sqrt(mu2), delta))
            return out
        _check_fft_delta(delta)
        eps, _, _ = _auto_epsilon(groups, delta, self.value_discretization_interval, self.rel_tol)
        return eps


ACCOUNTANT = PldAccountant()


def epsilon_curve(run: DpSgdRun, delta: float) -> list[float]:
    """Cumulative epsilon after each epoch with the default PLD accountant."""
    return ACCOUNTANT.epsilon_curve(run, delta)
