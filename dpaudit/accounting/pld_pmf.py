"""The privacy loss distribution (PLD) of *one* release, discretised on the grid h*Z.

The privacy loss of a pair (P, Q) is L = log(dP/dQ)(X), X ~ P; its distribution gives the
whole privacy curve delta(eps) = E_P[(1 - e^{eps - L})_+] + P(L = inf) (Meiser & Mohammadi
2018, "Tight on budget?", CCS, Sec. 3; Sommer, Meiser, Mohammadi 2019, PoPETs, Thm 1).

Discretisation: *connect the dots* (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022,
"Connect the Dots: Tighter Discrete Approximations of Privacy Loss Distributions", PoPETs,
Sec. 3-4). The outcomes whose loss lies in (l_k, l_{k+1}] are replaced by two atoms at the
grid points l_k, l_{k+1} that keep their P- and Q-mass. The privacy profile of the result is
the chord of the true (convex in e^eps) profile between consecutive grid points, hence
pointwise >= the true profile: the discrete pair *dominates* the real one. Outcomes beyond
the truncation point go to the infinity atom (loss +inf) or are moved up to the lowest grid
point -- both only raise the profile.

Pairs (units of the noise std, d = 1/sigma, sensitivity 1):

* Poisson-subsampled Gaussian, remove direction: P = (1-q) N(0,1) + q N(d,1), Q = N(0,1),
  loss l(z) = log(1 - q + q e^{d z - d^2/2}), increasing in z; add direction: P = N(0,1),
  Q = the mixture, loss -l(z) (Mironov, Talwar, Zhang 2019, Sec. 3; Koskela, Jälkö,
  Prediger, Honkela 2021, AISTATS, Sec. 5);
* Gaussian: P = N(mu, 1), Q = N(0, 1), loss mu z - mu^2/2 ~ N(mu^2/2, mu^2) under P
  (symmetric: one PLD for both directions).

Numerics: the grid index range of a release is known in closed form
(:func:`subsampled_gaussian_cells`, :func:`gaussian_cells`), so callers check the size
before anything is allocated; losses are inverted to z without overflow for losses of any
size (tiny noise gives losses of 10^7 nats and more), and a bucket whose split cannot be
computed in floating point keeps all its mass at the upper grid point (the pessimistic side).

Imports: numpy and math only (no scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dpaudit.accounting.gaussian import interval_masses

#: The two directions of the add/remove relation (both are composed; the larger delta wins).
DIRECTIONS: tuple[str, ...] = ("remove", "add")


@dataclass(frozen=True)
class LossPmf:
    """A discretised PLD: ``probs[j]`` is the P-mass at loss ``(start + j) * h`` (nats);
    ``inf_mass`` the mass at +inf. Finite masses sum to 1 - inf_mass (up to rounding)."""

    start: int
    probs: np.ndarray
    inf_mass: float
    h: float

    @property
    def losses(self) -> np.ndarray:
        return (self.start + np.arange(self.probs.size)) * self.h

    def moments(self) -> tuple[float, float]:
        """Mean and variance of the finite part (normalised)."""
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


def connect_the_dots(i_lo: int, pm: np.ndarray, qm: np.ndarray, h: float) -> np.ndarray:
    """Atoms on grid points i_lo..i_lo+len(pm) from bucket masses (Doroshenko et al. 2022).

    Bucket k holds the outcomes with loss in (l_k, l_{k+1}], P-mass pm[k], Q-mass qm[k].
    Split into b at l_{k+1} and a at l_k with a + b = pm, a e^{-l_k} + b e^{-l_{k+1}} = qm,
    i.e. b = (pm - qm e^{l_k}) / (1 - e^{-h}); clipping to [0, pm] only moves mass upward
    when rounding made the ratio fall outside [e^{-l_{k+1}}, e^{-l_k}]. qm e^{l_k} is
    evaluated as exp(log qm + l_k) (no overflow where qm underflows); a split that is still
    not finite puts the whole bucket at its upper point (pessimistic).
    """
    l_left = (i_lo + np.arange(pm.size)) * h
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        pos = qm > 0.0
        scaled = np.where(pos, np.exp(np.log(np.where(pos, qm, 1.0)) + l_left), 0.0)
        b = (pm - scaled) / (-math.expm1(-h))
    b = np.where(np.isfinite(b), np.clip(b, 0.0, pm), pm)
    a = pm - b
    out = np.zeros(pm.size + 1)
    out[1:] += b
    out[:-1] += a
    return out


def _mixture_x(loss: np.ndarray, q: float) -> np.ndarray:
    """x with log(1 - q + q e^x) = loss, i.e. x = log((e^loss - 1 + q) / q); -inf where no
    x exists (loss <= log(1 - q)). Written so that no term overflows for large losses."""
    lq, l1q = math.log(q), math.log1p(-q)
    out = np.full(loss.shape, -np.inf)
    pos = loss > 0.0
    lp = loss[pos]
    out[pos] = lp + np.log1p(-(1.0 - q) * np.exp(-lp)) - lq
    mid = ~pos & (loss > l1q)
    with np.errstate(divide="ignore"):
        out[mid] = np.log(np.expm1(loss[mid]) + q) - lq
    return out


def _tail_z(log_tail: float) -> float:
    """z with 1 - Phi(z) <= exp(-z^2/2) / 2 <= e^{log_tail}."""
    return math.sqrt(-2.0 * log_tail)


def _remove_range(q: float, sigma: float, h: float, log_tail: float) -> tuple[int, int]:
    d = 1.0 / sigma
    l1q = math.log1p(-q)
    z_hi = d + _tail_z(log_tail)
    l_top = float(np.logaddexp(l1q, math.log(q) + d * z_hi - 0.5 * d * d))
    i_lo = math.floor(l1q / h)
    return i_lo, max(math.ceil(l_top / h), i_lo + 1)


def _add_range(q: float, sigma: float, h: float, log_tail: float) -> tuple[int, int]:
    d = 1.0 / sigma
    l1q = math.log1p(-q)
    l_bot = -float(np.logaddexp(l1q, math.log(q) + d * _tail_z(log_tail) - 0.5 * d * d))
    i_hi = math.ceil(-l1q / h)
    return min(math.floor(l_bot / h), i_hi - 1), i_hi


def subsampled_gaussian_cells(q: float, sigma: float, h: float, direction: str, log_tail: float) -> int:
    """Number of grid points :func:`subsampled_gaussian_pmf` would allocate (closed form)."""
    lo, hi = (_remove_range if direction == "remove" else _add_range)(q, sigma, h, log_tail)
    return hi - lo + 1


def subsampled_gaussian_pmf(q: float, sigma: float, h: float, direction: str, log_tail: float) -> LossPmf:
    """Connect-the-dots PLD of one Poisson-subsampled Gaussian release (sensitivity 1,
    sample rate q < 1, noise multiplier sigma) in ``direction`` (``remove`` or ``add``, see
    the module docstring). ``log_tail`` = log of the P-mass allowed outside the grid."""
    d = 1.0 / sigma
    if direction == "remove":
        i_lo, i_hi = _remove_range(q, sigma, h, log_tail)
        z = (_mixture_x(np.arange(i_lo, i_hi + 1) * h, q) + 0.5 * d * d) / d
        zb = np.append(z, np.inf)
        n0 = interval_masses(zb)
        nd = interval_masses(zb - d)
        pm_all = (1.0 - q) * n0 + q * nd
        # bucket k is (l_k, l_{k+1}]; no loss lies below l_{i_lo} <= log(1-q) (z_0 = -inf);
        # the last cell is the mass beyond the top grid point (to the infinity atom)
        probs = connect_the_dots(i_lo, pm_all[:-1], n0[:-1], h)
        return LossPmf(i_lo, probs, float(pm_all[-1]), h)
    if direction == "add":
        i_lo, i_hi = _add_range(q, sigma, h, log_tail)
        z = (_mixture_x(-np.arange(i_lo, i_hi + 1) * h, q) + 0.5 * d * d) / d
        # z decreases with the loss; bucket (l_k, l_{k+1}] <-> z in [z_{k+1}, z_k).
        zr = np.append(z[::-1], np.inf)  # increasing: z_{n}, ..., z_0, +inf
        n0 = interval_masses(zr)[::-1]  # n0[0]: z > z_0 (loss below grid); n0[k+1]: bucket k
        nd = interval_masses(zr - d)[::-1]
        qm = (1.0 - q) * n0[1:] + q * nd[1:]
        probs = connect_the_dots(i_lo, n0[1:], qm, h)
        probs[0] += float(n0[0])  # losses below the grid moved up to its lowest point
        return LossPmf(i_lo, probs, 0.0, h)
    raise ValueError(direction)


def _gaussian_range(mu: float, h: float, log_tail: float) -> tuple[int, int]:
    zt = _tail_z(log_tail)
    i_lo = math.floor((0.5 * mu * mu - mu * zt) / h)
    return i_lo, max(math.ceil((0.5 * mu * mu + mu * zt) / h), i_lo + 1)


def gaussian_cells(mu: float, h: float, log_tail: float) -> int:
    """Number of grid points :func:`gaussian_pmf` would allocate (closed form)."""
    lo, hi = _gaussian_range(mu, h, log_tail)
    return hi - lo + 1


def gaussian_pmf(mu: float, h: float, log_tail: float) -> LossPmf:
    """Connect-the-dots PLD of the Gaussian pair P = N(mu, 1), Q = N(0, 1)."""
    i_lo, i_hi = _gaussian_range(mu, h, log_tail)
    z = (np.arange(i_lo, i_hi + 1) * h + 0.5 * mu * mu) / mu
    zb = np.concatenate(([-np.inf], z, [np.inf]))
    p_all = interval_masses(zb - mu)
    q_all = interval_masses(zb)
    probs = connect_the_dots(i_lo, p_all[1:-1], q_all[1:-1], h)
    probs[0] += p_all[0]
    return LossPmf(i_lo, probs, float(p_all[-1]), h)
